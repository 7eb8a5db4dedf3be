//! [`PeerMessage`]: what travels between members after the handshake. Raft
//! messages, plus the few application requests a follower must send to the
//! leader because only the leader holds the answer (lease deadlines live
//! only on the leader, so keep-alive and time-to-live are forwarded).

use cairn_core::kv::{KvError, LeaseId, LeaseTimeToLiveResponse};
use cairn_core::raft::Message;
use serde::{Deserialize, Serialize};

/// One frame's worth of peer traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMessage {
    /// A Raft message, delivered to `Raft::step` on the receiver.
    Raft(Message),
    /// An application request for the receiver's node driver.
    Request {
        /// Chosen by the sender, echoed in the response.
        request_id: u64,
        /// What is asked.
        request: PeerRequest,
    },
    /// The answer to a [`PeerMessage::Request`], sent back on the
    /// responder's own outbound connection.
    Response {
        /// The request's ID.
        request_id: u64,
        /// The answer.
        response: PeerResponse,
    },
    /// Sent by the transport on an idle connection: finds broken
    /// connections, and lets a removed member hear that it was removed.
    /// Never delivered to the node.
    Ping,
}

/// An application request forwarded to the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Renew a lease (Lease.LeaseKeepAlive).
    LeaseKeepAlive {
        /// The lease.
        id: LeaseId,
    },
    /// Query a lease (Lease.LeaseTimeToLive).
    LeaseTimeToLive {
        /// The lease.
        id: LeaseId,
        /// Whether to list the attached keys.
        keys: bool,
    },
}

/// The answer to a [`PeerRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerResponse {
    /// The renewed lease's TTL in seconds.
    LeaseKeepAlive(Result<i64, PeerError>),
    /// The lease's time to live.
    LeaseTimeToLive(Result<LeaseTimeToLiveResponse, PeerError>),
}

/// Why a forwarded request failed on the receiver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PeerError {
    /// The receiver is no longer the leader; the sender should retry.
    #[error("the receiving member is not the leader")]
    NotLeader,
    /// The state machine refused the request.
    #[error(transparent)]
    Kv(#[from] KvError),
}
