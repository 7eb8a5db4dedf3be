//! Guards the Raft invariant checker: two leaders in one term, log
//! mismatch at the same (index, term), divergent prefixes, a committed
//! entry changed or missing from a leader, index order, and state hashes
//! that differ at the same applied index must all be caught; a healthy
//! sequence of observations must pass.

use cairn_core::raft::{Entry, EntryKind, Index, NodeId, Role, Term};
use cairn_sim::checker::raft::{EntryDigest, NodeObservation, RaftChecker, RaftViolation};
use cairn_sim::time::SimTime;

fn digest(index: u64, term: u64, data: &str) -> EntryDigest {
    EntryDigest::of(&Entry {
        term: Term(term),
        index: Index(index),
        kind: EntryKind::Normal,
        data: data.as_bytes().to_vec(),
    })
}

fn node(id: u64, term: u64, role: Role, commit: u64, entries: Vec<EntryDigest>) -> NodeObservation {
    let last = entries.last().map_or(0, |entry| entry.index.0);
    NodeObservation {
        node: NodeId(id),
        incarnation: 0,
        term: Term(term),
        role,
        leader: None,
        commit: Index(commit),
        applied: Index(commit),
        last_index: Index(last),
        entries,
        state_hash: None,
    }
}

#[test]
fn a_healthy_cluster_passes() {
    let mut checker = RaftChecker::new();
    let log = vec![
        digest(1, 1, ""),
        digest(2, 1, "put a"),
        digest(3, 2, ""),
        digest(4, 2, "put b"),
    ];
    for step in 0..3u64 {
        for id in 1..=3 {
            let role = if id == 1 {
                Role::Leader
            } else {
                Role::Follower
            };
            let mut observation = node(id, 2, role, 2 + step.min(2), log.clone());
            observation.state_hash = Some(observation.applied.0 * 1000);
            checker
                .observe(SimTime(step), &observation)
                .expect("healthy");
        }
    }
    let summary = checker.summary();
    assert_eq!(summary.terms_with_leader, 1);
    assert_eq!(summary.committed_entries, 4);
}

#[test]
fn two_leaders_in_one_term_is_a_violation() {
    let mut checker = RaftChecker::new();
    checker
        .observe(SimTime(0), &node(1, 3, Role::Leader, 0, vec![]))
        .expect("first leader");
    let error = checker
        .observe(SimTime(1), &node(2, 3, Role::Leader, 0, vec![]))
        .expect_err("second leader");
    assert!(
        matches!(error, RaftViolation::TwoLeaders { term: Term(3), .. }),
        "{error}"
    );
    // A leader in another term is fine.
    checker
        .observe(SimTime(2), &node(2, 4, Role::Leader, 0, vec![]))
        .expect("new term");
}

