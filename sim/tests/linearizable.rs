//! Guards the linearizability checker against both kinds of mistake: calling
//! a correct history wrong (stale reads that are really concurrent,
//! indeterminate writes that land late or never) and calling a wrong history
//! correct (stale reads, lost writes, resurrected keys, phantom values). A
//! checker that says "ok" when the search is cut short would hide bugs, so
//! the budget must yield "unknown".

mod common;

use std::collections::BTreeMap;

use cairn_core::kv::{Event, KeyValue, LeaseId, Revision};
use cairn_core::raft::NodeId;
use cairn_sim::checker::linearizable::{
    check_linearizability, LinearizabilityConfig, PartitionVerdict,
};
use cairn_sim::event_log::EventLog;
use cairn_sim::history::{
    ClientId, Comparison, Consistency, History, Operation, OperationResult, SwapOutcome,
};
use cairn_sim::time::SimTime;
use common::*;
use proptest::prelude::*;

fn check(history: &History) -> cairn_sim::checker::linearizable::LinearizabilityReport {
    check_linearizability(history, None, &LinearizabilityConfig::default())
}

#[test]
fn sequential_put_get_is_linearizable() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(2));
    done(
        &mut history,
        2,
        20,
        get("a"),
        30,
        get_ok(2, Some(kv("a", "1", 2, 2, 1))),
    );
    done(&mut history, 1, 40, put("a", "2"), 50, put_ok(3));
    done(
        &mut history,
        2,
        60,
        get("a"),
        70,
        get_ok(3, Some(kv("a", "2", 2, 3, 2))),
    );
    let report = check(&history);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.partitions.len(), 1);
}

#[test]
fn stale_read_after_completed_write_is_a_violation() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(2));
    done(&mut history, 1, 20, put("a", "2"), 30, put_ok(3));
    // Begins after the second put completed, yet sees the first value.
    let stale = done(
        &mut history,
        2,
        40,
        get("a"),
        50,
        get_ok(3, Some(kv("a", "1", 2, 2, 1))),
    );
    let report = check(&history);
    assert_eq!(report.violation_count(), 1, "{report}");
    let violation = report.violations().next().expect("one violation");
    let PartitionVerdict::NotLinearizable(counterexample) = &violation.verdict else {
        panic!("expected a counterexample, got {:?}", violation.verdict);
    };
    assert!(
        counterexample.blocked.contains(&stale),
        "{counterexample:?}"
    );
}

#[test]
fn read_concurrent_with_write_may_see_either_value() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(2));
    done(&mut history, 1, 20, put("a", "2"), 60, put_ok(3));
    done(
        &mut history,
        2,
        30,
        get("a"),
        40,
        get_ok(2, Some(kv("a", "1", 2, 2, 1))),
    );
    done(
        &mut history,
        3,
        35,
        get("a"),
        45,
        get_ok(3, Some(kv("a", "2", 2, 3, 2))),
    );
    assert!(check(&history).is_ok());
}

#[test]
fn reads_going_back_in_time_are_a_violation() {
    // Two sequential reads during one long write: new then old is impossible.
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(2));
    done(&mut history, 1, 20, put("a", "2"), 100, put_ok(3));
    done(
        &mut history,
        2,
        30,
        get("a"),
        40,
        get_ok(3, Some(kv("a", "2", 2, 3, 2))),
    );
    done(
        &mut history,
        2,
        50,
        get("a"),
        60,
        get_ok(3, Some(kv("a", "1", 2, 2, 1))),
    );
    assert_eq!(check(&history).violation_count(), 1);
}

#[test]
fn lost_write_is_a_violation() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(2));
    done(&mut history, 2, 20, get("a"), 30, get_ok(2, None));
    assert_eq!(check(&history).violation_count(), 1);
}

#[test]
fn indeterminate_write_may_take_effect_late() {
    let mut history = History::new();
    lost(&mut history, 1, 0, put("a", "1"));
    done(&mut history, 2, 10, get("a"), 20, get_ok(1, None));
    // Long after the client gave up, the write shows up.
    done(
        &mut history,
        2,
        500,
        get("a"),
        510,
        get_ok(2, Some(kv("a", "1", 2, 2, 1))),
    );
    assert!(check(&history).is_ok());
}

#[test]
fn indeterminate_write_may_never_take_effect() {
    let mut history = History::new();
    lost(&mut history, 1, 0, put("a", "1"));
    done(&mut history, 2, 500, get("a"), 510, get_ok(1, None));
    assert!(check(&history).is_ok());
}

