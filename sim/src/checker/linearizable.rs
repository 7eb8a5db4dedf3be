//! Linearizability of the client history: a Wing–Gong–Lowe search with
//! memoization, split per key as Porcupine does.
//!
//! Why per key: a history of thousands of operations is out of reach for a
//! whole-store search, but the store is a map of independent registers for
//! single-key operations, and a history is linearizable only if every
//! per-key projection is. What goes into key `k`'s partition:
//! - put, linearizable get, delete and compare-and-swap on `k`;
//! - every linearizable prefix range, projected onto `k` as a read of `k`
//!   (absent when `k` is not in the result) for every key `k` the history
//!   mentions under the prefix. This checks each key's view of the range;
//!   that one range saw all keys at one revision is the revision checker's
//!   job ([`crate::checker::revision`]), which compares every read with the
//!   committed state at its header revision.
//!
//! Keys a general transaction ([`Operation::Txn`]) may write are left out
//! altogether: multi-key and nested txns do not project onto one register,
//! and the transaction checker ([`crate::checker::txn`]) re-executes every
//! txn against the committed state instead. (The workload gives txns their
//! own keys, so no other operation loses its check.)
//!
//! Not checked here: serializable reads (they may be stale; the revision
//! checker verifies them against the committed state at their revision),
//! lease operations (the lease checker), failed operations (they took no
//! effect) and indeterminate reads (they constrain nothing).
//!
//! The per-key model is etcd's: absent, or present with value, version,
//! create_revision, mod_revision and lease. Revisions come from the put's
//! response header; an indeterminate put's revision is unknown until a read
//! reveals it. A key attached to a lease may vanish at any moment (the
//! lease expired or was revoked), so the model is nondeterministic and the
//! search explores each possible next state.
//!
//! Indeterminate writes have completion +infinity: they may be linearized
//! anywhere after their invocation, including after everything else (which
//! is the same as never taking effect).
//!
//! Timed-out writes are what make the search explode (each one can go
//! anywhere after its invocation), so before searching, every reduction
//! that cannot change a verdict is applied: a timed-out write whose unique
//! value a read returned is pinned before that read at the revision it
//! showed; with the committed [`EventLog`], timed-out writes are pinned to
//! their logged revision or dropped when they never happened; values nobody
//! reads are merged; and interchangeable timed-out operations are only ever
//! linearized earliest-invoked first (symmetry reduction).
//!
//! The search is bounded by a step budget per partition; when it runs out
//! the partition is "unknown", never "ok", and the report counts unknowns.
//! The budget is a step count, not wall-clock time, so verdicts replay.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use cairn_core::kv::{EventType, KeyValue, LeaseId, Revision};

use crate::event_log::EventLog;
use crate::history::{
    txn_keys_written, Comparison, Consistency, History, Operation, OperationId, OperationResult,
    Outcome, SwapOutcome,
};
use crate::time::SimTime;

/// Default search budget per key partition, in search steps. A step is one
/// attempt to linearize or to backtrack; a few million take about a second.
pub const STEPS_PER_PARTITION_MAX_DEFAULT: u64 = 2_000_000;

/// Default memory budget per partition: 64-bit words of linearized-operation
/// sets held in the memo (16 Mi words, 128 MiB). Exceeding it is "unknown".
pub const MEMO_WORDS_MAX_DEFAULT: usize = 16 * 1024 * 1024;

/// How many not-yet-linearized operations a counterexample lists.
pub const COUNTEREXAMPLE_BLOCKED_MAX: usize = 16;

/// Search bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearizabilityConfig {
    /// Search steps allowed per key partition before it is reported unknown.
    pub steps_per_partition_max: u64,
    /// Memo size allowed per key partition, in 64-bit words, before it is
    /// reported unknown (bounds memory on long, highly concurrent histories).
    pub memo_words_max: usize,
}

impl Default for LinearizabilityConfig {
    fn default() -> Self {
        LinearizabilityConfig {
            steps_per_partition_max: STEPS_PER_PARTITION_MAX_DEFAULT,
            memo_words_max: MEMO_WORDS_MAX_DEFAULT,
        }
    }
}

/// Why a partition is not linearizable: the deepest linearization the search
/// reached and the operations it could not place after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counterexample {
    /// The longest order of operations the model accepted.
    pub longest_linearization: Vec<OperationId>,
    /// Operations still to place at that point, in invocation order, up to
    /// [`COUNTEREXAMPLE_BLOCKED_MAX`]; the last one had to be placed before
    /// its completion and none of the candidates could be.
    pub blocked: Vec<OperationId>,
}

/// One partition's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionVerdict {
    /// A valid linearization exists.
    Linearizable,
    /// No valid linearization exists.
    NotLinearizable(Counterexample),
    /// The budget ran out first: no verdict.
    Unknown,
}

/// The result for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionReport {
    /// The key.
    pub key: Vec<u8>,
    /// Operations in the partition (projected ranges included).
    pub operations: usize,
    /// Search steps spent.
    pub steps: u64,
    /// The verdict.
    pub verdict: PartitionVerdict,
}

