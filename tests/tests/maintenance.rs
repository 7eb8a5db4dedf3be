//! Guards the maintenance commands operators run: `endpoint hashkv` gives
//! the same hash on every member at the same revision (the replicas'
//! key-value histories are identical), `defrag` succeeds on every member
//! with etcd's message, and `alarm list` is empty on a healthy cluster.

use std::time::Duration;

use cairn_tests::{wait_until, Cluster};

/// Bound on every member applying the latest write.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn hashkv_agrees_across_members() {
    let cluster = Cluster::start(3);
    let etcdctl = cluster.etcdctl();
    for number in 0..20 {
        etcdctl.put(&format!("hash/{}", number % 7), &format!("v{number}"));
    }
    etcdctl.run(&["del", "hash/3"]).expect_success();
    let revision = etcdctl.put("hash/last", "x");
    // Wait until every member has applied the last write, then compare
    // hashes at that revision.
    for index in 0..cluster.size() {
        let member = cluster.etcdctl_for(index);
        wait_until(
            &format!("member {index} reaches revision {revision}"),
            APPLY_TIMEOUT,
            || (member.get(&["hash/last", "--consistency=s"]).revision >= revision).then_some(()),
        );
    }
    let output = etcdctl
        .run(&[
            "endpoint",
            "hashkv",
            &format!("--rev={revision}"),
            "-w",
            "json",
        ])
        .expect_success();
    let json = output.json();
    let hashes: Vec<u64> = json
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| entry["HashKV"]["hash"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(hashes.len(), 3, "{output}");
    assert!(
        hashes.iter().all(|&hash| hash == hashes[0]),
        "hashes differ:\n{output}"
    );
    assert_ne!(
        hashes[0], 0,
        "a non-empty store hashes to non-zero:\n{output}"
    );

    // A different history hashes differently.
    etcdctl.put("hash/last", "changed");
    let later = etcdctl
        .run(&["endpoint", "hashkv", "-w", "json"])
        .expect_success()
        .json();
    let later_hash = later[0]["HashKV"]["hash"].as_u64().unwrap_or(0);
    assert_ne!(later_hash, hashes[0], "a new revision changes the hash");
}

#[test]
fn defrag_and_alarm_list_succeed() {
    let cluster = Cluster::start(3);
    let etcdctl = cluster.etcdctl();
    etcdctl.put("defrag", "me");
    let output = etcdctl.run(&["defrag"]).expect_success();
    for index in 0..cluster.size() {
        let line = format!(
            "Finished defragmenting etcd member[{}]",
            cluster.endpoint(index)
        );
        assert!(
            output.stdout_lines().contains(&line.as_str()),
            "missing {line:?}:\n{output}"
        );
    }
    assert_eq!(
        etcdctl.value("defrag").as_deref(),
        Some("me"),
        "defrag keeps data"
    );

    let alarms = etcdctl.run(&["alarm", "list"]).expect_success();
    assert_eq!(
        alarms.stdout, "",
        "no alarm on a healthy cluster:\n{alarms}"
    );
}
