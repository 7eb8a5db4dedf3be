//! The revision checker: a cheap, whole-store check that only etcd's API
//! makes possible. Every write's response carries the revision it created,
//! and every read's response the revision it observed, so:
//!
//! - revisions created by acknowledged writes are unique;
//! - real-time order is respected: if operation A completed before B was
//!   invoked, B's revision is at least A's, and strictly greater when B
//!   created a revision (serializable reads are exempt: they may be stale);
//! - a read's key-values are well formed (`0 < create <= mod <= header`,
//!   version at least 1) and agree with every other observation of the same
//!   (key, mod_revision), including the write that created it;
//! - with the committed [`EventLog`], every read (serializable included)
//!   returns exactly the committed state of its keys at its header revision.
//!   This last check is what verifies multi-key atomicity of prefix ranges,
//!   which the per-key linearizability check cannot see. (Transactions are
//!   re-executed against the same replay by [`crate::checker::txn`]; here
//!   they take part in uniqueness, real-time order and observations.)
//!
//! The checks are O(n log n) in the history plus one replay of the log.

use std::collections::BTreeMap;
use std::fmt;

use cairn_core::kv::{KeyValue, LeaseId, Revision};

use crate::checker::txn::{txn_response_kvs, txn_response_wrote};
use crate::event_log::EventLog;
use crate::history::{
    Consistency, History, Operation, OperationId, OperationRecord, OperationResult, SwapOutcome,
};

/// A broken revision rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RevisionViolation {
    /// Two acknowledged writes report the same created revision.
    #[error("{first} and {second} both created revision {revision}")]
    DuplicateRevision {
        /// The revision.
        revision: Revision,
        /// One write.
        first: OperationId,
        /// The other.
        second: OperationId,
    },
    /// An operation observed a revision older than one completed before it began.
    #[error(
        "{later} (revision {later_revision}) began after {earlier} completed at revision \
         {earlier_revision}, but {relation}"
    )]
    RealTimeOrder {
        /// The operation that completed first.
        earlier: OperationId,
        /// Its revision.
        earlier_revision: Revision,
        /// The operation invoked after it completed.
        later: OperationId,
        /// Its revision.
        later_revision: Revision,
        /// What should have held.
        relation: &'static str,
    },
    /// A read returned a key-value that cannot exist at its header revision.
    #[error("{operation} at revision {revision} returned malformed {kv:?}: {reason}")]
    MalformedKeyValue {
        /// The read.
        operation: OperationId,
        /// Its header revision.
        revision: Revision,
        /// The key-value.
        kv: KeyValue,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// Two observations of the same key at the same mod_revision disagree.
    #[error(
        "key {key:?} at mod_revision {mod_revision}: {first} saw {first_seen}, {second} saw {second_seen}"
    )]
    ConflictingObservation {
        /// The key.
        key: String,
        /// The mod_revision.
        mod_revision: Revision,
        /// One observer.
        first: OperationId,
        /// What it saw.
        first_seen: String,
        /// The other observer.
        second: OperationId,
        /// What it saw.
        second_seen: String,
    },
    /// A read's result differs from the committed state at its revision.
    #[error(
        "{operation} read key {key:?} at revision {revision} as {observed:?}, committed state is {committed:?}"
    )]
    StaleOrPhantomRead {
        /// The read.
        operation: OperationId,
        /// Its header revision.
        revision: Revision,
        /// The key.
        key: String,
        /// What it returned.
        observed: Option<KeyValue>,
        /// What was committed at that revision.
        committed: Option<KeyValue>,
    },
}

/// The result of [`check_revisions`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevisionReport {
    /// Every violation found, in a deterministic order.
    pub violations: Vec<RevisionViolation>,
    /// Reads compared against the committed state.
    pub reads_verified: usize,
    /// Reads that could not be compared (revision not in the event log).
    pub reads_unverifiable: usize,
}

impl RevisionReport {
    /// No violation. (Unverifiable reads are counted, not failed: the other
    /// checks still cover them.)
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for RevisionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "revisions: {} violations; {} reads verified against committed state, {} unverifiable",
            self.violations.len(),
            self.reads_verified,
            self.reads_unverifiable
        )?;
        for violation in &self.violations {
            writeln!(f, "  {violation}")?;
        }
        Ok(())
    }
}

/// Whether a completed operation created a revision.
fn created_revision(result: &OperationResult) -> bool {
    match result {
        OperationResult::Put { .. } => true,
        OperationResult::Delete { deleted, .. } => *deleted > 0,
        OperationResult::CompareAndSwap { outcome, .. } => *outcome == SwapOutcome::Swapped,
        OperationResult::Txn { response, .. } => txn_response_wrote(response),
        // Lease revocation bumps the revision only when keys were attached;
        // treat it as an observation.
        _ => false,
    }
}