/// The result of [`check_linearizability`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinearizabilityReport {
    /// One report per key, in key order.
    pub partitions: Vec<PartitionReport>,
    /// Serializable reads left to the revision checker.
    pub serializable_reads_skipped: usize,
    /// Lease operations left to the lease checker.
    pub lease_operations_skipped: usize,
    /// Failed operations (no effect) and indeterminate reads (no information).
    pub uninformative_operations_skipped: usize,
    /// Indeterminate writes the committed log resolved (took effect at a
    /// known revision, or never took effect).
    pub indeterminate_resolved_by_log: usize,
}

impl LinearizabilityReport {
    /// Partitions found linearizable.
    pub fn linearizable_count(&self) -> usize {
        self.count(|verdict| matches!(verdict, PartitionVerdict::Linearizable))
    }

    /// Partitions found not linearizable.
    pub fn violation_count(&self) -> usize {
        self.count(|verdict| matches!(verdict, PartitionVerdict::NotLinearizable(_)))
    }

    /// Partitions whose search ran out of budget.
    pub fn unknown_count(&self) -> usize {
        self.count(|verdict| matches!(verdict, PartitionVerdict::Unknown))
    }

    /// True only when every partition is linearizable (unknown is not ok).
    pub fn is_ok(&self) -> bool {
        self.linearizable_count() == self.partitions.len()
    }

    /// The partitions found not linearizable.
    pub fn violations(&self) -> impl Iterator<Item = &PartitionReport> {
        self.partitions
            .iter()
            .filter(|partition| matches!(partition.verdict, PartitionVerdict::NotLinearizable(_)))
    }

    fn count(&self, predicate: impl Fn(&PartitionVerdict) -> bool) -> usize {
        self.partitions
            .iter()
            .filter(|partition| predicate(&partition.verdict))
            .count()
    }
}

impl fmt::Display for LinearizabilityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "linearizability: {} keys: {} ok, {} violated, {} unknown \
             (skipped: {} serializable reads, {} lease operations, {} uninformative; \
             {} indeterminate writes resolved by the log)",
            self.partitions.len(),
            self.linearizable_count(),
            self.violation_count(),
            self.unknown_count(),
            self.serializable_reads_skipped,
            self.lease_operations_skipped,
            self.uninformative_operations_skipped,
            self.indeterminate_resolved_by_log,
        )?;
        for partition in &self.partitions {
            match &partition.verdict {
                PartitionVerdict::Linearizable => {}
                PartitionVerdict::Unknown => writeln!(
                    f,
                    "  key {:?}: unknown after {} steps over {} operations",
                    String::from_utf8_lossy(&partition.key),
                    partition.steps,
                    partition.operations
                )?,
                PartitionVerdict::NotLinearizable(counterexample) => writeln!(
                    f,
                    "  key {:?}: NOT linearizable; longest linearization {:?}; blocked at {:?}",
                    String::from_utf8_lossy(&partition.key),
                    counterexample.longest_linearization,
                    counterexample.blocked
                )?,
            }
        }
        Ok(())
    }
}

/// Checks every key partition of `history`.
///
/// `committed`, when given, is used only to narrow indeterminate writes
/// (pinned to their logged revision, or dropped when they never happened);
/// a narrowed history has fewer linearizations, so the log can never turn a
/// violation into "ok".
pub fn check_linearizability(
    history: &History,
    committed: Option<&EventLog>,
    config: &LinearizabilityConfig,
) -> LinearizabilityReport {
    let mut report = LinearizabilityReport::default();
    let resolutions = committed.map_or_else(BTreeMap::new, |log| resolve_with_log(history, log));
    let partitions = partition(history, &resolutions, &mut report);
    for (key, operations) in partitions {
        let (verdict, steps) = search(&operations, config);
        if !matches!(verdict, PartitionVerdict::Linearizable) {
            tracing::warn!(
                key = %String::from_utf8_lossy(&key),
                operations = operations.len(),
                steps,
                ?verdict,
                "linearizability"
            );
        }
        report.partitions.push(PartitionReport {
            key,
            operations: operations.len(),
            steps,
            verdict,
        });
    }
    report
}

/// What the committed log says about an indeterminate write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resolution {
    /// It took effect at `revision`, no later than `by` (first applied).
    TookEffect { revision: Revision, by: SimTime },
    /// It never took effect (the log is complete and does not hold it).
    NoEffect,
}

/// Put events of the log by (key, value): their revisions and first-apply times.
type LoggedPuts<'log> = BTreeMap<(&'log [u8], &'log [u8]), Vec<(Revision, SimTime)>>;