#[test]
fn indeterminate_write_cannot_take_effect_before_its_invocation() {
    let mut history = History::new();
    done(
        &mut history,
        2,
        0,
        get("a"),
        10,
        get_ok(2, Some(kv("a", "1", 2, 2, 1))),
    );
    lost(&mut history, 1, 20, put("a", "1"));
    assert_eq!(check(&history).violation_count(), 1);
}

#[test]
fn indeterminate_write_cannot_appear_then_disappear() {
    let mut history = History::new();
    lost(&mut history, 1, 0, put("a", "1"));
    done(
        &mut history,
        2,
        10,
        get("a"),
        20,
        get_ok(2, Some(kv("a", "1", 2, 2, 1))),
    );
    done(&mut history, 2, 30, get("a"), 40, get_ok(2, None));
    assert_eq!(check(&history).violation_count(), 1);
}

#[test]
fn failed_write_must_not_be_visible() {
    let mut history = History::new();
    refused_op(&mut history, 1, 0, put("a", "1"), 5);
    done(
        &mut history,
        2,
        10,
        get("a"),
        20,
        get_ok(2, Some(kv("a", "1", 2, 2, 1))),
    );
    assert_eq!(check(&history).violation_count(), 1);
}

#[test]
fn serializable_reads_are_not_judged_here() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(2));
    done(
        &mut history,
        2,
        20,
        serializable_get("a"),
        30,
        get_ok(1, None),
    );
    let report = check(&history);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.serializable_reads_skipped, 1);
}

#[test]
fn compare_and_swap_success_and_refusal_follow_the_register() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("lock", "free"), 10, put_ok(2));
    done(
        &mut history,
        1,
        20,
        cas("lock", "free", "held-by-1"),
        30,
        swapped(3),
    );
    done(
        &mut history,
        2,
        40,
        cas("lock", "free", "held-by-2"),
        50,
        refused(3, Some(kv("lock", "held-by-1", 2, 3, 2))),
    );
    assert!(check(&history).is_ok());
}

#[test]
fn two_clients_both_acquiring_a_lock_is_a_violation() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("lock", "free"), 10, put_ok(2));
    done(
        &mut history,
        1,
        20,
        cas("lock", "free", "held-by-1"),
        30,
        swapped(3),
    );
    done(
        &mut history,
        2,
        40,
        cas("lock", "free", "held-by-2"),
        50,
        swapped(4),
    );
    assert_eq!(check(&history).violation_count(), 1);
}

#[test]
fn indeterminate_swap_explains_a_later_value() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(2));
    lost(&mut history, 1, 20, cas("a", "1", "2"));
    done(
        &mut history,
        2,
        100,
        get("a"),
        110,
        get_ok(3, Some(kv("a", "2", 2, 3, 2))),
    );
    assert!(check(&history).is_ok());
}

#[test]
fn delete_then_read_absent_and_recreate_resets_version() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(2));
    done(&mut history, 1, 20, delete("a"), 30, delete_ok(3, 1));
    done(&mut history, 1, 40, get("a"), 50, get_ok(3, None));
    done(&mut history, 1, 60, put("a", "2"), 70, put_ok(4));
    done(
        &mut history,
        1,
        80,
        get("a"),
        90,
        get_ok(4, Some(kv("a", "2", 4, 4, 1))),
    );
    assert!(check(&history).is_ok());
}

#[test]
fn wrong_version_is_a_violation() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(2));
    done(&mut history, 1, 20, put("a", "2"), 30, put_ok(3));
    done(
        &mut history,
        1,
        40,
        get("a"),
        50,
        get_ok(3, Some(kv("a", "2", 2, 3, 1))),
    );
    assert_eq!(check(&history).violation_count(), 1);
}

#[test]
fn resurrected_key_is_a_violation() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(2));
    done(&mut history, 1, 20, delete("a"), 30, delete_ok(3, 1));
    done(
        &mut history,
        2,
        40,
        get("a"),
        50,
        get_ok(3, Some(kv("a", "1", 2, 2, 1))),
    );
    assert_eq!(check(&history).violation_count(), 1);
}

#[test]
fn stale_prefix_range_is_a_violation_on_the_stale_key() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("k/a", "1"), 10, put_ok(2));
    done(&mut history, 1, 20, put("k/b", "1"), 30, put_ok(3));
    // Misses k/b although it was written before the range began.
    done(
        &mut history,
        2,
        40,
        range("k/"),
        50,
        range_ok(3, vec![kv("k/a", "1", 2, 2, 1)]),
    );
    let report = check(&history);
    assert_eq!(report.violation_count(), 1, "{report}");
    assert_eq!(
        report.violations().next().expect("one").key,
        b"k/b".to_vec()
    );
}

