//! Guards the watch checker: a stream must be ordered, gap-free,
//! duplicate-free and atomic per revision, carry correct prev_kv, and be
//! cancelled with the compact revision when it starts below a compaction.

mod common;

use cairn_core::kv::{Event, WatchCreateRequest, WatchResponse};
use cairn_core::raft::NodeId;
use cairn_sim::checker::watch::{check_watches, Compaction, WatchSession, WatchViolation};
use cairn_sim::event_log::EventLog;
use cairn_sim::history::ClientId;
use common::*;

/// Revisions 2..=5: put a, put b, (put a + delete b atomically), put c.
fn log() -> EventLog {
    let mut log = EventLog::new(1);
    let revisions = vec![
        (2, vec![put_event(kv("k/a", "1", 2, 2, 1))]),
        (3, vec![put_event(kv("k/b", "1", 3, 3, 1))]),
        (
            4,
            vec![put_event(kv("k/a", "2", 2, 4, 2)), delete_event("k/b", 4)],
        ),
        (5, vec![put_event(kv("k/c", "1", 5, 5, 1))]),
    ];
    for (revision, events) in revisions {
        log.record(NodeId(1), revision, events, ms(revision as u64))
            .expect("record");
    }
    log
}

fn prefix_request(start_revision: i64, prev_kv: bool) -> WatchCreateRequest {
    WatchCreateRequest {
        key: b"k/".to_vec(),
        range_end: b"k0".to_vec(),
        start_revision,
        prev_kv,
        ..WatchCreateRequest::default()
    }
}

fn created(header_revision: i64) -> WatchResponse {
    WatchResponse {
        header_revision,
        created: true,
        ..WatchResponse::default()
    }
}

fn events(header_revision: i64, events: Vec<Event>) -> WatchResponse {
    WatchResponse {
        header_revision,
        events,
        ..WatchResponse::default()
    }
}

fn session(request: WatchCreateRequest, responses: Vec<WatchResponse>) -> WatchSession {
    WatchSession {
        id: 1,
        client: ClientId(1),
        request,
        created_at: ms(100),
        responses: responses
            .into_iter()
            .map(|response| (ms(100), response))
            .collect(),
    }
}

fn correct_events() -> Vec<Vec<Event>> {
    vec![
        vec![put_event(kv("k/a", "1", 2, 2, 1))],
        vec![put_event(kv("k/b", "1", 3, 3, 1))],
        vec![put_event(kv("k/a", "2", 2, 4, 2)), delete_event("k/b", 4)],
        vec![put_event(kv("k/c", "1", 5, 5, 1))],
    ]
}

#[test]
fn a_correct_stream_passes() {
    let mut responses = vec![created(5)];
    responses.extend(correct_events().into_iter().map(|batch| events(5, batch)));
    let report = check_watches(&log(), &[], &[session(prefix_request(2, false), responses)]);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.events_verified, 5);
}

#[test]
fn out_of_order_events_are_a_violation() {
    let mut batches = correct_events();
    batches.swap(0, 1);
    let mut responses = vec![created(5)];
    responses.extend(batches.into_iter().map(|batch| events(5, batch)));
    let report = check_watches(&log(), &[], &[session(prefix_request(2, false), responses)]);
    assert!(
        report
            .violations
            .iter()
            .any(|violation| matches!(violation, WatchViolation::OutOfOrder { .. })),
        "{report}"
    );
}

#[test]
fn a_gap_is_a_violation() {
    let mut batches = correct_events();
    batches.remove(1);
    let mut responses = vec![created(5)];
    responses.extend(batches.into_iter().map(|batch| events(5, batch)));
    let report = check_watches(&log(), &[], &[session(prefix_request(2, false), responses)]);
    assert!(
        matches!(
            report.violations.as_slice(),
            [WatchViolation::Gap { revision: 3, .. }]
        ),
        "{report}"
    );
}

#[test]
fn a_gap_before_a_progress_notification_is_a_violation() {
    // Only revision 2 delivered, then a progress notification at 5 claims
    // everything up to 5 was sent.
    let responses = vec![
        created(1),
        events(2, correct_events().remove(0)),
        events(5, vec![]),
    ];
    let report = check_watches(&log(), &[], &[session(prefix_request(0, false), responses)]);
    let gaps: Vec<i64> = report
        .violations
        .iter()
        .filter_map(|violation| match violation {
            WatchViolation::Gap { revision, .. } => Some(*revision),
            _ => None,
        })
        .collect();
    assert_eq!(gaps, vec![3, 4, 5], "{report}");
}