/// Narrows indeterminate writes with the committed log.
///
/// Workloads write unique values, so a put event of (key, value) in the log
/// is the one write of that value: it took effect at that revision, before
/// a member first applied it. When the log is complete (contiguous, and
/// reaching every revision a completed operation reported), a write whose
/// value it does not hold never took effect, and an indeterminate delete
/// invoked after every logged deletion of its key that no acknowledged
/// delete claims was applied deleted nothing (it would have logged a
/// deletion after its invocation). Keys that ever had a lease are left
/// alone (a revocation also deletes). With a truthful log these facts hold in every valid
/// linearization, so verdicts are unchanged; with an untruthful one the
/// constraints only remove linearizations, so the verdict is never "ok" by
/// mistake. What it buys is speed: floating writes (completion +infinity)
/// are what makes the search explode when proving a violation.
fn resolve_with_log(history: &History, log: &EventLog) -> BTreeMap<OperationId, Resolution> {
    let highest_reported = history
        .records()
        .iter()
        .filter_map(|record| Some(record.result()?.revision()))
        .max()
        .unwrap_or(0);
    let exhaustive =
        log.contiguous_through() == log.last_revision() && log.last_revision() >= highest_reported;
    let mut puts: LoggedPuts<'_> = BTreeMap::new();
    let mut deletions: BTreeMap<&[u8], Vec<(Revision, SimTime)>> = BTreeMap::new();
    let mut leased: BTreeSet<&[u8]> = BTreeSet::new();
    for (revision, events) in log.iter() {
        for event in &events.events {
            match event.kind {
                EventType::Put => {
                    if event.kv.lease != 0 {
                        leased.insert(event.kv.key.as_slice());
                    }
                    puts.entry((event.kv.key.as_slice(), event.kv.value.as_slice()))
                        .or_default()
                        .push((revision, events.applied_at));
                }
                EventType::Delete => {
                    deletions
                        .entry(event.kv.key.as_slice())
                        .or_default()
                        .push((revision, events.applied_at));
                }
            }
        }
    }
    let mut claimed: BTreeMap<&[u8], BTreeSet<Revision>> = BTreeMap::new();
    for record in history.records() {
        if let (Operation::Delete { key }, Some(OperationResult::Delete { revision, deleted })) =
            (&record.operation, record.result())
        {
            if *deleted > 0 {
                claimed.entry(key.as_slice()).or_default().insert(*revision);
            }
        }
    }
    let mut resolutions = BTreeMap::new();
    // Indeterminate deletes per key, in invocation order.
    let mut floating_deletes: BTreeMap<&[u8], Vec<&crate::history::OperationRecord>> =
        BTreeMap::new();
    for record in history.records() {
        if !matches!(
            record.outcome,
            Outcome::Pending | Outcome::Indeterminate { .. }
        ) {
            continue;
        }
        if let Operation::Delete { key } = &record.operation {
            floating_deletes
                .entry(key.as_slice())
                .or_default()
                .push(record);
        }
        let resolution = match &record.operation {
            Operation::Put { key, value, .. } | Operation::CompareAndSwap { key, value, .. } => {
                match puts
                    .get(&(key.as_slice(), value.as_slice()))
                    .map(Vec::as_slice)
                {
                    Some([(revision, applied_at)]) if *applied_at >= record.invoked_at => {
                        Some(Resolution::TookEffect {
                            revision: *revision,
                            by: *applied_at,
                        })
                    }
                    None if exhaustive => Some(Resolution::NoEffect),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(resolution) = resolution {
            resolutions.insert(record.id, resolution);
        }
    }
    if !exhaustive {
        return resolutions;
    }
    // NB: deletes invoked before an unclaimed deletion stay floating. Which
    // of several candidates caused a deletion is unknown, and pinning the
    // earliest-invoked one (the only always-valid choice) widens its window
    // so much that the search slows down more than floating does.
    for (key, deletes) in floating_deletes {
        if leased.contains(key) {
            continue;
        }
        let claimed = claimed.get(key);
        let last_unclaimed_applied_at = deletions.get(key).and_then(|logged| {
            logged
                .iter()
                .filter(|(revision, _)| claimed.is_none_or(|claimed| !claimed.contains(revision)))
                .map(|(_, applied_at)| *applied_at)
                .max()
        });
        for record in deletes {
            if last_unclaimed_applied_at.is_none_or(|applied_at| record.invoked_at > applied_at) {
                resolutions.insert(record.id, Resolution::NoEffect);
            }
        }
    }
    resolutions
}

/// A value, interned per partition so states compare cheaply.
type ValueId = u32;

/// A key as a read saw it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Observed {
    value: ValueId,
    version: i64,
    create_revision: Revision,
    mod_revision: Revision,
    lease: LeaseId,
}

/// A compare with its value interned.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ModelComparison {
    ValueEquals(ValueId),
    VersionEquals(i64),
    ModRevisionEquals(Revision),
    Absent,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ModelSwap {
    Swapped { revision: Revision },
    Refused { current: Option<Observed> },
}

/// One operation as the per-key model sees it; `None` results are unknown.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ModelInput {
    Put {
        value: ValueId,
        lease: LeaseId,
        revision: Option<Revision>,
    },
    Read {
        observed: Option<Observed>,
    },
    Delete {
        deleted: Option<i64>,
    },
    CompareAndSwap {
        comparison: ModelComparison,
        value: ValueId,
        lease: LeaseId,
        result: Option<ModelSwap>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PartitionOperation {
    id: OperationId,
    invoked_at: SimTime,
    /// `None` means +infinity (indeterminate).
    completed_at: Option<SimTime>,
    input: ModelInput,
}

/// The state of one key. Unknown revisions are `None`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum KeyState {
    Absent,
    Present {
        value: ValueId,
        version: i64,
        create_revision: Option<Revision>,
        mod_revision: Option<Revision>,
        lease: LeaseId,
    },
}

#[derive(Default)]
struct Interner {
    ids: BTreeMap<Vec<u8>, ValueId>,
}

impl Interner {
    fn intern(&mut self, value: &[u8]) -> ValueId {
        if let Some(id) = self.ids.get(value) {
            return *id;
        }
        let id = ValueId::try_from(self.ids.len()).expect("fewer than 2^32 distinct values");
        self.ids.insert(value.to_vec(), id);
        id
    }

    fn observe(&mut self, kv: &KeyValue) -> Observed {
        Observed {
            value: self.intern(&kv.value),
            version: kv.version,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            lease: kv.lease,
        }
    }
}

/// Splits the history into per-key operation lists, in key order.
fn partition(
    history: &History,
    resolutions: &BTreeMap<OperationId, Resolution>,
    report: &mut LinearizabilityReport,
) -> BTreeMap<Vec<u8>, Vec<PartitionOperation>> {
    // Keys general txns write: the txn checker's, not ours.
    let txn_keys: BTreeSet<Vec<u8>> = history
        .records()
        .iter()
        .filter_map(|record| match &record.operation {
            Operation::Txn { request } => Some(txn_keys_written(request)),
            _ => None,
        })
        .flatten()
        .collect();
    // Every key the history mentions, so prefix ranges can be projected.
    let mut keys: BTreeSet<Vec<u8>> = BTreeSet::new();
    for record in history.records() {
        if let Some(key) = record.operation.key() {
            keys.insert(key.to_vec());
        }
        if let Some(OperationResult::RangePrefix { kvs, .. }) = record.result() {
            keys.extend(kvs.iter().map(|kv| kv.key.clone()));
        }
    }
    keys.retain(|key| !txn_keys.contains(key));
    let mut interners: BTreeMap<Vec<u8>, Interner> = BTreeMap::new();
    let mut partitions: BTreeMap<Vec<u8>, Vec<PartitionOperation>> = BTreeMap::new();
    for record in history.records() {
        let (mut completed_at, result) = match &record.outcome {
            Outcome::Completed { at, result } => (Some(*at), Some(result)),
            Outcome::Pending | Outcome::Indeterminate { .. } => (None, None),
            Outcome::Failed { .. } => {
                report.uninformative_operations_skipped += 1;
                continue;
            }
        };
        // The revision an indeterminate write took effect at, per the log.
        let mut resolved_revision = None;
        match resolutions.get(&record.id) {
            None => {}
            Some(Resolution::NoEffect) => {
                report.indeterminate_resolved_by_log += 1;
                continue;
            }
            Some(Resolution::TookEffect { revision, by }) => {
                report.indeterminate_resolved_by_log += 1;
                completed_at = Some(*by);
                resolved_revision = Some(*revision);
            }
        }
        let mut push = |key: &[u8], input: ModelInput| {
            partitions
                .entry(key.to_vec())
                .or_default()
                .push(PartitionOperation {
                    id: record.id,
                    invoked_at: record.invoked_at,
                    completed_at,
                    input,
                });
        };
        match &record.operation {
            Operation::Put { key, value, lease } => {
                let value = interners.entry(key.clone()).or_default().intern(value);
                let revision = result.map(OperationResult::revision).or(resolved_revision);
                push(
                    key,
                    ModelInput::Put {
                        value,
                        lease: *lease,
                        revision,
                    },
                );
            }
            Operation::Get {
                consistency: Consistency::Serializable,
                ..
            }
            | Operation::RangePrefix {
                consistency: Consistency::Serializable,
                ..
            } => {
                report.serializable_reads_skipped += 1;
            }
            Operation::Get {
                key,
                consistency: Consistency::Linearizable,
            } => {
                let Some(OperationResult::Get { kv, .. }) = result else {
                    report.uninformative_operations_skipped += 1;
                    continue;
                };
                let interner = interners.entry(key.clone()).or_default();
                let observed = kv.as_ref().map(|kv| interner.observe(kv));
                push(key, ModelInput::Read { observed });
            }
            Operation::Delete { key } => {
                let deleted = match result {
                    Some(OperationResult::Delete { deleted, .. }) => Some(*deleted),
                    _ => resolved_revision.map(|_| 1),
                };
                push(key, ModelInput::Delete { deleted });
            }
            Operation::CompareAndSwap {
                key,
                comparison,
                value,
                lease,
            } => {
                let interner = interners.entry(key.clone()).or_default();
                let comparison = match comparison {
                    Comparison::ValueEquals(expected) => {
                        ModelComparison::ValueEquals(interner.intern(expected))
                    }
                    Comparison::VersionEquals(version) => ModelComparison::VersionEquals(*version),
                    Comparison::ModRevisionEquals(revision) => {
                        ModelComparison::ModRevisionEquals(*revision)
                    }
                    Comparison::Absent => ModelComparison::Absent,
                };
                let value = interner.intern(value);
                let result = match result {
                    Some(OperationResult::CompareAndSwap { revision, outcome }) => {
                        Some(match outcome {
                            SwapOutcome::Swapped => ModelSwap::Swapped {
                                revision: *revision,
                            },
                            SwapOutcome::Refused { current } => ModelSwap::Refused {
                                current: current.as_ref().map(|kv| interner.observe(kv)),
                            },
                        })
                    }
                    _ => resolved_revision.map(|revision| ModelSwap::Swapped { revision }),
                };
                push(
                    key,
                    ModelInput::CompareAndSwap {
                        comparison,
                        value,
                        lease: *lease,
                        result,
                    },
                );
            }
            Operation::RangePrefix {
                prefix,
                consistency: Consistency::Linearizable,
            } => {
                let Some(OperationResult::RangePrefix { kvs, .. }) = result else {
                    report.uninformative_operations_skipped += 1;
                    continue;
                };
                let returned: BTreeMap<&[u8], &KeyValue> =
                    kvs.iter().map(|kv| (kv.key.as_slice(), kv)).collect();
                for key in keys
                    .range(prefix.clone()..)
                    .take_while(|key| key.starts_with(prefix))
                {
                    let interner = interners.entry(key.clone()).or_default();
                    let observed = returned.get(key.as_slice()).map(|kv| interner.observe(kv));
                    push(key, ModelInput::Read { observed });
                }
            }
            Operation::LeaseGrant { .. }
            | Operation::LeaseKeepAlive { .. }
            | Operation::LeaseTimeToLive { .. }
            | Operation::LeaseRevoke { .. } => {
                report.lease_operations_skipped += 1;
            }
            Operation::Txn { .. } => {}
        }
    }
    // A single-key operation on a key a txn writes would see writes this
    // model does not know of.
    partitions.retain(|key, _| !txn_keys.contains(key));
    for operations in partitions.values_mut() {
        anchor_observed_writes(operations);
        merge_unobserved_values(operations);
    }
    partitions
}

/// The value id standing for every value no operation of the partition
/// reads or compares against.
const UNOBSERVED_VALUE: ValueId = ValueId::MAX;

/// Gives every value that no read returns and no compare names the same id.
///
/// Such a value can only ever make an observation fail, and it fails the
/// same way whichever unobserved value it is, so merging them changes no
/// verdict. It shrinks the memo, and it makes timed-out writes of
/// unobserved values interchangeable, which [`symmetry_predecessors`] uses.
fn merge_unobserved_values(operations: &mut [PartitionOperation]) {
    let mut observed: BTreeSet<ValueId> = BTreeSet::new();
    for operation in operations.iter() {
        match &operation.input {
            ModelInput::Read {
                observed: Some(seen),
            } => {
                observed.insert(seen.value);
            }
            ModelInput::CompareAndSwap {
                comparison, result, ..
            } => {
                if let ModelComparison::ValueEquals(expected) = comparison {
                    observed.insert(*expected);
                }
                if let Some(ModelSwap::Refused {
                    current: Some(seen),
                }) = result
                {
                    observed.insert(seen.value);
                }
            }
            ModelInput::Read { observed: None }
            | ModelInput::Put { .. }
            | ModelInput::Delete { .. } => {}
        }
    }
    for operation in operations.iter_mut() {
        match &mut operation.input {
            ModelInput::Put { value, .. } | ModelInput::CompareAndSwap { value, .. } => {
                if !observed.contains(value) {
                    *value = UNOBSERVED_VALUE;
                }
            }
            ModelInput::Read { .. } | ModelInput::Delete { .. } => {}
        }
    }
}

/// For each operation, the operation it is interchangeable with that was
/// invoked just before it, if any.
///
/// Two indeterminate operations with the same input (e.g. two timed-out
/// deletes of the key, or two timed-out puts of unobserved values) have the
/// same effect and no completion; in any linearization one can stand in for
/// the other wherever both were already invoked. So the search only ever
/// linearizes the earliest-invoked of a group not yet linearized: a sound
/// symmetry reduction that keeps the number of subsets of floating
/// operations linear instead of exponential.
fn symmetry_predecessors(operations: &[PartitionOperation]) -> Vec<Option<usize>> {
    let mut groups: BTreeMap<&ModelInput, Vec<usize>> = BTreeMap::new();
    for (position, operation) in operations.iter().enumerate() {
        if operation.completed_at.is_none() {
            groups.entry(&operation.input).or_default().push(position);
        }
    }
    let mut predecessors = vec![None; operations.len()];
    for mut members in groups.into_values() {
        members.sort_by_key(|position| (operations[*position].invoked_at, *position));
        for pair in members.windows(2) {
            predecessors[pair[1]] = Some(pair[0]);
        }
    }
    predecessors
}

/// Anchors indeterminate writes that a read observed.
///
/// Workloads write unique values, so a read that returned value `v` at
/// mod_revision `r` observed the one write of `v`: that write took effect
/// (a compare-and-swap swapped), at revision `r`, before the read completed.
/// Giving the write that completion time and revision adds only
/// constraints every valid linearization already satisfies, so verdicts do
/// not change, but the search no longer has to try placing it anywhere up to
/// +infinity, which is what makes histories with many timeouts tractable.
/// Values written more than once in the partition are left alone, as are
/// values whose observers disagree on the revision (the search reports that).
fn anchor_observed_writes(operations: &mut [PartitionOperation]) {
    let mut writers: BTreeMap<ValueId, usize> = BTreeMap::new();
    for operation in operations.iter() {
        match &operation.input {
            ModelInput::Put { value, .. } | ModelInput::CompareAndSwap { value, .. } => {
                *writers.entry(*value).or_insert(0) += 1;
            }
            ModelInput::Read { .. } | ModelInput::Delete { .. } => {}
        }
    }
    // Per value: the earliest completion of an observer, and the revisions seen.
    let mut observations: BTreeMap<ValueId, (SimTime, BTreeSet<Revision>)> = BTreeMap::new();
    for operation in operations.iter() {
        let Some(completed_at) = operation.completed_at else {
            continue;
        };
        let observed = match &operation.input {
            ModelInput::Read {
                observed: Some(observed),
            } => observed,
            ModelInput::CompareAndSwap {
                result:
                    Some(ModelSwap::Refused {
                        current: Some(observed),
                    }),
                ..
            } => observed,
            _ => continue,
        };
        let entry = observations
            .entry(observed.value)
            .or_insert_with(|| (completed_at, BTreeSet::new()));
        entry.0 = entry.0.min(completed_at);
        entry.1.insert(observed.mod_revision);
    }
    for operation in operations.iter_mut() {
        if operation.completed_at.is_some() {
            continue;
        }
        let value = match &operation.input {
            ModelInput::Put { value, .. } | ModelInput::CompareAndSwap { value, .. } => *value,
            ModelInput::Read { .. } | ModelInput::Delete { .. } => continue,
        };
        if writers.get(&value) != Some(&1) {
            continue;
        }
        let Some((observed_by, revisions)) = observations.get(&value) else {
            continue;
        };
        let [revision] = revisions.iter().copied().collect::<Vec<_>>()[..] else {
            continue;
        };
        if *observed_by < operation.invoked_at {
            // Observed before it was sent: the search will report it.
            continue;
        }
        operation.completed_at = Some(*observed_by);
        match &mut operation.input {
            ModelInput::Put {
                revision: known, ..
            } => *known = Some(revision),
            ModelInput::CompareAndSwap { result, .. } => {
                *result = Some(ModelSwap::Swapped { revision });
            }
            ModelInput::Read { .. } | ModelInput::Delete { .. } => {}
        }
    }
}

/// The possible states after applying `input` to `state`; empty when the
/// observed result is impossible.
fn step(state: &KeyState, input: &ModelInput) -> Vec<KeyState> {
    let mut next = Vec::new();
    apply(state, input, &mut next);
    if let KeyState::Present { lease, .. } = state {
        if *lease != 0 {
            // The lease may have expired or been revoked just before.
            apply(&KeyState::Absent, input, &mut next);
        }
    }
    next.sort();
    next.dedup();
    next
}

fn apply(state: &KeyState, input: &ModelInput, next: &mut Vec<KeyState>) {
    match input {
        ModelInput::Put {
            value,
            lease,
            revision,
        } => {
            if let Some(state) = put(state, *value, *lease, *revision) {
                next.push(state);
            }
        }
        ModelInput::Read { observed } => {
            if let Some(state) = read(state, observed.as_ref()) {
                next.push(state);
            }
        }
        ModelInput::Delete { deleted } => {
            let expected = match state {
                KeyState::Absent => 0,
                KeyState::Present { .. } => 1,
            };
            if deleted.is_none_or(|deleted| deleted == expected) {
                next.push(KeyState::Absent);
            }
        }
        ModelInput::CompareAndSwap {
            comparison,
            value,
            lease,
            result,
        } => {
            let holds = evaluate(state, comparison);
            let swapped = |next: &mut Vec<KeyState>, revision: Option<Revision>| {
                if holds == Some(false) {
                    return;
                }
                let state = assume_holds(state, comparison);
                if let Some(state) = put(&state, *value, *lease, revision) {
                    next.push(state);
                }
            };
            match result {
                Some(ModelSwap::Swapped { revision }) => swapped(next, Some(*revision)),
                Some(ModelSwap::Refused { current }) => {
                    if holds != Some(true) {
                        if let Some(state) = read(state, current.as_ref()) {
                            next.push(state);
                        }
                    }
                }
                None => {
                    swapped(next, None);
                    if holds != Some(true) {
                        next.push(state.clone());
                    }
                }
            }
        }
    }
}

/// A put with (when known) the revision it created.
fn put(
    state: &KeyState,
    value: ValueId,
    lease: LeaseId,
    revision: Option<Revision>,
) -> Option<KeyState> {
    match state {
        KeyState::Absent => Some(KeyState::Present {
            value,
            version: 1,
            create_revision: revision,
            mod_revision: revision,
            lease,
        }),
        KeyState::Present {
            version,
            create_revision,
            mod_revision,
            ..
        } => {
            if let (Some(new), Some(old)) = (revision, mod_revision) {
                if new <= *old {
                    return None;
                }
            }
            Some(KeyState::Present {
                value,
                version: version + 1,
                create_revision: *create_revision,
                mod_revision: revision,
                lease,
            })
        }
    }
}

/// A read observing `observed`; refines unknown revisions from it.
fn read(state: &KeyState, observed: Option<&Observed>) -> Option<KeyState> {
    match (state, observed) {
        (KeyState::Absent, None) => Some(KeyState::Absent),
        (
            KeyState::Present {
                value,
                version,
                create_revision,
                mod_revision,
                lease,
            },
            Some(observed),
        ) => {
            let revision_matches =
                |known: &Option<Revision>, seen: Revision| known.is_none_or(|known| known == seen);
            let matches = *value == observed.value
                && *version == observed.version
                && *lease == observed.lease
                && revision_matches(create_revision, observed.create_revision)
                && revision_matches(mod_revision, observed.mod_revision);
            matches.then_some(KeyState::Present {
                value: *value,
                version: *version,
                create_revision: Some(observed.create_revision),
                mod_revision: Some(observed.mod_revision),
                lease: *lease,
            })
        }
        _ => None,
    }
}

/// Whether the compare holds; `None` when it depends on an unknown revision.
fn evaluate(state: &KeyState, comparison: &ModelComparison) -> Option<bool> {
    match (state, comparison) {
        (KeyState::Absent, ModelComparison::ValueEquals(_)) => Some(false),
        (KeyState::Absent, ModelComparison::VersionEquals(version)) => Some(*version == 0),
        (KeyState::Absent, ModelComparison::ModRevisionEquals(revision)) => Some(*revision == 0),
        (KeyState::Absent, ModelComparison::Absent) => Some(true),
        (KeyState::Present { value, .. }, ModelComparison::ValueEquals(expected)) => {
            Some(value == expected)
        }
        (KeyState::Present { version, .. }, ModelComparison::VersionEquals(expected)) => {
            Some(version == expected)
        }
        (KeyState::Present { mod_revision, .. }, ModelComparison::ModRevisionEquals(expected)) => {
            mod_revision.map(|revision| revision == *expected)
        }
        (KeyState::Present { .. }, ModelComparison::Absent) => Some(false),
    }
}

/// The state refined by knowing the compare held.
fn assume_holds(state: &KeyState, comparison: &ModelComparison) -> KeyState {
    match (state, comparison) {
        (
            KeyState::Present {
                value,
                version,
                create_revision,
                mod_revision: None,
                lease,
            },
            ModelComparison::ModRevisionEquals(expected),
        ) => KeyState::Present {
            value: *value,
            version: *version,
            create_revision: *create_revision,
            mod_revision: Some(*expected),
            lease: *lease,
        },
        _ => state.clone(),
    }
}

/// No link: the end of the event list.
const NIL: usize = usize::MAX;
/// The list head sentinel's slot.
const HEAD: usize = 0;

/// A set of operations by position, for the memo.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct OperationSet {
    words: Vec<u64>,
}

impl OperationSet {
    fn new(size: usize) -> OperationSet {
        OperationSet {
            words: vec![0; size.div_ceil(64)],
        }
    }

    fn insert(&mut self, position: usize) {
        self.words[position / 64] |= 1 << (position % 64);
    }

    fn contains(&self, position: usize) -> bool {
        self.words[position / 64] & (1 << (position % 64)) != 0
    }

    fn remove(&mut self, position: usize) {
        self.words[position / 64] &= !(1 << (position % 64));
    }
}

/// A choice the search made and may revisit.
struct Frame {
    /// The call event linearized.
    call: usize,
    /// The state before it.
    previous: KeyState,
    /// The states it could lead to.
    alternatives: Vec<KeyState>,
    /// The next alternative to try on backtracking.
    next_alternative: usize,
}

/// The event list of one partition: calls and returns in time order, as a
/// doubly linked list so linearized operations can be lifted out and put back.
struct Events {
    /// For slot `s` (1-based; slot 0 is the head): the operation it belongs to.
    operation: Vec<usize>,
    /// Whether slot `s` is a call.
    is_call: Vec<bool>,
    /// The return slot of each operation.
    return_slot: Vec<usize>,
    next: Vec<usize>,
    previous: Vec<usize>,
}

impl Events {
    fn new(operations: &[PartitionOperation]) -> Events {
        // Order: by time; calls before returns at the same instant (so
        // touching operations count as concurrent); indeterminate returns last.
        let mut order: Vec<(SimTime, bool, usize)> = Vec::with_capacity(operations.len() * 2);
        for (position, operation) in operations.iter().enumerate() {
            order.push((operation.invoked_at, false, position));
            let returned_at = operation.completed_at.unwrap_or(SimTime(u64::MAX));
            order.push((returned_at, true, position));
        }
        order.sort();
        let slots = order.len() + 1;
        let mut events = Events {
            operation: vec![NIL; slots],
            is_call: vec![false; slots],
            return_slot: vec![NIL; operations.len()],
            next: vec![NIL; slots],
            previous: vec![NIL; slots],
        };
        for (index, (_, is_return, position)) in order.iter().enumerate() {
            let slot = index + 1;
            events.operation[slot] = *position;
            events.is_call[slot] = !is_return;
            if *is_return {
                events.return_slot[*position] = slot;
            }
            events.previous[slot] = slot - 1;
            events.next[slot - 1] = slot;
        }
        events
    }

    fn unlink(&mut self, slot: usize) {
        let (previous, next) = (self.previous[slot], self.next[slot]);
        self.next[previous] = next;
        if next != NIL {
            self.previous[next] = previous;
        }
    }

    fn relink(&mut self, slot: usize) {
        let (previous, next) = (self.previous[slot], self.next[slot]);
        self.next[previous] = slot;
        if next != NIL {
            self.previous[next] = slot;
        }
    }

    /// Removes a call and its return.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.return_slot[self.operation[call]]);
    }

    /// Restores what [`Events::lift`] removed, in reverse order.
    fn unlift(&mut self, call: usize) {
        self.relink(self.return_slot[self.operation[call]]);
        self.relink(call);
    }
}

