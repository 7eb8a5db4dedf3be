//! [`NodeError`]: why a client request failed, mapped onto etcd's gRPC
//! codes and message strings (clients and etcdctl switch on them).

use cairn_core::kv::{GrpcCode, KvError};

/// A failed client request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// The state machine refused the request.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// No leader is known, so the request cannot be served.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// Leadership changed while the request was in flight.
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// The request did not complete in time; it may or may not have been applied.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// The node is shutting down or has stopped (e.g. after a storage failure).
    #[error("etcdserver: server stopped")]
    Stopped,
    /// A member ID that does not exist.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// A member ID already in the cluster.
    #[error("etcdserver: member ID already exist")]
    MemberIdExists,
    /// A peer URL already used by a member.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    /// Promote of a member that is not a learner.
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    /// Promote of a learner that has not caught up.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// A membership change that would leave too few started members.
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    /// A leader transfer to a member that cannot take it.
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// The request must be served by the leader and this member is not it.
    #[error("etcdserver: not leader")]
    NotLeader,
    /// Too many requests are waiting on this member.
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    /// The cluster's state diverged.
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
}

impl NodeError {
    /// The gRPC code etcd answers this error with.
    pub fn code(&self) -> GrpcCode {
        match self {
            NodeError::Kv(error) => error.code(),
            NodeError::NoLeader
            | NodeError::LeaderChanged
            | NodeError::Timeout
            | NodeError::Stopped => GrpcCode::Unavailable,
            NodeError::MemberNotFound => GrpcCode::NotFound,
            NodeError::MemberIdExists
            | NodeError::PeerUrlExists
            | NodeError::MemberNotLearner
            | NodeError::LearnerNotReady
            | NodeError::NotEnoughStartedMembers
            | NodeError::BadLeaderTransferee
            | NodeError::NotLeader => GrpcCode::FailedPrecondition,
            NodeError::Corrupt => GrpcCode::DataLoss,
            NodeError::TooManyRequests => GrpcCode::ResourceExhausted,
        }
    }
}
