//! Guards the revision checker: etcd's header revisions must be unique per
//! write, respect real-time order, agree across observers, and every read
//! (serializable included) must equal the committed state at its revision —
//! the check that catches a prefix range torn across two revisions.

mod common;

use cairn_core::raft::NodeId;
use cairn_sim::checker::revision::{check_revisions, RevisionViolation};
use cairn_sim::event_log::EventLog;
use cairn_sim::history::History;
use common::*;

fn log_of(revisions: Vec<(i64, Vec<cairn_core::kv::Event>)>) -> EventLog {
    let mut log = EventLog::new(1);
    for (revision, events) in revisions {
        log.record(NodeId(1), revision, events, ms(0))
            .expect("no conflict");
    }
    log
}

#[test]
fn a_correct_history_passes() {
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
    done(&mut history, 1, 40, put("b", "1"), 50, put_ok(3));
    done(
        &mut history,
        2,
        60,
        range(""),
        70,
        range_ok(3, vec![kv("a", "1", 2, 2, 1), kv("b", "1", 3, 3, 1)]),
    );
    let log = log_of(vec![
        (2, vec![put_event(kv("a", "1", 2, 2, 1))]),
        (3, vec![put_event(kv("b", "1", 3, 3, 1))]),
    ]);
    let report = check_revisions(&history, Some(&log));
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.reads_verified, 2);
}

#[test]
fn two_writes_with_one_revision_are_a_violation() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(2));
    done(&mut history, 2, 0, put("b", "1"), 10, put_ok(2));
    let report = check_revisions(&history, None);
    assert!(
        matches!(
            report.violations.as_slice(),
            [RevisionViolation::DuplicateRevision { revision: 2, .. }]
        ),
        "{report}"
    );
}

#[test]
fn a_write_after_a_completed_write_must_get_a_newer_revision() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(5));
    done(&mut history, 2, 20, put("b", "1"), 30, put_ok(4));
    let report = check_revisions(&history, None);
    assert!(
        matches!(
            report.violations.as_slice(),
            [RevisionViolation::RealTimeOrder {
                earlier_revision: 5,
                later_revision: 4,
                ..
            }]
        ),
        "{report}"
    );
}

#[test]
fn a_linearizable_read_must_not_observe_an_older_revision_but_serializable_may() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(5));
    done(
        &mut history,
        2,
        20,
        serializable_get("a"),
        30,
        get_ok(3, None),
    );
    assert!(check_revisions(&history, None).is_ok());
    done(&mut history, 2, 40, get("a"), 50, get_ok(4, None));
    assert_eq!(check_revisions(&history, None).violations.len(), 1);
}

#[test]
fn concurrent_operations_are_not_ordered() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 30, put_ok(5));
    done(&mut history, 2, 10, put("b", "1"), 20, put_ok(4));
    assert!(check_revisions(&history, None).is_ok());
}

#[test]
fn conflicting_values_at_one_mod_revision_are_a_violation() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(2));
    done(
        &mut history,
        2,
        20,
        get("a"),
        30,
        get_ok(2, Some(kv("a", "other", 2, 2, 1))),
    );
    let report = check_revisions(&history, None);
    assert!(
        matches!(
            report.violations.as_slice(),
            [RevisionViolation::ConflictingObservation {
                mod_revision: 2,
                ..
            }]
        ),
        "{report}"
    );
}

#[test]
fn a_key_modified_after_the_header_revision_is_malformed() {
    let mut history = History::new();
    done(
        &mut history,
        2,
        20,
        get("a"),
        30,
        get_ok(2, Some(kv("a", "1", 3, 3, 1))),
    );
    let report = check_revisions(&history, None);
    assert!(
        matches!(
            report.violations.as_slice(),
            [RevisionViolation::MalformedKeyValue { .. }]
        ),
        "{report}"
    );
}

#[test]
fn a_range_torn_across_revisions_is_caught_against_the_log() {
    // At revision 3 both keys are "1"; revision 4 changes both atomically.
    // A range claiming revision 4 but showing one old key is torn.
    let log = log_of(vec![
        (2, vec![put_event(kv("k/a", "1", 2, 2, 1))]),
        (3, vec![put_event(kv("k/b", "1", 3, 3, 1))]),
        (
            4,
            vec![
                put_event(kv("k/a", "2", 2, 4, 2)),
                put_event(kv("k/b", "2", 3, 4, 2)),
            ],
        ),
    ]);
    let mut history = History::new();
    done(
        &mut history,
        1,
        0,
        range("k/"),
        10,
        range_ok(4, vec![kv("k/a", "2", 2, 4, 2), kv("k/b", "1", 3, 3, 1)]),
    );
    let report = check_revisions(&history, Some(&log));
    assert!(
        matches!(
            report.violations.as_slice(),
            [RevisionViolation::StaleOrPhantomRead { revision: 4, .. }]
        ),
        "{report}"
    );
}

#[test]
fn a_stale_serializable_read_is_checked_at_its_own_revision() {
    let log = log_of(vec![
        (2, vec![put_event(kv("a", "1", 2, 2, 1))]),
        (3, vec![put_event(kv("a", "2", 2, 3, 2))]),
    ]);
    let mut history = History::new();
    // Stale but consistent: at revision 2 the value was "1".
    done(
        &mut history,
        1,
        100,
        serializable_get("a"),
        110,
        get_ok(2, Some(kv("a", "1", 2, 2, 1))),
    );
    assert!(check_revisions(&history, Some(&log)).is_ok());
    // Claims revision 3 but shows revision 2's value: wrong.
    done(
        &mut history,
        1,
        120,
        serializable_get("a"),
        130,
        get_ok(3, Some(kv("a", "1", 2, 2, 1))),
    );
    assert_eq!(check_revisions(&history, Some(&log)).violations.len(), 1);
}

#[test]
fn reads_beyond_the_log_are_counted_unverifiable() {
    let log = log_of(vec![(2, vec![put_event(kv("a", "1", 2, 2, 1))])]);
    let mut history = History::new();
    done(&mut history, 1, 0, get("a"), 10, get_ok(9, None));
    let report = check_revisions(&history, Some(&log));
    assert_eq!(report.reads_unverifiable, 1);
    assert_eq!(report.reads_verified, 0);
}

#[test]
fn members_disagreeing_on_a_revision_is_a_conflict() {
    let mut log = EventLog::new(1);
    log.record(NodeId(1), 2, vec![put_event(kv("a", "1", 2, 2, 1))], ms(0))
        .expect("first");
    log.record(NodeId(2), 2, vec![put_event(kv("a", "1", 2, 2, 1))], ms(5))
        .expect("same");
    let conflict = log.record(NodeId(3), 2, vec![put_event(kv("a", "X", 2, 2, 1))], ms(9));
    assert!(conflict.is_err());
    assert_eq!(log.contiguous_through(), 2);
}
