//! Guards watch as etcdctl streams it: a live watch prints each event as it
//! happens (PUT / DELETE, key, value lines), a historical watch (`--rev`)
//! replays past events in order, `--prev-kv` prints the previous pair
//! before the new one, and a prefix watch sees every key under the prefix
//! and nothing else. Watches are opened on a follower while writes go to
//! another member, so events must cross the cluster.

use std::time::Duration;

use cairn_tests::Cluster;

/// Bound on an event reaching a watcher.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until the watcher's stream has been registered: etcdctl prints
/// nothing on creation, so a marker key is written until its event shows.
fn wait_until_watching(
    watcher: &mut cairn_tests::BackgroundCommand,
    etcdctl: &cairn_tests::Etcdctl,
    marker_key: &str,
) -> usize {
    // One put suffices once the watch exists; before that the event is
    // missed, so the put is repeated until one is seen.
    let mut attempt = 0;
    cairn_tests::wait_until("the watcher prints a marker event", EVENT_TIMEOUT, || {
        attempt += 1;
        etcdctl.put(marker_key, &format!("marker-{attempt}"));
        watcher
            .lines()
            .iter()
            .any(|line| line == marker_key)
            .then_some(())
    });
    // Earlier marker events may still be in flight; events are ordered, so
    // once a last, distinct marker arrives nothing older can follow it.
    etcdctl.put(marker_key, "watch-ready");
    watcher.wait_for_lines(0, &["PUT", marker_key, "watch-ready"], EVENT_TIMEOUT)
}

#[test]
fn live_watch_prints_puts_and_deletes_from_another_member() {
    let cluster = Cluster::start(3);
    let writer = cluster.etcdctl_for(0);
    let mut watcher = cluster
        .etcdctl_for(2)
        .spawn(&["watch", "live/", "--prefix"]);
    let start = wait_until_watching(&mut watcher, &writer, "live/marker");

    writer.put("live/a", "1");
    writer.put("outside", "ignored");
    writer.run(&["del", "live/a"]).expect_success();
    writer.put("live/b", "2");
    let end = watcher.wait_for_lines(
        start,
        &[
            "PUT", "live/a", "1", "DELETE", "live/a", "", "PUT", "live/b", "2",
        ],
        EVENT_TIMEOUT,
    );
    let lines = watcher.lines().to_vec();
    assert!(
        !lines.iter().any(|line| line == "outside"),
        "prefix watch leaked: {lines:?}"
    );
    assert_eq!(
        end,
        start + 9,
        "nothing between the marker and the events: {lines:?}"
    );
    assert!(
        watcher.is_running(),
        "a watch keeps running:\n{}",
        watcher.report()
    );
}

#[test]
fn live_watch_on_a_single_key() {
    let cluster = Cluster::start(1);
    let etcdctl = cluster.etcdctl();
    let mut watcher = etcdctl.spawn(&["watch", "solo"]);
    let start = wait_until_watching(&mut watcher, &etcdctl, "solo");
    etcdctl.put("solo-not-me", "x");
    etcdctl.put("solo", "final");
    let next = watcher.wait_for_lines(start, &["PUT", "solo", "final"], EVENT_TIMEOUT);
    let lines = watcher.lines().to_vec();
    assert!(
        !lines.iter().any(|line| line == "solo-not-me"),
        "a single-key watch saw another key: {lines:?}"
    );
    assert_eq!(
        next,
        start + 3,
        "no event between the marker and the put: {lines:?}"
    );
}

#[test]
fn historical_watch_replays_from_a_revision_with_prev_kv() {
    let cluster = Cluster::start(3);
    let writer = cluster.etcdctl_for(1);
    let first = writer.put("hist/k", "v1");
    writer.put("hist/k", "v2");
    writer.run(&["del", "hist/k"]).expect_success();
    writer.put("hist/other", "o1");

    // Replay everything under the prefix from the first put, on another member.
    let mut replay =
        cluster
            .etcdctl_for(0)
            .spawn(&["watch", "hist/", "--prefix", &format!("--rev={first}")]);
    replay.wait_for_lines(
        0,
        &[
            "PUT",
            "hist/k",
            "v1",
            "PUT",
            "hist/k",
            "v2",
            "DELETE",
            "hist/k",
            "",
            "PUT",
            "hist/other",
            "o1",
        ],
        EVENT_TIMEOUT,
    );
    let lines = replay.lines().to_vec();
    assert_eq!(lines.len(), 12, "exactly the four events: {lines:?}");

    // With --prev-kv the previous pair is printed before the new one.
    let mut with_previous = cluster.etcdctl_for(2).spawn(&[
        "watch",
        "hist/k",
        "--prev-kv",
        &format!("--rev={}", first + 1),
    ]);
    with_previous.wait_for_lines(
        0,
        &[
            "PUT", "hist/k", "v1", "hist/k", "v2", "DELETE", "hist/k", "v2", "hist/k", "",
        ],
        EVENT_TIMEOUT,
    );

    // A replay from a later revision starts exactly there.
    let mut partial =
        cluster
            .etcdctl_for(0)
            .spawn(&["watch", "hist/k", &format!("--rev={}", first + 2)]);
    let after_delete = partial.wait_for_lines(0, &["DELETE", "hist/k", ""], EVENT_TIMEOUT);
    assert_eq!(
        after_delete,
        3,
        "replay started at the delete: {:?}",
        partial.lines()
    );

    // The replaying watch stays live afterwards.
    writer.put("hist/k", "v3");
    partial.wait_for_lines(after_delete, &["PUT", "hist/k", "v3"], EVENT_TIMEOUT);
}
