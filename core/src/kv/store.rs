//! [`KvStore`]: the MVCC key-value state machine that Raft replicates.
//!
//! NB: API skeleton; the implementation lands with the KV state machine issue.

use super::command::{Command, CommandResponse};
use super::error::KvError;
use super::request::{
    Event, LeaseId, LeaseTimeToLiveResponse, RangeRequest, RangeResponse, Revision,
};

/// Limits of the state machine (etcd's defaults in [`KvConfig::default`]).
#[derive(Clone, Debug)]
pub struct KvConfig {
    /// At most this many ops in one txn, nested ops included (etcd: 128).
    pub txn_ops_max: usize,
    /// At most this many bytes in one request (etcd: 1.5 MiB).
    pub request_bytes_max: usize,
    /// Granted TTLs are raised to at least this many seconds.
    pub lease_ttl_min_seconds: i64,
    /// A grant above this TTL fails with "too large lease TTL" (etcd: 9e9 s).
    pub lease_ttl_max_seconds: i64,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            txn_ops_max: 128,
            request_bytes_max: 1024 * 1024 + 512 * 1024,
            lease_ttl_min_seconds: 2,
            lease_ttl_max_seconds: 9_000_000_000,
        }
    }
}

/// The outcome of applying one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The response for the waiting client (errors are deterministic too).
    pub response: Result<CommandResponse, KvError>,
    /// The events of the new revision, in order (empty if nothing changed).
    pub events: Vec<Event>,
    /// The store's revision after the command.
    pub revision: Revision,
}

/// The MVCC state machine.
#[derive(Debug)]
pub struct KvStore {
    _private: (),
}

#[allow(unused_variables, clippy::todo, missing_docs)]
impl KvStore {
    pub fn new(config: KvConfig) -> KvStore {
        todo!()
    }
    /// Checks a command before it is proposed (empty key, too many ops,
    /// duplicate keys, ignore_* misuse, size). Apply checks again.
    pub fn validate(&self, command: &Command) -> Result<(), KvError> {
        todo!()
    }
    /// Applies a committed command. `now_ms` is the driver's monotonic clock,
    /// used only for the leader's volatile lease deadlines, never for
    /// replicated state.
    pub fn apply(&mut self, command: &Command, now_ms: u64) -> Applied {
        todo!()
    }
    /// Serves a read at the current or a past revision.
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, KvError> {
        todo!()
    }
    /// The current revision.
    pub fn revision(&self) -> Revision {
        todo!()
    }
    /// The revision before which history is gone.
    pub fn compact_revision(&self) -> Revision {
        todo!()
    }
    /// The events of revisions in [from, to], for watch catch-up.
    pub fn events_between(&self, from: Revision, to: Revision) -> Result<Vec<Event>, KvError> {
        todo!()
    }
    /// The whole state, deterministic bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        todo!()
    }
    /// Rebuilds a store from `snapshot` bytes.
    pub fn restore(config: KvConfig, data: &[u8]) -> Result<KvStore, KvError> {
        todo!()
    }
    /// A hash of the whole replicated state.
    pub fn hash(&self) -> u32 {
        todo!()
    }
    /// etcd's HashKV: hash of the KV history up to `revision` (0 = current)
    /// and the compact revision.
    pub fn hash_kv(&self, revision: Revision) -> Result<(u32, Revision), KvError> {
        todo!()
    }
    /// Approximate bytes the state occupies.
    pub fn size_bytes(&self) -> u64 {
        todo!()
    }
    /// Leader only: start tracking lease deadlines (from checkpointed remaining TTLs).
    pub fn lease_promote(&mut self, now_ms: u64) {
        todo!()
    }
    /// Stop tracking lease deadlines (no longer leader).
    pub fn lease_demote(&mut self) {
        todo!()
    }
    /// Leader only: renew a lease; its TTL in seconds.
    pub fn lease_renew(&mut self, id: LeaseId, now_ms: u64) -> Result<i64, KvError> {
        todo!()
    }
    /// Leader only: leases whose deadline has passed (to propose revokes for).
    pub fn lease_expired(&self, now_ms: u64) -> Vec<LeaseId> {
        todo!()
    }
    /// Leader only: remaining TTLs to propose as a checkpoint.
    pub fn lease_checkpoints(&self, now_ms: u64) -> Vec<super::command::LeaseCheckpoint> {
        todo!()
    }
    /// Lease.TimeToLive.
    pub fn lease_time_to_live(
        &self,
        id: LeaseId,
        keys: bool,
        now_ms: u64,
    ) -> LeaseTimeToLiveResponse {
        todo!()
    }
    /// Lease.Leases.
    pub fn leases(&self) -> Vec<LeaseId> {
        todo!()
    }
}