#[test]
fn a_duplicate_revision_is_a_violation() {
    let mut batches = correct_events();
    batches.insert(1, batches[0].clone());
    let mut responses = vec![created(5)];
    responses.extend(batches.into_iter().map(|batch| events(5, batch)));
    let report = check_watches(&log(), &[], &[session(prefix_request(2, false), responses)]);
    assert!(!report.violations.is_empty(), "{report}");
}

#[test]
fn a_revision_split_across_responses_is_a_violation() {
    let mut batches = correct_events();
    let atomic = batches.remove(2);
    batches.insert(2, vec![atomic[0].clone()]);
    batches.insert(3, vec![atomic[1].clone()]);
    let mut responses = vec![created(5)];
    responses.extend(batches.into_iter().map(|batch| events(5, batch)));
    let report = check_watches(&log(), &[], &[session(prefix_request(2, false), responses)]);
    assert!(
        report.violations.iter().any(|violation| matches!(
            violation,
            WatchViolation::SplitRevision { revision: 4, .. }
        )),
        "{report}"
    );
}

#[test]
fn a_revision_split_into_fragments_is_fine() {
    let mut batches = correct_events();
    let atomic = batches.remove(2);
    let mut responses = vec![created(5)];
    for batch in &batches[..2] {
        responses.push(events(5, batch.clone()));
    }
    responses.push(WatchResponse {
        fragment: true,
        ..events(5, vec![atomic[0].clone()])
    });
    responses.push(events(5, vec![atomic[1].clone()]));
    responses.push(events(5, batches[2].clone()));
    let report = check_watches(&log(), &[], &[session(prefix_request(2, false), responses)]);
    assert!(report.is_ok(), "{report}");
}

#[test]
fn a_missing_event_within_a_revision_is_a_violation() {
    let mut batches = correct_events();
    batches[2].pop();
    let mut responses = vec![created(5)];
    responses.extend(batches.into_iter().map(|batch| events(5, batch)));
    let report = check_watches(&log(), &[], &[session(prefix_request(2, false), responses)]);
    assert!(
        matches!(
            report.violations.as_slice(),
            [WatchViolation::WrongEvents { revision: 4, .. }]
        ),
        "{report}"
    );
}

#[test]
fn prev_kv_must_be_the_committed_previous_state() {
    let mut batches = correct_events();
    batches[2][0].prev_kv = Some(kv("k/a", "1", 2, 2, 1));
    batches[2][1].prev_kv = Some(kv("k/b", "1", 3, 3, 1));
    let mut responses = vec![created(5)];
    responses.extend(batches.iter().cloned().map(|batch| events(5, batch)));
    // The first two events create their keys: no previous value.
    let report = check_watches(
        &log(),
        &[],
        &[session(prefix_request(2, true), responses.clone())],
    );
    assert!(report.is_ok(), "{report}");
    // Wrong previous value.
    let mut wrong = batches.clone();
    wrong[2][0].prev_kv = Some(kv("k/a", "9", 2, 2, 1));
    let mut responses = vec![created(5)];
    responses.extend(wrong.into_iter().map(|batch| events(5, batch)));
    let report = check_watches(&log(), &[], &[session(prefix_request(2, true), responses)]);
    assert!(
        matches!(
            report.violations.as_slice(),
            [WatchViolation::WrongPreviousKeyValue { revision: 4, .. }]
        ),
        "{report}"
    );
    // prev_kv not asked for, but sent.
    let mut responses = vec![created(5)];
    responses.extend(batches.into_iter().map(|batch| events(5, batch)));
    let report = check_watches(&log(), &[], &[session(prefix_request(2, false), responses)]);
    assert_eq!(report.violations.len(), 2, "{report}");
}

#[test]
fn filters_and_single_key_watches_select_events() {
    let request = WatchCreateRequest {
        key: b"k/a".to_vec(),
        start_revision: 2,
        ..WatchCreateRequest::default()
    };
    let responses = vec![
        created(5),
        events(5, vec![put_event(kv("k/a", "1", 2, 2, 1))]),
        events(5, vec![put_event(kv("k/a", "2", 2, 4, 2))]),
    ];
    let report = check_watches(&log(), &[], &[session(request, responses)]);
    assert!(report.is_ok(), "{report}");
}