#[test]
fn leased_key_may_vanish_but_unleased_may_not() {
    let mut history = History::new();
    done(
        &mut history,
        1,
        0,
        put_leased("session", "1", 7),
        10,
        put_ok(2),
    );
    done(
        &mut history,
        2,
        5_000,
        get("session"),
        5_010,
        get_ok(3, None),
    );
    assert!(check(&history).is_ok());

    let mut history = History::new();
    done(&mut history, 1, 0, put("session", "1"), 10, put_ok(2));
    done(
        &mut history,
        2,
        5_000,
        get("session"),
        5_010,
        get_ok(3, None),
    );
    assert_eq!(check(&history).violation_count(), 1);
}

#[test]
fn exhausted_budget_is_unknown_never_ok() {
    // Many concurrent writes and a read that fits none of them: the search
    // must explore many orders; with a tiny budget it must give up.
    let mut history = History::new();
    for client in 0..12 {
        let value = format!("v{client}");
        let id = history.invoke(ClientId(client), put("a", &value), ms(0));
        history.indeterminate(id, "timeout");
    }
    done(
        &mut history,
        99,
        10,
        get("a"),
        20,
        get_ok(50, Some(kv("a", "nobody-wrote-this", 2, 2, 1))),
    );
    let report = check_linearizability(
        &history,
        None,
        &LinearizabilityConfig {
            steps_per_partition_max: 50,
            ..LinearizabilityConfig::default()
        },
    );
    assert_eq!(report.unknown_count(), 1, "{report}");
    assert!(!report.is_ok());
    // With enough budget the verdict is a definite violation.
    assert_eq!(check(&history).violation_count(), 1);
}

#[test]
fn partitions_are_independent_and_in_key_order() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("b", "1"), 10, put_ok(2));
    done(&mut history, 1, 20, put("a", "1"), 30, put_ok(3));
    done(&mut history, 2, 40, get("a"), 50, get_ok(3, None));
    let report = check(&history);
    let keys: Vec<&[u8]> = report
        .partitions
        .iter()
        .map(|partition| partition.key.as_slice())
        .collect();
    assert_eq!(keys, vec![b"a".as_slice(), b"b".as_slice()]);
    assert_eq!(report.violation_count(), 1);
    assert_eq!(report.linearizable_count(), 1);
}

// ---------------------------------------------------------------------------
// Property tests: histories produced by a correct store are linearizable,
// and a read result no write could have produced is never called ok.

/// A naive etcd store: a global revision and a map of key-values, logging
/// every revision's events as the committed log would.
struct NaiveStore {
    revision: Revision,
    kvs: BTreeMap<Vec<u8>, KeyValue>,
    log: EventLog,
    now: SimTime,
}

impl NaiveStore {
    fn new() -> NaiveStore {
        NaiveStore {
            revision: 1,
            kvs: BTreeMap::new(),
            log: EventLog::new(1),
            now: SimTime::ZERO,
        }
    }

    fn commit(&mut self, event: Event) {
        self.log
            .record(NodeId(1), self.revision, vec![event], self.now)
            .expect("one writer");
    }

    fn put(&mut self, key: &[u8], value: &[u8], lease: LeaseId) -> Revision {
        self.revision += 1;
        let revision = self.revision;
        let kv = match self.kvs.get(key) {
            Some(old) => KeyValue {
                mod_revision: revision,
                version: old.version + 1,
                value: value.to_vec(),
                lease,
                ..old.clone()
            },
            None => KeyValue {
                key: key.to_vec(),
                create_revision: revision,
                mod_revision: revision,
                version: 1,
                value: value.to_vec(),
                lease,
            },
        };
        self.kvs.insert(key.to_vec(), kv.clone());
        self.commit(put_event(kv));
        revision
    }

