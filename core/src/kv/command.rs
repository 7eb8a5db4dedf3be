//! [`Command`]: a write replicated through the Raft log, and its result.
//! Entry data is `bincode(Envelope)`; every member applies the same
//! commands in the same order and so reaches the same state.

use serde::{Deserialize, Serialize};

use super::alarm::{AlarmMember, AlarmRequest};
use super::request::{
    CompactionRequest, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseId, PutRequest, PutResponse, TxnRequest, TxnResponse,
};

/// A lease's remaining time to live, persisted so a new leader does not
/// restart it from the full TTL (etcd's lease checkpointing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseCheckpoint {
    /// The lease.
    pub id: LeaseId,
    /// Its remaining TTL in milliseconds at the checkpoint.
    pub remaining_ttl_ms: i64,
}

/// A state-machine write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// KV.Put.
    Put(PutRequest),
    /// KV.DeleteRange.
    DeleteRange(DeleteRangeRequest),
    /// KV.Txn (may also hold reads).
    Txn(TxnRequest),
    /// KV.Compact.
    Compact(CompactionRequest),
    /// Lease.LeaseGrant; the proposer has filled a non-zero ID.
    LeaseGrant(LeaseGrantRequest),
    /// Lease.LeaseRevoke, or a lease expired by the leader's decision.
    LeaseRevoke {
        /// The lease.
        id: LeaseId,
    },
    /// The leader's periodic record of remaining lease TTLs.
    LeaseCheckpoint {
        /// One checkpoint per lease.
        checkpoints: Vec<LeaseCheckpoint>,
    },
    /// Maintenance.Alarm, or a member raising NOSPACE on its own.
    Alarm(AlarmRequest),
}

/// The result of applying a [`Command`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Result of `Put`.
    Put(PutResponse),
    /// Result of `DeleteRange`.
    DeleteRange(DeleteRangeResponse),
    /// Result of `Txn`.
    Txn(TxnResponse),
    /// Result of `Compact`.
    Compact,
    /// Result of `LeaseGrant`.
    LeaseGrant(LeaseGrantResponse),
    /// Result of `LeaseRevoke`.
    LeaseRevoke,
    /// Result of `LeaseCheckpoint`.
    LeaseCheckpoint,
    /// Result of `Alarm`: the active alarms for `Get`, the raised alarm for
    /// `Activate`, the cleared one (if it was active) for `Deactivate`.
    Alarm {
        /// The alarms.
        alarms: Vec<AlarmMember>,
    },
}

/// What a Raft entry carries for the KV state machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique per proposal (member ID in the high bits, a counter below), so
    /// the member that proposed it can answer its waiting client when it applies.
    pub request_id: u64,
    /// The write.
    pub command: Command,
}
