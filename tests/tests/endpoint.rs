//! Guards `etcdctl endpoint status` and `endpoint health`: status names the
//! same leader on every member (a real member id), reports a positive Raft
//! term and an index that grows with writes, and the store revision; health
//! succeeds for live members and reports an unreachable one as unhealthy.

use std::collections::BTreeSet;

use cairn_tests::Cluster;

#[test]
fn status_reports_one_leader_term_and_index() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader_index();
    let statuses: Vec<_> = (0..cluster.size())
        .map(|index| {
            cluster
                .status(index)
                .unwrap_or_else(|| panic!("no status from member {index}"))
        })
        .collect();
    let member_ids: BTreeSet<u64> = statuses.iter().map(|status| status.member_id).collect();
    assert_eq!(member_ids.len(), 3, "distinct member ids: {statuses:?}");
    for status in &statuses {
        assert_eq!(
            status.leader, statuses[leader].member_id,
            "one leader: {statuses:?}"
        );
        assert!(
            status.raft_term >= 1,
            "term {}: {status:?}",
            status.raft_term
        );
        assert!(
            status.raft_index >= 1,
            "index {}: {status:?}",
            status.raft_index
        );
        assert!(!status.version.is_empty(), "a version string: {status:?}");
    }
    assert_eq!(statuses[0].endpoint, cluster.endpoint(0));

    // The JSON carries the raw fields etcdctl prints.
    let output = cluster
        .etcdctl()
        .run(&["endpoint", "status", "-w", "json"])
        .expect_success();
    let json = output.json();
    let entries = json
        .as_array()
        .unwrap_or_else(|| panic!("an array:\n{output}"));
    assert_eq!(entries.len(), 3, "{output}");
    for entry in entries {
        for field in ["leader", "raftIndex", "raftTerm", "version", "dbSize"] {
            assert!(
                !entry["Status"][field].is_null(),
                "field {field} missing:\n{output}"
            );
        }
    }

    // A write advances the leader's index and the revision everywhere.
    let revision = cluster.etcdctl().put("advance", "1");
    let after = cluster.status(leader).expect("status after a write");
    assert!(
        after.raft_index > statuses[leader].raft_index,
        "{after:?} vs {:?}",
        statuses[leader]
    );
    assert!(
        after.revision >= revision,
        "{after:?} vs revision {revision}"
    );
}

#[test]
fn health_reports_live_and_dead_members() {
    let mut cluster = Cluster::start(3);
    let output = cluster
        .etcdctl()
        .run(&["endpoint", "health"])
        .expect_success();
    // etcdctl 3.4 prints the health lines on stderr.
    let combined = format!("{}{}", output.stdout, output.stderr);
    for index in 0..cluster.size() {
        let line = format!(
            "{} is healthy: successfully committed proposal: took = ",
            cluster.endpoint(index)
        );
        assert!(combined.contains(&line), "missing {line:?}:\n{output}");
    }
    let json = cluster
        .etcdctl()
        .run(&["endpoint", "health", "-w", "json"])
        .expect_success();
    let entries = json.json();
    let healthy: Vec<bool> = entries
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| entry["health"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(healthy, [true, true, true], "{json}");

    cluster.kill(2);
    let output = cluster
        .etcdctl()
        .run(&[
            "endpoint",
            "health",
            "--dial-timeout=1s",
            "--command-timeout=2s",
        ])
        .expect_failure();
    let combined = format!("{}{}", output.stdout, output.stderr);
    assert!(
        combined.contains(&format!("{} is unhealthy", cluster.endpoint(2))),
        "{output}"
    );
    assert!(
        combined.contains(&format!("{} is healthy", cluster.endpoint(0))),
        "{output}"
    );
    assert!(combined.contains("Error: unhealthy cluster"), "{output}");
    // Two of three members are a quorum: the rest stays healthy.
    cluster
        .etcdctl_for(1)
        .run(&["endpoint", "health"])
        .expect_success();
}