#[test]
fn a_watch_below_a_compaction_must_be_cancelled_with_the_compact_revision() {
    let compactions = [Compaction {
        revision: 4,
        acknowledged_at: Some(ms(50)),
        acknowledged_revision: Some(4),
    }];
    // Correct: cancelled with compact revision 4.
    let cancelled = WatchResponse {
        canceled: true,
        compact_revision: 4,
        header_revision: 5,
        ..WatchResponse::default()
    };
    let report = check_watches(
        &log(),
        &compactions,
        &[session(
            prefix_request(2, false),
            vec![created(5), cancelled.clone()],
        )],
    );
    assert!(report.is_ok(), "{report}");
    // Wrong: served compacted revisions instead.
    let mut responses = vec![created(5)];
    responses.extend(correct_events().into_iter().map(|batch| events(5, batch)));
    let report = check_watches(
        &log(),
        &compactions,
        &[session(prefix_request(2, false), responses)],
    );
    assert!(
        report
            .violations
            .iter()
            .any(|violation| matches!(violation, WatchViolation::Compaction { .. })),
        "{report}"
    );
    // Wrong: cancelled with a compact revision nobody requested.
    let bogus = WatchResponse {
        compact_revision: 3,
        ..cancelled.clone()
    };
    let report = check_watches(
        &log(),
        &compactions,
        &[session(prefix_request(2, false), vec![created(5), bogus])],
    );
    assert!(!report.violations.is_empty(), "{report}");
    // Wrong: anything after cancellation.
    let mut responses = vec![created(5), cancelled];
    responses.push(events(5, correct_events().remove(3)));
    let report = check_watches(
        &log(),
        &compactions,
        &[session(prefix_request(2, false), responses)],
    );
    assert!(
        report
            .violations
            .iter()
            .any(|violation| matches!(violation, WatchViolation::AfterCancel { .. })),
        "{report}"
    );
}

#[test]
fn a_member_that_has_not_applied_a_compaction_may_serve_below_it() {
    // Acknowledged at revision 5 (by a member ahead); the watch is created
    // on a member still at revision 5 or below, which has not applied the
    // compaction yet, as an etcd follower that lags may also do.
    let compactions = [Compaction {
        revision: 4,
        acknowledged_at: Some(ms(50)),
        acknowledged_revision: Some(5),
    }];
    let mut responses = vec![created(5)];
    responses.extend(correct_events().into_iter().map(|batch| events(5, batch)));
    let report = check_watches(
        &log(),
        &compactions,
        &[session(prefix_request(2, false), responses)],
    );
    assert!(
        !report
            .violations
            .iter()
            .any(|violation| matches!(violation, WatchViolation::Compaction { .. })),
        "{report}"
    );
}

#[test]
fn a_watch_resumed_from_a_retained_revision_continues_without_gaps() {
    let compactions = [Compaction {
        revision: 3,
        acknowledged_at: Some(ms(50)),
        acknowledged_revision: Some(4),
    }];
    let mut responses = vec![created(5)];
    responses.extend(
        correct_events()
            .into_iter()
            .skip(1)
            .map(|batch| events(5, batch)),
    );
    let report = check_watches(
        &log(),
        &compactions,
        &[session(prefix_request(3, false), responses)],
    );
    assert!(report.is_ok(), "{report}");
}

#[test]
fn events_beyond_the_log_are_unverifiable_not_ok() {
    let responses = vec![
        created(5),
        events(9, vec![put_event(kv("k/z", "1", 9, 9, 1))]),
    ];
    let report = check_watches(&log(), &[], &[session(prefix_request(9, false), responses)]);
    assert!(!report.is_ok());
    assert_eq!(report.sessions_unverifiable, 1);
}

#[test]
fn a_session_tells_where_to_resume() {
    let mut watch = WatchSession::new(3, ClientId(2), prefix_request(0, false), ms(10));
    assert_eq!(watch.resume_revision(), None);
    watch.receive(ms(11), created(3));
    assert_eq!(watch.resume_revision(), Some(4));
    watch.receive(ms(12), events(5, correct_events().remove(3)));
    assert_eq!(watch.resume_revision(), Some(6));
}