/// Whether an operation's revision is subject to real-time order.
fn ordered(record: &OperationRecord) -> bool {
    !matches!(
        record.operation,
        Operation::Get {
            consistency: Consistency::Serializable,
            ..
        } | Operation::RangePrefix {
            consistency: Consistency::Serializable,
            ..
        } | Operation::LeaseKeepAlive { .. }
            | Operation::LeaseTimeToLive { .. }
    )
}

/// Checks revision rules over `history`, and against `committed` when given.
pub fn check_revisions(history: &History, committed: Option<&EventLog>) -> RevisionReport {
    let mut report = RevisionReport::default();
    check_unique(history, &mut report);
    check_real_time(history, &mut report);
    check_observations(history, &mut report);
    if let Some(log) = committed {
        check_against_log(history, log, &mut report);
    }
    report
}

fn check_unique(history: &History, report: &mut RevisionReport) {
    let mut creators: BTreeMap<Revision, OperationId> = BTreeMap::new();
    for record in history.records() {
        let Some(result) = record.result() else {
            continue;
        };
        if !created_revision(result) {
            continue;
        }
        if let Some(first) = creators.insert(result.revision(), record.id) {
            report
                .violations
                .push(RevisionViolation::DuplicateRevision {
                    revision: result.revision(),
                    first,
                    second: record.id,
                });
        }
    }
}

fn check_real_time(history: &History, report: &mut RevisionReport) {
    // Completed, ordered operations by completion time; swept against
    // operations by invocation time, keeping the highest revision (and its
    // operation) among those completed strictly before each invocation.
    let mut completed: Vec<(crate::time::SimTime, Revision, OperationId)> = history
        .records()
        .iter()
        .filter(|record| ordered(record))
        .filter_map(|record| {
            Some((
                record.completed_at()?,
                record.result()?.revision(),
                record.id,
            ))
        })
        .collect();
    completed.sort();
    let mut invoked: Vec<&OperationRecord> = history
        .records()
        .iter()
        .filter(|record| ordered(record) && record.result().is_some())
        .collect();
    invoked.sort_by_key(|record| (record.invoked_at, record.id));
    let mut cursor = 0;
    let mut highest: Option<(Revision, OperationId)> = None;
    for record in invoked {
        while cursor < completed.len() && completed[cursor].0 < record.invoked_at {
            let (_, revision, id) = completed[cursor];
            if highest.is_none_or(|(best, _)| revision > best) {
                highest = Some((revision, id));
            }
            cursor += 1;
        }
        let Some((earlier_revision, earlier)) = highest else {
            continue;
        };
        let result = record.result().expect("filtered to completed operations");
        let later_revision = result.revision();
        let violated = if created_revision(result) {
            (later_revision <= earlier_revision).then_some("a write must create a newer revision")
        } else {
            (later_revision < earlier_revision)
                .then_some("a read must not observe an older revision")
        };
        if let Some(relation) = violated {
            report.violations.push(RevisionViolation::RealTimeOrder {
                earlier,
                earlier_revision,
                later: record.id,
                later_revision,
                relation,
            });
        }
    }
}

/// What an observation of (key, mod_revision) says.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sighting {
    value: Vec<u8>,
    /// Unknown for writes (a put's response does not echo version or lease).
    details: Option<(i64, Revision, LeaseId)>,
}

