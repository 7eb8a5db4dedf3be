//! Guards leader election as etcdctl implements it (a client-side recipe
//! over Txn, leases and watches): the first candidate wins and is printed
//! by an observer (`elect -l`), a second candidate waits while the leader
//! holds office, and takes over once the leader's lease is revoked.

use std::thread;
use std::time::Duration;

use cairn_tests::{wait_until, BackgroundCommand, Cluster};

/// Bound on an election outcome becoming visible.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the test watches the second candidate to make sure it stays
/// blocked while the first leads (an observation window, see lock.rs).
const BLOCKED_OBSERVATION: Duration = Duration::from_millis(700);

/// Waits for a candidate's two lines (leader key, proposal) and returns the
/// leader key.
fn wait_elected(candidate: &mut BackgroundCommand, election: &str, proposal: &str) -> String {
    let lines = candidate.wait_for_output(
        &format!("candidate {proposal} is elected"),
        ELECTION_TIMEOUT,
        |lines| lines.len() >= 2,
    );
    assert!(
        lines[0].starts_with(&format!("{election}/")),
        "leader key line: {lines:?}"
    );
    assert_eq!(lines[1], proposal, "proposal line: {lines:?}");
    lines[0].clone()
}

#[test]
fn second_candidate_takes_over_when_the_leader_steps_down() {
    let cluster = Cluster::start(3);
    let election = "e2e-election";
    let mut observer = cluster.etcdctl_for(1).spawn(&["elect", "-l", election]);
    let mut alpha = cluster.etcdctl_for(0).spawn(&["elect", election, "alpha"]);
    let alpha_key = wait_elected(&mut alpha, election, "alpha");
    observer.wait_for_lines(0, &[&alpha_key, "alpha"], ELECTION_TIMEOUT);

    let mut beta = cluster.etcdctl_for(2).spawn(&["elect", election, "beta"]);
    let etcdctl = cluster.etcdctl_for(1);
    wait_until("the second candidate is queued", ELECTION_TIMEOUT, || {
        let candidates = etcdctl
            .get(&[&format!("{election}/"), "--prefix"])
            .kvs
            .len();
        (candidates == 2).then_some(())
    });
    thread::sleep(BLOCKED_OBSERVATION);
    assert!(
        beta.lines().is_empty(),
        "beta won while alpha leads:\n{}",
        beta.report()
    );

    // The leader key is <election>/<lease id in hex>; revoking the lease
    // deletes the key, which is how a leader's session ends.
    let alpha_lease = alpha_key
        .trim_start_matches(&format!("{election}/"))
        .to_owned();
    etcdctl
        .run(&["lease", "revoke", &alpha_lease])
        .expect_success();
    let beta_key = wait_elected(&mut beta, election, "beta");
    assert_ne!(beta_key, alpha_key);
    observer.wait_for_lines(2, &[&beta_key, "beta"], ELECTION_TIMEOUT);
    let lines = observer.lines().to_vec();
    assert!(
        !lines.iter().skip(2).any(|line| line == "alpha"),
        "the observer reported alpha again: {lines:?}"
    );
}
