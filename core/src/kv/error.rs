//! [`KvError`]: every way a key-value request can fail, each mapped one-to-one
//! onto etcd's gRPC status code and message string (clients switch on them).

use serde::{Deserialize, Serialize};

use super::request::Revision;

/// The gRPC status codes etcd uses (numbered as in gRPC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GrpcCode {
    /// 3
    InvalidArgument = 3,
    /// 5
    NotFound = 5,
    /// 7
    PermissionDenied = 7,
    /// 8
    ResourceExhausted = 8,
    /// 9
    FailedPrecondition = 9,
    /// 11
    OutOfRange = 11,
    /// 14
    Unavailable = 14,
    /// 15
    DataLoss = 15,
    /// 16
    Unauthenticated = 16,
}

/// A failed key-value, lease or watch request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum KvError {
    /// An empty key where one is required.
    #[error("etcdserver: key is not provided")]
    KeyNotProvided,
    /// ignore_value / ignore_lease on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// ignore_value together with a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// ignore_lease together with a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// More ops in one txn than the configured maximum.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// A txn writes the same key twice.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// The request is larger than the configured maximum.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// The revision asked for has been compacted.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted {
        /// The current compact revision.
        compact_revision: Revision,
    },
    /// The revision asked for is beyond the current one.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision {
        /// The current revision.
        current_revision: Revision,
    },
    /// The backend quota is exhausted.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// The lease does not exist.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A grant with an ID already in use.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A TTL above the maximum.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// A leader-only lease operation (keep-alive) on a member that does not
    /// track lease deadlines; the driver forwards it to the leader.
    #[error("etcdserver: not leader")]
    NotLeader,
    /// Replicated state that fails its consistency checks (a corrupt
    /// snapshot); `reason` names the first problem found.
    #[error("etcdserver: corrupt cluster")]
    Corrupt {
        /// What is inconsistent.
        reason: String,
    },
    /// A watch whose range_end is not after its key. Never a gRPC status:
    /// etcd answers it inside the watch stream (created and canceled, this
    /// message as cancel_reason).
    #[error("mvcc: watcher range is empty")]
    WatchRangeEmpty,
    /// A watch ID the stream already uses. Never a gRPC status: answered in
    /// the watch stream like [`KvError::WatchRangeEmpty`].
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    WatchDuplicateId {
        /// The ID asked for.
        watch_id: i64,
    },
}

// The mapping onto etcd (api/v3rpc/rpctypes/error.go), one line per variant:
//
// | variant            | gRPC code          | message                                                |
// |--------------------|--------------------|--------------------------------------------------------|
// | KeyNotProvided     | InvalidArgument    | etcdserver: key is not provided                        |
// | KeyNotFound        | InvalidArgument    | etcdserver: key not found                              |
// | ValueProvided      | InvalidArgument    | etcdserver: value is provided                          |
// | LeaseProvided      | InvalidArgument    | etcdserver: lease is provided                          |
// | TooManyOps         | InvalidArgument    | etcdserver: too many operations in txn request         |
// | DuplicateKey       | InvalidArgument    | etcdserver: duplicate key given in txn request         |
// | RequestTooLarge    | InvalidArgument    | etcdserver: request is too large                       |
// | Compacted          | OutOfRange         | etcdserver: mvcc: required revision has been compacted |
// | FutureRevision     | OutOfRange         | etcdserver: mvcc: required revision is a future revision |
// | NoSpace            | ResourceExhausted  | etcdserver: mvcc: database space exceeded              |
// | LeaseNotFound      | NotFound           | etcdserver: requested lease not found                  |
// | LeaseExists        | FailedPrecondition | etcdserver: lease already exists                       |
// | LeaseTtlTooLarge   | OutOfRange         | etcdserver: too large lease TTL                        |
// | NotLeader          | FailedPrecondition | etcdserver: not leader                                 |
// | Corrupt            | DataLoss           | etcdserver: corrupt cluster                            |
// | WatchRangeEmpty    | (in-stream)        | mvcc: watcher range is empty                           |
// | WatchDuplicateId   | (in-stream)        | mvcc: duplicate watch ID provided on the WatchStream   |
//
// The two in-stream errors are never sent as a status; code() gives
// InvalidArgument for them should a caller need one.
impl KvError {
    /// The gRPC code etcd answers this error with.
    pub fn code(&self) -> GrpcCode {
        match self {
            KvError::KeyNotProvided
            | KvError::KeyNotFound
            | KvError::ValueProvided
            | KvError::LeaseProvided
            | KvError::TooManyOps
            | KvError::DuplicateKey
            | KvError::RequestTooLarge => GrpcCode::InvalidArgument,
            KvError::Compacted { .. } | KvError::FutureRevision { .. } => GrpcCode::OutOfRange,
            KvError::NoSpace => GrpcCode::ResourceExhausted,
            KvError::LeaseNotFound => GrpcCode::NotFound,
            KvError::LeaseExists => GrpcCode::FailedPrecondition,
            KvError::LeaseTtlTooLarge => GrpcCode::OutOfRange,
            KvError::NotLeader => GrpcCode::FailedPrecondition,
            KvError::Corrupt { .. } => GrpcCode::DataLoss,
            KvError::WatchRangeEmpty | KvError::WatchDuplicateId { .. } => {
                GrpcCode::InvalidArgument
            }
        }
    }
}