/// The WGL search with memoization over (linearized set, state).
fn search(
    operations: &[PartitionOperation],
    config: &LinearizabilityConfig,
) -> (PartitionVerdict, u64) {
    let words_per_entry = operations.len().div_ceil(64).max(1);
    let memo_entries_max = config.memo_words_max / words_per_entry;
    let mut events = Events::new(operations);
    let predecessors = symmetry_predecessors(operations);
    let mut linearized = OperationSet::new(operations.len());
    let mut memo: BTreeSet<(OperationSet, KeyState)> = BTreeSet::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut state = KeyState::Absent;
    let mut entry = events.next[HEAD];
    let mut steps: u64 = 0;
    let mut deepest: Vec<usize> = Vec::new();
    let mut deepest_blocked: Vec<usize> = Vec::new();

    // Tries the alternatives of `frame` from `next_alternative`; on success
    // pushes the frame and returns true.
    let try_frame = |mut frame: Frame,
                     state: &mut KeyState,
                     linearized: &mut OperationSet,
                     memo: &mut BTreeSet<(OperationSet, KeyState)>,
                     stack: &mut Vec<Frame>,
                     events: &mut Events|
     -> bool {
        let position = events.operation[frame.call];
        linearized.insert(position);
        while frame.next_alternative < frame.alternatives.len() {
            let candidate = frame.alternatives[frame.next_alternative].clone();
            frame.next_alternative += 1;
            if memo.insert((linearized.clone(), candidate.clone())) {
                *state = candidate;
                events.lift(frame.call);
                stack.push(frame);
                return true;
            }
        }
        linearized.remove(position);
        false
    };

    loop {
        if events.next[HEAD] == NIL {
            return (PartitionVerdict::Linearizable, steps);
        }
        steps += 1;
        if steps > config.steps_per_partition_max || memo.len() > memo_entries_max {
            return (PartitionVerdict::Unknown, steps);
        }
        if entry != NIL && events.is_call[entry] {
            let position = events.operation[entry];
            if predecessors[position].is_some_and(|earlier| !linearized.contains(earlier)) {
                // An interchangeable, earlier-invoked operation goes first.
                entry = events.next[entry];
                continue;
            }
            let alternatives = step(&state, &operations[position].input);
            let frame = Frame {
                call: entry,
                previous: state.clone(),
                alternatives,
                next_alternative: 0,
            };
            if try_frame(
                frame,
                &mut state,
                &mut linearized,
                &mut memo,
                &mut stack,
                &mut events,
            ) {
                if stack.len() > deepest.len() {
                    deepest = stack
                        .iter()
                        .map(|frame| events.operation[frame.call])
                        .collect();
                    deepest_blocked = blocked(&events);
                }
                entry = events.next[HEAD];
            } else {
                entry = events.next[entry];
            }
            continue;
        }
        // A return: its operation was not linearized in time. Backtrack.
        if stack.is_empty() && deepest_blocked.is_empty() {
            deepest_blocked = blocked(&events);
        }
        let Some(frame) = stack.pop() else {
            let counterexample = Counterexample {
                longest_linearization: deepest
                    .iter()
                    .map(|position| operations[*position].id)
                    .collect(),
                blocked: deepest_blocked
                    .iter()
                    .map(|position| operations[*position].id)
                    .collect(),
            };
            return (PartitionVerdict::NotLinearizable(counterexample), steps);
        };
        let position = events.operation[frame.call];
        linearized.remove(position);
        events.unlift(frame.call);
        state = frame.previous.clone();
        let call = frame.call;
        if try_frame(
            frame,
            &mut state,
            &mut linearized,
            &mut memo,
            &mut stack,
            &mut events,
        ) {
            entry = events.next[HEAD];
        } else {
            entry = events.next[call];
        }
    }
}

