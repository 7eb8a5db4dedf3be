//! Guards the durability checker: an acknowledged write must survive crashes
//! (present at its revision, or superseded), and a write that vanished or
//! was replaced by older state is reported.

mod common;

use std::collections::BTreeMap;

use cairn_core::raft::NodeId;
use cairn_sim::checker::durability::{check_durability, FinalState};
use cairn_sim::event_log::EventLog;
use cairn_sim::history::History;
use common::*;

fn final_state(revision: i64, kvs: Vec<cairn_core::kv::KeyValue>) -> FinalState {
    FinalState {
        revision,
        kvs: kvs
            .into_iter()
            .map(|kv| (kv.key.clone(), kv))
            .collect::<BTreeMap<_, _>>(),
    }
}

#[test]
fn present_and_superseded_writes_survive() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(2));
    done(&mut history, 1, 20, put("a", "2"), 30, put_ok(3));
    done(&mut history, 1, 40, put("b", "1"), 50, put_ok(4));
    let report = check_durability(
        &history,
        None,
        &final_state(4, vec![kv("a", "2", 2, 3, 2), kv("b", "1", 4, 4, 1)]),
    );
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.writes_checked, 3);
}

#[test]
fn a_vanished_write_is_lost() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(2));
    let report = check_durability(&history, None, &final_state(2, vec![]));
    assert_eq!(report.violations.len(), 1, "{report}");
}

#[test]
fn a_vanished_write_is_fine_when_a_delete_may_have_removed_it() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(2));
    lost(&mut history, 2, 20, delete("a"));
    assert!(check_durability(&history, None, &final_state(3, vec![])).is_ok());
}

#[test]
fn older_state_surviving_is_a_lost_write() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(2));
    done(&mut history, 1, 20, put("a", "2"), 30, put_ok(3));
    let report = check_durability(&history, None, &final_state(3, vec![kv("a", "1", 2, 2, 1)]));
    assert_eq!(report.violations.len(), 1, "{report}");
}

#[test]
fn an_acknowledged_revision_beyond_the_final_one_is_lost() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(7));
    let report = check_durability(&history, None, &final_state(5, vec![kv("a", "1", 2, 2, 1)]));
    assert_eq!(report.violations.len(), 1, "{report}");
}

#[test]
fn the_event_log_must_hold_the_write_at_its_revision() {
    let mut log = EventLog::new(1);
    log.record(
        NodeId(1),
        2,
        vec![put_event(kv("a", "other", 2, 2, 1))],
        ms(0),
    )
    .expect("record");
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(2));
    let report = check_durability(
        &history,
        Some(&log),
        &final_state(2, vec![kv("a", "other", 2, 2, 1)]),
    );
    assert_eq!(report.violations.len(), 1, "{report}");
}

#[test]
fn a_resurrected_deleted_key_is_a_lost_delete() {
    let mut history = History::new();
    done(&mut history, 1, 0, put("a", "1"), 10, put_ok(2));
    done(&mut history, 1, 20, delete("a"), 30, delete_ok(3, 1));
    let report = check_durability(&history, None, &final_state(3, vec![kv("a", "1", 2, 2, 1)]));
    assert_eq!(report.violations.len(), 1, "{report}");
}
