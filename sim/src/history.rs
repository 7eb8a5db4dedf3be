//! The client history: what simulated clients asked, when, and what they
//! were told. The workload records every attempt (a retry after a timeout is
//! a new operation) through [`History`]'s recorder methods, and the checkers
//! read the finished history.
//!
//! An operation ends in one of three ways: it completed with a result, it
//! failed definitely (the cluster refused it, so it took no effect), or it is
//! indeterminate (a timeout or a dropped connection: it may or may not have
//! taken effect, at any moment after its invocation). Indeterminate
//! operations have no completion time; checkers treat it as +infinity.
//!
//! The vocabulary is the etcd operations the workload issues, each with the
//! parts of the etcd response the checkers need, notably the header revision:
//! for a write, the revision it created; for a read, the revision it observed.

use std::collections::BTreeSet;
use std::fmt;

use cairn_core::kv::{KeyValue, LeaseId, RequestOp, Revision, TxnRequest, TxnResponse};

use crate::time::SimTime;

/// A simulated client (one connection of the workload).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u64);

/// An operation's position in the [`History`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OperationId(pub usize);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client-{}", self.0)
    }
}

impl fmt::Display for OperationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op#{}", self.0)
    }
}

/// How a read is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Consistency {
    /// Through ReadIndex: must reflect every write completed before it started.
    Linearizable,
    /// From the serving member's local state: may be stale.
    Serializable,
}

/// The compare of a compare-and-swap transaction (etcd `Compare` on one key).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Comparison {
    /// `value(key) == value`; false when the key is absent (as in etcd).
    ValueEquals(Vec<u8>),
    /// `version(key) == version`; an absent key has version 0.
    VersionEquals(i64),
    /// `mod_revision(key) == revision`; an absent key has mod_revision 0.
    ModRevisionEquals(Revision),
    /// `create_revision(key) == 0`: the key does not exist.
    Absent,
}

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `Put(key, value, lease)`; lease 0 for none.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value; workloads make every written value unique.
        value: Vec<u8>,
        /// The lease to attach, 0 for none.
        lease: LeaseId,
    },
    /// `Range(key)` on a single key.
    Get {
        /// The key.
        key: Vec<u8>,
        /// Linearizable or serializable.
        consistency: Consistency,
    },
    /// `DeleteRange(key)` on a single key.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// `Txn(if comparison then put(key, value, lease) else range(key))`;
    /// with `Comparison::Absent` and a lease it is a lock acquisition.
    CompareAndSwap {
        /// The key compared and written.
        key: Vec<u8>,
        /// The compare.
        comparison: Comparison,
        /// The value written when the compare holds.
        value: Vec<u8>,
        /// The lease the put attaches, 0 for none.
        lease: LeaseId,
    },
    /// `Range(prefix, prefix_end(prefix))`, without limit.
    RangePrefix {
        /// The prefix.
        prefix: Vec<u8>,
        /// Linearizable or serializable.
        consistency: Consistency,
    },
    /// `LeaseGrant(ttl)`.
    LeaseGrant {
        /// The requested time to live.
        ttl_seconds: i64,
    },
    /// One `LeaseKeepAlive` round trip.
    LeaseKeepAlive {
        /// The lease.
        lease: LeaseId,
    },
    /// `LeaseRevoke(lease)`: deletes every key attached to it.
    LeaseRevoke {
        /// The lease.
        lease: LeaseId,
    },
    /// `LeaseTimeToLive(lease)`: the leader's remaining TTL.
    LeaseTimeToLive {
        /// The lease.
        lease: LeaseId,
    },
    /// A general etcd transaction: compares on any target with any
    /// operator, several keys, nested txns. Checked against the committed
    /// event log ([`crate::checker::txn`]), not per key.
    Txn {
        /// The request as sent.
        request: TxnRequest,
    },
}

