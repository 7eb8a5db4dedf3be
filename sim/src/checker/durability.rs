//! The durability checker: no acknowledged write is lost, whatever crashes,
//! restarts, lost fsyncs and torn writes happened.
//!
//! After the liveness phase the runner reads the whole keyspace from the
//! healed cluster ([`FinalState`]) and hands over the committed
//! [`EventLog`]. Every acknowledged write (put, successful compare-and-swap,
//! delete that deleted) at revision `r` must then be:
//! - at or below the final revision;
//! - in the event log at revision `r` with the same key, kind and value,
//!   where the log has revision `r`;
//! - otherwise visible in the final state or superseded: the key's final
//!   mod_revision is above `r`, or equals `r` with the written value, or the
//!   key is gone and some operation could have deleted it after `r` (a
//!   delete, or a lease the key was attached to).

use std::collections::BTreeMap;
use std::fmt;

use cairn_core::kv::{EventType, KeyValue, RequestOp, Revision};

use crate::event_log::EventLog;
use crate::history::{
    visit_txn_ops, History, Operation, OperationId, OperationResult, Outcome, SwapOutcome,
};

/// The cluster's key-value state at the end of the run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FinalState {
    /// The header revision of the final read.
    pub revision: Revision,
    /// Every live key.
    pub kvs: BTreeMap<Vec<u8>, KeyValue>,
}

/// An acknowledged write that did not survive.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{operation} ({kind} of key {key:?} at revision {revision}) was acknowledged but lost: {reason}")]
pub struct DurabilityViolation {
    /// The write.
    pub operation: OperationId,
    /// "put" or "delete".
    pub kind: &'static str,
    /// The key.
    pub key: String,
    /// The revision it was acknowledged at.
    pub revision: Revision,
    /// What the final state or log shows instead.
    pub reason: String,
}

/// The result of [`check_durability`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DurabilityReport {
    /// Acknowledged writes checked.
    pub writes_checked: usize,
    /// Every lost write.
    pub violations: Vec<DurabilityViolation>,
}

impl DurabilityReport {
    /// No acknowledged write lost.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for DurabilityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "durability: {} acknowledged writes checked, {} lost",
            self.writes_checked,
            self.violations.len()
        )?;
        for violation in &self.violations {
            writeln!(f, "  {violation}")?;
        }
        Ok(())
    }
}

/// An acknowledged write: `value` is `None` for a delete.
struct AcknowledgedWrite<'a> {
    operation: OperationId,
    key: &'a [u8],
    value: Option<&'a [u8]>,
    revision: Revision,
}

/// Checks every acknowledged write of `history` against the end state.
pub fn check_durability(
    history: &History,
    log: Option<&EventLog>,
    final_state: &FinalState,
) -> DurabilityReport {
    let deletable = deletable_keys(history);
    let mut report = DurabilityReport::default();
    for record in history.records() {
        let Some(result) = record.result() else {
            continue;
        };
        let write = match (&record.operation, result) {
            (Operation::Put { key, value, .. }, OperationResult::Put { revision }) => {
                AcknowledgedWrite {
                    operation: record.id,
                    key,
                    value: Some(value),
                    revision: *revision,
                }
            }
            (
                Operation::CompareAndSwap { key, value, .. },
                OperationResult::CompareAndSwap {
                    revision,
                    outcome: SwapOutcome::Swapped,
                },
            ) => AcknowledgedWrite {
                operation: record.id,
                key,
                value: Some(value),
                revision: *revision,
            },
            (Operation::Delete { key }, OperationResult::Delete { revision, deleted })
                if *deleted > 0 =>
            {
                AcknowledgedWrite {
                    operation: record.id,
                    key,
                    value: None,
                    revision: *revision,
                }
            }
            _ => continue,
        };
        report.writes_checked += 1;
        if let Some(reason) = lost(&write, log, final_state, &deletable) {
            report.violations.push(DurabilityViolation {
                operation: write.operation,
                kind: if write.value.is_some() {
                    "put"
                } else {
                    "delete"
                },
                key: String::from_utf8_lossy(write.key).into_owned(),
                revision: write.revision,
                reason,
            });
        }
    }
    report
}

/// Keys some operation in the history may have deleted: a non-failed
/// delete, or a put (plain or compare-and-swap) that attached a lease.
fn deletable_keys(history: &History) -> BTreeMap<Vec<u8>, ()> {
    let mut keys = BTreeMap::new();
    for record in history.records() {
        if matches!(record.outcome, Outcome::Failed { .. }) {
            continue;
        }
        match &record.operation {
            Operation::Delete { key } => {
                keys.insert(key.clone(), ());
            }
            Operation::Put { key, lease, .. } | Operation::CompareAndSwap { key, lease, .. }
                if *lease != 0 =>
            {
                keys.insert(key.clone(), ());
            }
            Operation::Txn { request } => visit_txn_ops(request, &mut |op| match op {
                RequestOp::DeleteRange(delete) => {
                    keys.insert(delete.key.clone(), ());
                }
                RequestOp::Put(put) if put.lease != 0 => {
                    keys.insert(put.key.clone(), ());
                }
                _ => {}
            }),
            _ => {}
        }
    }
    keys
}

/// Why the write is lost, or `None` when it survived.
fn lost(
    write: &AcknowledgedWrite<'_>,
    log: Option<&EventLog>,
    final_state: &FinalState,
    deletable: &BTreeMap<Vec<u8>, ()>,
) -> Option<String> {
    if write.revision > final_state.revision {
        return Some(format!(
            "the final revision is only {}",
            final_state.revision
        ));
    }
    if let Some(revision) = log.and_then(|log| log.get(write.revision)) {
        let found = revision.events.iter().any(|event| {
            event.kv.key == write.key
                && match write.value {
                    Some(value) => event.kind == EventType::Put && event.kv.value == value,
                    None => event.kind == EventType::Delete,
                }
        });
        return (!found).then(|| format!("the committed revision holds {:?}", revision.events));
    }
    match (final_state.kvs.get(write.key), write.value) {
        (Some(kv), _) if kv.mod_revision > write.revision => None,
        (Some(kv), Some(value)) if kv.mod_revision == write.revision => {
            (kv.value != value).then(|| {
                format!(
                    "the key holds {:?} at that revision",
                    String::from_utf8_lossy(&kv.value)
                )
            })
        }
        (Some(kv), _) => Some(format!(
            "the key's final mod_revision is {} (older state survived)",
            kv.mod_revision
        )),
        (None, None) => None,
        (None, Some(_)) => (!deletable.contains_key(write.key))
            .then(|| "the key is gone and nothing could have deleted it".to_string()),
    }
}