/// The operations still to place: calls up to and including the first return.
fn blocked(events: &Events) -> Vec<usize> {
    let mut blocked = Vec::new();
    let mut slot = events.next[HEAD];
    while slot != NIL && blocked.len() < COUNTEREXAMPLE_BLOCKED_MAX {
        blocked.push(events.operation[slot]);
        if !events.is_call[slot] {
            break;
        }
        slot = events.next[slot];
    }
    blocked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(value: ValueId, version: i64, revision: Revision) -> Observed {
        Observed {
            value,
            version,
            create_revision: revision,
            mod_revision: revision,
            lease: 0,
        }
    }

    #[test]
    fn put_then_read_refines_unknown_revision() {
        let state = put(&KeyState::Absent, 7, 0, None).expect("put on absent");
        let next = step(
            &state,
            &ModelInput::Read {
                observed: Some(observed(7, 1, 5)),
            },
        );
        assert_eq!(
            next,
            vec![KeyState::Present {
                value: 7,
                version: 1,
                create_revision: Some(5),
                mod_revision: Some(5),
                lease: 0
            }]
        );
    }

    #[test]
    fn leased_key_may_vanish_before_any_operation() {
        let state = put(&KeyState::Absent, 1, 9, Some(3)).expect("put on absent");
        assert_eq!(
            step(&state, &ModelInput::Read { observed: None }),
            vec![KeyState::Absent]
        );
        let unleased = put(&KeyState::Absent, 1, 0, Some(3)).expect("put on absent");
        assert!(step(&unleased, &ModelInput::Read { observed: None }).is_empty());
    }

    #[test]
    fn put_revision_must_exceed_previous_modification() {
        let state = put(&KeyState::Absent, 1, 0, Some(5)).expect("put on absent");
        assert_eq!(put(&state, 2, 0, Some(5)), None);
        assert!(put(&state, 2, 0, Some(6)).is_some());
    }

    #[test]
    fn indeterminate_swap_with_unknown_compare_branches_both_ways() {
        let state = put(&KeyState::Absent, 1, 0, None).expect("put on absent");
        let input = ModelInput::CompareAndSwap {
            comparison: ModelComparison::ModRevisionEquals(4),
            value: 2,
            lease: 0,
            result: None,
        };
        assert_eq!(step(&state, &input).len(), 2);
    }
}