/// Every key a put or delete anywhere in `request` names, both branches and
/// nested txns included (single keys: the workload sends no ranges here).
pub fn txn_keys_written(request: &TxnRequest) -> BTreeSet<Vec<u8>> {
    let mut keys = BTreeSet::new();
    visit_txn_ops(request, &mut |op| match op {
        RequestOp::Put(put) => {
            keys.insert(put.key.clone());
        }
        RequestOp::DeleteRange(delete) => {
            keys.insert(delete.key.clone());
        }
        RequestOp::Range(_) | RequestOp::Txn(_) => {}
    });
    keys
}

/// Calls `visit` on every op of every branch of `request`, nested ones included.
pub fn visit_txn_ops<'a>(request: &'a TxnRequest, visit: &mut impl FnMut(&'a RequestOp)) {
    for op in request.success.iter().chain(&request.failure) {
        visit(op);
        if let RequestOp::Txn(nested) = op {
            visit_txn_ops(nested, visit);
        }
    }
}

impl Operation {
    /// The single key this operation touches, if it touches exactly one.
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Operation::Put { key, .. }
            | Operation::Get { key, .. }
            | Operation::Delete { key }
            | Operation::CompareAndSwap { key, .. } => Some(key),
            Operation::RangePrefix { .. }
            | Operation::LeaseGrant { .. }
            | Operation::LeaseKeepAlive { .. }
            | Operation::LeaseRevoke { .. }
            | Operation::LeaseTimeToLive { .. }
            | Operation::Txn { .. } => None,
        }
    }

    /// The operation's name, as the run summary counts it.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Put { .. } => "put",
            Operation::Get { .. } => "get",
            Operation::Delete { .. } => "delete",
            Operation::CompareAndSwap { .. } => "compare-and-swap",
            Operation::RangePrefix { .. } => "range-prefix",
            Operation::LeaseGrant { .. } => "lease-grant",
            Operation::LeaseKeepAlive { .. } => "lease-keepalive",
            Operation::LeaseRevoke { .. } => "lease-revoke",
            Operation::LeaseTimeToLive { .. } => "lease-time-to-live",
            Operation::Txn { .. } => "txn",
        }
    }

    /// Whether the operation may change the key-value state.
    pub fn may_write(&self) -> bool {
        match self {
            Operation::Get { .. }
            | Operation::RangePrefix { .. }
            | Operation::LeaseKeepAlive { .. }
            | Operation::LeaseTimeToLive { .. } => false,
            Operation::Txn { request } => !txn_keys_written(request).is_empty(),
            _ => true,
        }
    }
}

/// The result of a compare-and-swap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwapOutcome {
    /// The compare held and the put ran.
    Swapped,
    /// The compare failed; the failure branch read the key.
    Refused {
        /// The key as read by the failure branch, `None` when absent.
        current: Option<KeyValue>,
    },
}