    fn apply(&mut self, operation: &Operation) -> OperationResult {
        match operation {
            Operation::Put { key, value, lease } => OperationResult::Put {
                revision: self.put(key, value, *lease),
            },
            Operation::Get { key, .. } => OperationResult::Get {
                revision: self.revision,
                kv: self.kvs.get(key).cloned(),
            },
            Operation::Delete { key } => {
                if self.kvs.remove(key).is_some() {
                    self.revision += 1;
                    let key = String::from_utf8_lossy(key).into_owned();
                    self.commit(delete_event(&key, self.revision));
                    OperationResult::Delete {
                        revision: self.revision,
                        deleted: 1,
                    }
                } else {
                    OperationResult::Delete {
                        revision: self.revision,
                        deleted: 0,
                    }
                }
            }
            Operation::CompareAndSwap {
                key,
                comparison,
                value,
                lease,
            } => {
                let current = self.kvs.get(key).cloned();
                let holds = match comparison {
                    Comparison::ValueEquals(expected) => {
                        current.as_ref().is_some_and(|kv| &kv.value == expected)
                    }
                    Comparison::VersionEquals(version) => {
                        current.as_ref().map_or(0, |kv| kv.version) == *version
                    }
                    Comparison::ModRevisionEquals(revision) => {
                        current.as_ref().map_or(0, |kv| kv.mod_revision) == *revision
                    }
                    Comparison::Absent => current.is_none(),
                };
                if holds {
                    let revision = self.put(key, value, *lease);
                    OperationResult::CompareAndSwap {
                        revision,
                        outcome: SwapOutcome::Swapped,
                    }
                } else {
                    OperationResult::CompareAndSwap {
                        revision: self.revision,
                        outcome: SwapOutcome::Refused { current },
                    }
                }
            }
            Operation::RangePrefix { prefix, .. } => OperationResult::RangePrefix {
                revision: self.revision,
                kvs: self
                    .kvs
                    .range(prefix.clone()..)
                    .take_while(|(key, _)| key.starts_with(prefix))
                    .map(|(_, kv)| kv.clone())
                    .collect(),
            },
            other => panic!("the naive store does not model {other:?}"),
        }
    }
}

/// One drawn operation: kind, key, comparison selector, timing slack and
/// whether its outcome is lost.
type Draw = (u8, u8, u8, u16, u16, bool);

fn draw_operation(kind: u8, key: u8, selector: u8, sequence: usize) -> Operation {
    let key = format!("k/{key}");
    let value = format!("v{sequence}");
    match kind % 6 {
        0 => put(&key, &value),
        // Leased keys may vanish in the model; here the lease never expires.
        1 => put_leased(&key, &value, 5),
        2 => get(&key),
        3 => delete(&key),
        4 => Operation::CompareAndSwap {
            key: key.into(),
            comparison: match selector % 4 {
                0 => Comparison::ValueEquals(
                    format!("v{}", sequence.saturating_sub(usize::from(selector % 5))).into(),
                ),
                1 => Comparison::VersionEquals(i64::from(selector % 3)),
                2 => Comparison::Absent,
                _ => Comparison::ModRevisionEquals(i64::try_from(sequence).unwrap_or(0)),
            },
            value: value.into(),
            lease: if selector.is_multiple_of(2) { 0 } else { 5 },
        },
        _ => Operation::RangePrefix {
            prefix: b"k/".to_vec(),
            consistency: Consistency::Linearizable,
        },
    }
}

/// Executes drawn operations one by one at linearization points 1000 ms
/// apart (in the drawn order), and gives each a window around its point.
fn correct_history(draws: &[Draw]) -> (History, EventLog) {
    let mut store = NaiveStore::new();
    let mut records = Vec::new();
    for (sequence, (kind, key, selector, before, after, lost)) in draws.iter().enumerate() {
        let operation = draw_operation(*kind, *key, *selector, sequence);
        let point = 10_000 + 1_000 * u64::try_from(sequence).expect("small");
        store.now = ms(point);
        let result = store.apply(&operation);
        let invoked = point - u64::from(*before % 3_000);
        let completed = point + u64::from(*after % 3_000);
        records.push((invoked, operation, completed, result, *lost));
    }
    // Record in invocation order, as a real run would.
    records.sort_by_key(|(invoked, ..)| *invoked);
    let mut history = History::new();
    for (client, (invoked, operation, completed, result, lost)) in records.into_iter().enumerate() {
        let id = history.invoke(ClientId(client as u64), operation, ms(invoked));
        if lost {
            history.indeterminate(id, "timeout");
        } else {
            history.complete(id, ms(completed), result);
        }
    }
    (history, store.log)
}