impl Sighting {
    fn agrees(&self, other: &Sighting) -> bool {
        self.value == other.value
            && match (&self.details, &other.details) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    fn describe(&self) -> String {
        match self.details {
            Some((version, create_revision, lease)) => format!(
                "value {:?} version {version} create_revision {create_revision} lease {lease}",
                String::from_utf8_lossy(&self.value)
            ),
            None => format!("value {:?} (written)", String::from_utf8_lossy(&self.value)),
        }
    }
}

/// Every key-value a completed read returned, with the read's revision.
fn read_kvs(record: &OperationRecord) -> Vec<&KeyValue> {
    match record.result() {
        Some(OperationResult::Get { kv: Some(kv), .. }) => vec![kv],
        Some(OperationResult::RangePrefix { kvs, .. }) => kvs.iter().collect(),
        Some(OperationResult::CompareAndSwap {
            outcome: SwapOutcome::Refused { current: Some(kv) },
            ..
        }) => vec![kv],
        Some(OperationResult::Txn { response, .. }) => txn_response_kvs(response),
        _ => Vec::new(),
    }
}

fn check_observations(history: &History, report: &mut RevisionReport) {
    let mut sightings: BTreeMap<(Vec<u8>, Revision), (OperationId, Sighting)> = BTreeMap::new();
    let mut sight = |report: &mut RevisionReport,
                     key: &[u8],
                     mod_revision: Revision,
                     id: OperationId,
                     sighting: Sighting| {
        match sightings.get(&(key.to_vec(), mod_revision)) {
            None => {
                sightings.insert((key.to_vec(), mod_revision), (id, sighting));
            }
            Some((first, seen)) => {
                if !seen.agrees(&sighting) {
                    report
                        .violations
                        .push(RevisionViolation::ConflictingObservation {
                            key: String::from_utf8_lossy(key).into_owned(),
                            mod_revision,
                            first: *first,
                            first_seen: seen.describe(),
                            second: id,
                            second_seen: sighting.describe(),
                        });
                } else if seen.details.is_none() && sighting.details.is_some() {
                    sightings.insert((key.to_vec(), mod_revision), (id, sighting));
                }
            }
        }
    };
    for record in history.records() {
        let Some(result) = record.result() else {
            continue;
        };
        let written = match (&record.operation, result) {
            (Operation::Put { key, value, .. }, OperationResult::Put { revision }) => {
                Some((key, value, *revision))
            }
            (
                Operation::CompareAndSwap { key, value, .. },
                OperationResult::CompareAndSwap {
                    revision,
                    outcome: SwapOutcome::Swapped,
                },
            ) => Some((key, value, *revision)),
            _ => None,
        };
        if let Some((key, value, revision)) = written {
            let sighting = Sighting {
                value: value.clone(),
                details: None,
            };
            sight(report, key, revision, record.id, sighting);
        }
        let revision = result.revision();
        for kv in read_kvs(record) {
            let reason = if kv.create_revision <= 0 {
                Some("create_revision must be positive")
            } else if kv.create_revision > kv.mod_revision {
                Some("create_revision must not exceed mod_revision")
            } else if kv.mod_revision > revision {
                Some("mod_revision must not exceed the header revision")
            } else if kv.version < 1 {
                Some("version must be at least 1")
            } else {
                None
            };
            if let Some(reason) = reason {
                report
                    .violations
                    .push(RevisionViolation::MalformedKeyValue {
                        operation: record.id,
                        revision,
                        kv: kv.clone(),
                        reason,
                    });
                continue;
            }
            let sighting = Sighting {
                value: kv.value.clone(),
                details: Some((kv.version, kv.create_revision, kv.lease)),
            };
            sight(report, &kv.key, kv.mod_revision, record.id, sighting);
        }
    }
}

/// The keys a read covers and what it returned for each.
fn read_view(record: &OperationRecord) -> Option<(Revision, ReadScope<'_>)> {
    match (&record.operation, record.result()?) {
        (Operation::Get { key, .. }, OperationResult::Get { revision, kv }) => Some((
            *revision,
            ReadScope::Key {
                key,
                kv: kv.as_ref(),
            },
        )),
        (Operation::RangePrefix { prefix, .. }, OperationResult::RangePrefix { revision, kvs }) => {
            Some((*revision, ReadScope::Prefix { prefix, kvs }))
        }
        _ => None,
    }
}

enum ReadScope<'a> {
    Key {
        key: &'a [u8],
        kv: Option<&'a KeyValue>,
    },
    Prefix {
        prefix: &'a [u8],
        kvs: &'a [KeyValue],
    },
}

fn check_against_log(history: &History, log: &EventLog, report: &mut RevisionReport) {
    let through = log.contiguous_through();
    let mut reads: Vec<(Revision, &OperationRecord)> = history
        .records()
        .iter()
        .filter_map(|record| Some((read_view(record)?.0, record)))
        .collect();
    reads.sort_by_key(|(revision, record)| (*revision, record.id));
    let mut replay = log.replay();
    for (revision, record) in reads {
        if revision > through || revision < log.initial_revision() {
            report.reads_unverifiable += 1;
            continue;
        }
        let advanced = replay.advance_to(revision);
        assert!(
            advanced,
            "revision {revision} is within the contiguous log through {through}"
        );
        report.reads_verified += 1;
        let state = replay.state();
        let mut compare = |key: &[u8], observed: Option<&KeyValue>| {
            let committed = state.get(key);
            if observed != committed {
                report
                    .violations
                    .push(RevisionViolation::StaleOrPhantomRead {
                        operation: record.id,
                        revision,
                        key: String::from_utf8_lossy(key).into_owned(),
                        observed: observed.cloned(),
                        committed: committed.cloned(),
                    });
            }
        };
        match read_view(record).expect("filtered to reads").1 {
            ReadScope::Key { key, kv } => compare(key, kv),
            ReadScope::Prefix { prefix, kvs } => {
                let returned: BTreeMap<&[u8], &KeyValue> =
                    kvs.iter().map(|kv| (kv.key.as_slice(), kv)).collect();
                let committed_keys: Vec<&Vec<u8>> = state
                    .range(prefix.to_vec()..)
                    .take_while(|(key, _)| key.starts_with(prefix))
                    .map(|(key, _)| key)
                    .collect();
                for key in &committed_keys {
                    compare(key, returned.get(key.as_slice()).copied());
                }
                for kv in kvs {
                    if !kv.key.starts_with(prefix) || !state.contains_key(&kv.key) {
                        compare(&kv.key, Some(kv));
                    }
                }
            }
        }
    }
}