/// What a completed operation was told. `revision` is the response header's
/// revision throughout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperationResult {
    /// Answer to [`Operation::Put`]: `revision` is the revision the put created.
    Put {
        /// Header revision.
        revision: Revision,
    },
    /// Answer to [`Operation::Get`].
    Get {
        /// Header revision: the store revision the read observed.
        revision: Revision,
        /// The key-value, `None` when absent.
        kv: Option<KeyValue>,
    },
    /// Answer to [`Operation::Delete`].
    Delete {
        /// Header revision: the deletion's revision when `deleted` is 1.
        revision: Revision,
        /// How many keys were deleted (0 or 1).
        deleted: i64,
    },
    /// Answer to [`Operation::CompareAndSwap`].
    CompareAndSwap {
        /// Header revision: the put's revision when swapped.
        revision: Revision,
        /// Which branch ran.
        outcome: SwapOutcome,
    },
    /// Answer to [`Operation::RangePrefix`].
    RangePrefix {
        /// Header revision.
        revision: Revision,
        /// Every key under the prefix, in key order.
        kvs: Vec<KeyValue>,
    },
    /// Answer to [`Operation::LeaseGrant`].
    LeaseGrant {
        /// Header revision.
        revision: Revision,
        /// The granted lease.
        lease: LeaseId,
        /// The granted time to live.
        ttl_seconds: i64,
    },
    /// Answer to [`Operation::LeaseKeepAlive`].
    LeaseKeepAlive {
        /// Header revision.
        revision: Revision,
        /// The refreshed time to live; 0 when the lease no longer exists.
        ttl_seconds: i64,
    },
    /// Answer to [`Operation::LeaseRevoke`].
    LeaseRevoke {
        /// Header revision.
        revision: Revision,
    },
    /// Answer to [`Operation::LeaseTimeToLive`].
    LeaseTimeToLive {
        /// Header revision.
        revision: Revision,
        /// Remaining seconds, truncated; -1 when the lease does not exist.
        ttl_seconds: i64,
        /// The TTL the lease was granted with.
        granted_ttl_seconds: i64,
    },
    /// Answer to [`Operation::Txn`].
    Txn {
        /// Header revision: the txn's revision when it wrote, else the
        /// revision it observed.
        revision: Revision,
        /// The response as received.
        response: TxnResponse,
    },
}

impl OperationResult {
    /// The response header's revision.
    pub fn revision(&self) -> Revision {
        match self {
            OperationResult::Put { revision }
            | OperationResult::Get { revision, .. }
            | OperationResult::Delete { revision, .. }
            | OperationResult::CompareAndSwap { revision, .. }
            | OperationResult::RangePrefix { revision, .. }
            | OperationResult::LeaseGrant { revision, .. }
            | OperationResult::LeaseKeepAlive { revision, .. }
            | OperationResult::LeaseRevoke { revision }
            | OperationResult::LeaseTimeToLive { revision, .. }
            | OperationResult::Txn { revision, .. } => *revision,
        }
    }

    /// Whether this result answers `operation` (same kind).
    pub fn answers(&self, operation: &Operation) -> bool {
        matches!(
            (operation, self),
            (Operation::Put { .. }, OperationResult::Put { .. })
                | (Operation::Get { .. }, OperationResult::Get { .. })
                | (Operation::Delete { .. }, OperationResult::Delete { .. })
                | (
                    Operation::CompareAndSwap { .. },
                    OperationResult::CompareAndSwap { .. }
                )
                | (
                    Operation::RangePrefix { .. },
                    OperationResult::RangePrefix { .. }
                )
                | (
                    Operation::LeaseGrant { .. },
                    OperationResult::LeaseGrant { .. }
                )
                | (
                    Operation::LeaseKeepAlive { .. },
                    OperationResult::LeaseKeepAlive { .. }
                )
                | (
                    Operation::LeaseRevoke { .. },
                    OperationResult::LeaseRevoke { .. }
                )
                | (
                    Operation::LeaseTimeToLive { .. },
                    OperationResult::LeaseTimeToLive { .. }
                )
                | (Operation::Txn { .. }, OperationResult::Txn { .. })
        )
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still in flight.
    Pending,
    /// Answered.
    Completed {
        /// When the answer arrived.
        at: SimTime,
        /// The answer.
        result: OperationResult,
    },
    /// Refused: the operation definitely took no effect.
    Failed {
        /// When the refusal arrived.
        at: SimTime,
        /// Why, for the report.
        error: String,
    },
    /// Timed out or lost: it may have taken effect at any time after invocation.
    Indeterminate {
        /// Why, for the report.
        error: String,
    },
}

/// One operation of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationRecord {
    /// Its position in the history.
    pub id: OperationId,
    /// Who issued it.
    pub client: ClientId,
    /// What was asked.
    pub operation: Operation,
    /// When it was sent.
    pub invoked_at: SimTime,
    /// How it ended.
    pub outcome: Outcome,
}