fn draws() -> impl Strategy<Value = Vec<Draw>> {
    proptest::collection::vec(
        (
            any::<u8>(),
            0u8..3,
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
            proptest::bool::weighted(0.15),
        ),
        1..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        max_global_rejects: 100_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn histories_of_a_correct_store_are_linearizable(draws in draws()) {
        let (history, log) = correct_history(&draws);
        let report = check(&history);
        prop_assert!(report.is_ok(), "{report}\n{history:#?}");
        // The committed log narrows indeterminate writes without changing the verdict.
        let report = check_linearizability(&history, Some(&log), &LinearizabilityConfig::default());
        prop_assert!(report.is_ok(), "with log: {report}\n{history:#?}");
    }

    #[test]
    fn a_read_of_a_value_nobody_wrote_is_never_ok(draws in draws(), pick in any::<usize>()) {
        let (mut history, log) = correct_history(&draws);
        // Find completed reads that returned a present key and corrupt one.
        let candidates: Vec<usize> = history
            .records()
            .iter()
            .enumerate()
            .filter(|(_, record)| matches!(
                record.result(),
                Some(OperationResult::Get { kv: Some(_), .. })
            ))
            .map(|(index, _)| index)
            .collect();
        prop_assume!(!candidates.is_empty());
        let target = candidates[pick % candidates.len()];
        let mut mutated = History::new();
        for (index, record) in history.records().iter().enumerate() {
            let id = mutated.invoke(record.client, record.operation.clone(), record.invoked_at);
            match (&record.outcome, record.result()) {
                (cairn_sim::history::Outcome::Completed { at, .. }, Some(result)) => {
                    let result = match result {
                        OperationResult::Get { revision, kv: Some(kv) } if index == target => {
                            OperationResult::Get {
                                revision: *revision,
                                kv: Some(KeyValue { value: b"phantom".to_vec(), ..kv.clone() }),
                            }
                        }
                        other => other.clone(),
                    };
                    mutated.complete(id, *at, result);
                }
                _ => mutated.indeterminate(id, "timeout"),
            }
        }
        history = mutated;
        let report = check(&history);
        prop_assert!(!report.is_ok(), "{report}");
        prop_assert!(report.violation_count() + report.unknown_count() >= 1);
        let report = check_linearizability(&history, Some(&log), &LinearizabilityConfig::default());
        prop_assert!(!report.is_ok(), "with log: {report}");
    }
}

#[test]
fn the_committed_log_pins_an_indeterminate_write() {
    // The put timed out, but the log shows it applied at 50 ms; a read that
    // starts at 100 ms and sees nothing is stale. Without the log the put
    // could still land later, so the read is fine.
    let mut history = History::new();
    lost(&mut history, 1, 0, put("a", "1"));
    done(&mut history, 2, 100, get("a"), 110, get_ok(2, None));
    assert!(check(&history).is_ok());
    let mut log = EventLog::new(1);
    log.record(NodeId(1), 2, vec![put_event(kv("a", "1", 2, 2, 1))], ms(50))
        .expect("record");
    let report = check_linearizability(&history, Some(&log), &LinearizabilityConfig::default());
    assert_eq!(report.violation_count(), 1, "{report}");
    assert_eq!(report.indeterminate_resolved_by_log, 1);
}

#[test]
fn the_committed_log_drops_writes_that_never_happened() {
    // A complete log without the timed-out put or delete: both had no
    // effect, so the history is linearizable and both are resolved.
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(2));
    lost(&mut history, 2, 20, put("a", "2"));
    lost(&mut history, 3, 30, delete("a"));
    done(
        &mut history,
        1,
        40,
        get("a"),
        50,
        get_ok(2, Some(kv("a", "1", 2, 2, 1))),
    );
    let mut log = EventLog::new(1);
    log.record(NodeId(1), 2, vec![put_event(kv("a", "1", 2, 2, 1))], ms(5))
        .expect("record");
    let report = check_linearizability(&history, Some(&log), &LinearizabilityConfig::default());
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.indeterminate_resolved_by_log, 2);
}

#[test]
fn many_timed_out_writes_do_not_explode_the_search() {
    // Twenty timed-out deletes and twenty timed-out puts of values nobody
    // reads, then an impossible read. Interchangeable timeouts are searched
    // once, not in all 2^40 subsets, so a modest budget gives a definite
    // verdict rather than "unknown".
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(2));
    for client in 0..20 {
        lost(&mut history, 10 + client, 20, delete("a"));
        lost(
            &mut history,
            50 + client,
            20,
            put("a", &format!("unread-{client}")),
        );
    }
    done(
        &mut history,
        2,
        100,
        get("a"),
        110,
        get_ok(9, Some(kv("a", "phantom", 2, 9, 3))),
    );
    let config = LinearizabilityConfig {
        steps_per_partition_max: 100_000,
        ..LinearizabilityConfig::default()
    };
    let report = check_linearizability(&history, None, &config);
    assert_eq!(report.violation_count(), 1, "{report}");
    // And the same timeouts with a read that one of them explains are fine.
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(2));
    for client in 0..20 {
        lost(&mut history, 10 + client, 20, delete("a"));
        lost(
            &mut history,
            50 + client,
            20,
            put("a", &format!("unread-{client}")),
        );
    }
    done(&mut history, 2, 100, get("a"), 110, get_ok(9, None));
    assert!(check_linearizability(&history, None, &config).is_ok());
}