#[test]
fn different_data_at_the_same_index_and_term_is_a_log_mismatch() {
    let mut checker = RaftChecker::new();
    checker
        .observe(
            SimTime(0),
            &node(1, 1, Role::Follower, 0, vec![digest(1, 1, "x")]),
        )
        .expect("first");
    let error = checker
        .observe(
            SimTime(1),
            &node(2, 1, Role::Follower, 0, vec![digest(1, 1, "y")]),
        )
        .expect_err("mismatch");
    assert!(
        matches!(
            error,
            RaftViolation::LogMismatch {
                index: Index(1),
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn same_entry_after_different_prefixes_is_a_log_mismatch() {
    let mut checker = RaftChecker::new();
    checker
        .observe(
            SimTime(0),
            &node(
                1,
                3,
                Role::Follower,
                0,
                vec![digest(1, 1, "a"), digest(2, 3, "c")],
            ),
        )
        .expect("first");
    let error = checker
        .observe(
            SimTime(1),
            &node(
                2,
                3,
                Role::Follower,
                0,
                vec![digest(1, 2, "b"), digest(2, 3, "c")],
            ),
        )
        .expect_err("prefix differs");
    assert!(
        matches!(
            error,
            RaftViolation::LogMismatch {
                index: Index(2),
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_committed_entry_changed_is_a_violation() {
    let mut checker = RaftChecker::new();
    checker
        .observe(
            SimTime(0),
            &node(1, 1, Role::Leader, 1, vec![digest(1, 1, "a")]),
        )
        .expect("commit");
    // Another member claims a different entry at index 1 is committed.
    let error = checker
        .observe(
            SimTime(1),
            &node(2, 2, Role::Follower, 1, vec![digest(1, 2, "z")]),
        )
        .expect_err("changed");
    assert!(
        matches!(
            error,
            RaftViolation::CommittedEntryChanged {
                index: Index(1),
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn an_uncommitted_divergent_entry_on_a_lagging_member_is_fine() {
    let mut checker = RaftChecker::new();
    checker
        .observe(
            SimTime(0),
            &node(1, 2, Role::Leader, 1, vec![digest(1, 2, "a")]),
        )
        .expect("commit");
    // An old leader still holds its own uncommitted entry at index 1.
    checker
        .observe(
            SimTime(1),
            &node(2, 1, Role::Follower, 0, vec![digest(1, 1, "old")]),
        )
        .expect("lagging");
}

#[test]
fn a_leader_missing_a_committed_entry_is_a_violation() {
    let mut checker = RaftChecker::new();
    checker
        .observe(
            SimTime(0),
            &node(
                1,
                1,
                Role::Leader,
                2,
                vec![digest(1, 1, "a"), digest(2, 1, "b")],
            ),
        )
        .expect("commit");
    let error = checker
        .observe(
            SimTime(1),
            &node(2, 2, Role::Leader, 1, vec![digest(1, 1, "a")]),
        )
        .expect_err("leader lacks index 2");
    assert!(
        matches!(
            error,
            RaftViolation::CommittedEntryChanged {
                index: Index(2),
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn applied_beyond_commit_and_regressions_are_violations() {
    let mut checker = RaftChecker::new();
    let mut observation = node(
        1,
        1,
        Role::Follower,
        1,
        vec![digest(1, 1, "a"), digest(2, 1, "b")],
    );
    observation.applied = Index(2);
    assert!(matches!(
        checker.observe(SimTime(0), &observation),
        Err(RaftViolation::IndexOrder { .. })
    ));

    let mut checker = RaftChecker::new();
    checker
        .observe(SimTime(0), &node(1, 5, Role::Follower, 0, vec![]))
        .expect("term 5");
    assert!(checker
        .observe(SimTime(1), &node(1, 4, Role::Follower, 0, vec![]))
        .is_err());
    // After a restart (new incarnation) volatile state may start over.
    let mut restarted = node(1, 5, Role::Follower, 0, vec![]);
    restarted.incarnation = 1;
    checker.observe(SimTime(2), &restarted).expect("restart");
}

#[test]
fn different_state_at_the_same_applied_index_is_a_violation() {
    let mut checker = RaftChecker::new();
    let mut first = node(1, 1, Role::Leader, 1, vec![digest(1, 1, "a")]);
    first.state_hash = Some(7);
    checker.observe(SimTime(0), &first).expect("first");
    let mut second = node(2, 1, Role::Follower, 1, vec![digest(1, 1, "a")]);
    second.state_hash = Some(8);
    let error = checker.observe(SimTime(1), &second).expect_err("diverged");
    assert!(
        matches!(
            error,
            RaftViolation::StateDiverged {
                applied: Index(1),
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_stale_leader_of_an_earlier_term_may_lack_later_commits() {
    let mut checker = RaftChecker::new();
    // The majority commits index 2 in term 2.
    checker
        .observe(
            SimTime(0),
            &node(
                1,
                2,
                Role::Leader,
                2,
                vec![digest(1, 1, "a"), digest(2, 2, "b")],
            ),
        )
        .expect("commit in term 2");
    // The old leader of term 1, cut off with a minority, still leads term 1
    // with its own uncommitted entry at index 2: no violation.
    checker
        .observe(
            SimTime(1),
            &node(
                2,
                1,
                Role::Leader,
                1,
                vec![digest(1, 1, "a"), digest(2, 1, "stale")],
            ),
        )
        .expect("a stale leader of term 1");
    // A leader of term 3 without index 2 breaks leader completeness.
    let error = checker
        .observe(
            SimTime(2),
            &node(3, 3, Role::Leader, 1, vec![digest(1, 1, "a")]),
        )
        .expect_err("leader of term 3 lacks index 2");
    assert!(
        matches!(
            error,
            RaftViolation::CommittedEntryChanged {
                index: Index(2),
                ..
            }
        ),
        "{error}"
    );
}