impl OperationRecord {
    /// The completion time, `None` for pending or indeterminate operations
    /// (their effect may land at any time: completion is +infinity).
    pub fn completed_at(&self) -> Option<SimTime> {
        match &self.outcome {
            Outcome::Completed { at, .. } | Outcome::Failed { at, .. } => Some(*at),
            Outcome::Pending | Outcome::Indeterminate { .. } => None,
        }
    }

    /// The result, when the operation completed.
    pub fn result(&self) -> Option<&OperationResult> {
        match &self.outcome {
            Outcome::Completed { result, .. } => Some(result),
            _ => None,
        }
    }

    /// Whether the operation may have taken effect (completed or indeterminate).
    pub fn may_have_taken_effect(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Completed { .. } | Outcome::Indeterminate { .. } | Outcome::Pending
        )
    }
}

/// The recorded history of a run. Operations are numbered in invocation order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    records: Vec<OperationRecord>,
}

impl History {
    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// Records that `client` sent `operation` at `at`; returns its id for the
    /// matching [`History::complete`], [`History::fail`] or
    /// [`History::indeterminate`].
    pub fn invoke(&mut self, client: ClientId, operation: Operation, at: SimTime) -> OperationId {
        let id = OperationId(self.records.len());
        tracing::trace!(%client, %id, operation = operation.name(), %at, "invoke");
        self.records.push(OperationRecord {
            id,
            client,
            operation,
            invoked_at: at,
            outcome: Outcome::Pending,
        });
        id
    }

    /// Records the answer to operation `id`, received at `at`.
    pub fn complete(&mut self, id: OperationId, at: SimTime, result: OperationResult) {
        let record = self.pending_mut(id, at);
        assert!(
            result.answers(&record.operation),
            "{id}: result {result:?} does not answer {:?}",
            record.operation
        );
        tracing::trace!(%id, %at, revision = result.revision(), "complete");
        record.outcome = Outcome::Completed { at, result };
    }

    /// Records that operation `id` was refused at `at` and took no effect.
    pub fn fail(&mut self, id: OperationId, at: SimTime, error: impl Into<String>) {
        let record = self.pending_mut(id, at);
        let error = error.into();
        tracing::trace!(%id, %at, error = %error, "fail");
        record.outcome = Outcome::Failed { at, error };
    }

    /// Records that operation `id` has no known outcome (timeout, lost connection).
    pub fn indeterminate(&mut self, id: OperationId, error: impl Into<String>) {
        let record = self.record_mut(id);
        assert!(
            record.outcome == Outcome::Pending,
            "{id} already ended: {:?}",
            record.outcome
        );
        let error = error.into();
        tracing::trace!(%id, error = %error, "indeterminate");
        record.outcome = Outcome::Indeterminate { error };
    }

    /// Marks every operation still pending as indeterminate (the run is over).
    pub fn close(&mut self) {
        for record in &mut self.records {
            if record.outcome == Outcome::Pending {
                record.outcome = Outcome::Indeterminate {
                    error: "run ended".to_string(),
                };
            }
        }
    }

    /// Every operation, in invocation order.
    pub fn records(&self) -> &[OperationRecord] {
        &self.records
    }

    /// One operation.
    pub fn record(&self, id: OperationId) -> &OperationRecord {
        &self.records[id.0]
    }

    /// The number of operations.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn record_mut(&mut self, id: OperationId) -> &mut OperationRecord {
        let length = self.records.len();
        assert!(
            id.0 < length,
            "{id} unknown: history has {length} operations"
        );
        &mut self.records[id.0]
    }

    fn pending_mut(&mut self, id: OperationId, at: SimTime) -> &mut OperationRecord {
        let record = self.record_mut(id);
        assert!(
            record.outcome == Outcome::Pending,
            "{id} already ended: {:?}",
            record.outcome
        );
        assert!(
            at >= record.invoked_at,
            "{id} ends at {at} before its invocation at {}",
            record.invoked_at
        );
        record
    }
}
