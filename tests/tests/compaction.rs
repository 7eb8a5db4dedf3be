//! Guards compaction: `etcdctl compact REV` discards history before REV,
//! reads and watches below it fail with etcd's exact "required revision
//! has been compacted" error, the compact revision itself stays readable,
//! compacting twice or into the future is refused with etcd's errors, and
//! current data is untouched.

use std::time::Duration;

use cairn_tests::Cluster;

/// Bound on a watch on a compacted revision being cancelled.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(10);

const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const FUTURE: &str = "etcdserver: mvcc: required revision is a future revision";

#[test]
fn reads_below_the_compact_revision_fail() {
    let cluster = Cluster::start(3);
    let etcdctl = cluster.etcdctl_for(0);
    let first = etcdctl.put("history", "v1");
    let second = etcdctl.put("history", "v2");
    let third = etcdctl.put("history", "v3");

    let output = etcdctl
        .run(&["compact", &second.to_string()])
        .expect_success();
    assert_eq!(output.stdout, format!("compacted revision {second}\n"));

    // Every member has compacted: the compaction is replicated.
    for index in 0..cluster.size() {
        let member = cluster.etcdctl_for(index);
        member
            .run(&["get", "history", &format!("--rev={first}")])
            .expect_failure()
            .expect_stderr_contains(&format!("Error: {COMPACTED}"));
        let at_compact = member.get(&["history", &format!("--rev={second}")]);
        assert_eq!(
            at_compact.kvs[0].value, "v2",
            "the compact revision stays readable"
        );
        let current = member.get(&["history"]);
        assert_eq!(current.kvs[0].value, "v3");
        assert_eq!(current.kvs[0].mod_revision, third);
        assert_eq!(current.kvs[0].version, 3, "versions survive compaction");
    }

    etcdctl
        .run(&["compact", &first.to_string()])
        .expect_failure()
        .expect_stderr_contains(COMPACTED);
    etcdctl
        .run(&["compact", &(third + 1000).to_string()])
        .expect_failure()
        .expect_stderr_contains(FUTURE);
    etcdctl
        .run(&["get", "history", &format!("--rev={}", third + 1000)])
        .expect_failure()
        .expect_stderr_contains(FUTURE);

    // --physical waits until the compaction is applied to the backend.
    let fourth = etcdctl.put("history", "v4");
    let output = etcdctl
        .run(&["compact", "--physical", &third.to_string()])
        .expect_success();
    assert_eq!(output.stdout, format!("compacted revision {third}\n"));
    assert_eq!(etcdctl.get(&["history"]).kvs[0].mod_revision, fourth);
}

#[test]
fn a_watch_from_a_compacted_revision_is_cancelled() {
    let cluster = Cluster::start(1);
    let etcdctl = cluster.etcdctl();
    let first = etcdctl.put("watched", "v1");
    let second = etcdctl.put("watched", "v2");
    etcdctl
        .run(&["compact", &second.to_string()])
        .expect_success();

    let mut watcher = etcdctl.spawn(&["watch", "watched", &format!("--rev={first}")]);
    let status = watcher.wait_for_exit(CANCEL_TIMEOUT);
    assert!(
        !status.success(),
        "a cancelled watch fails:\n{}",
        watcher.report()
    );
    assert!(
        watcher.lines().is_empty(),
        "no events before the cancel:\n{}",
        watcher.report()
    );
    let stderr = watcher.stderr();
    assert!(
        stderr.contains(&format!("watch was canceled ({COMPACTED})")),
        "cancel reason missing:\n{}",
        watcher.report()
    );

    // From the compact revision itself the watch works.
    let mut from_compact = etcdctl.spawn(&["watch", "watched", &format!("--rev={second}")]);
    from_compact.wait_for_lines(0, &["PUT", "watched", "v2"], CANCEL_TIMEOUT);
}
