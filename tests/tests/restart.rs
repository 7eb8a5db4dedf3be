//! Guards durability and availability across crashes (SIGKILL, no clean
//! shutdown): a member killed in the middle of a stream of writes and
//! restarted from its data directory catches up and loses no acknowledged
//! write; killing the leader elects a new one in a higher term and writes
//! continue; stopping and restarting the whole cluster keeps every key,
//! revision, lease and member id.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cairn_tests::{wait_until, Cluster, ClusterConfig, Etcdctl, RangeReply};

/// Puts the writer attempts.
const WRITES: usize = 120;
/// The writer stops at this deadline even if puts remain.
const WRITER_DEADLINE: Duration = Duration::from_secs(90);
/// Bound on the writer reaching a progress mark.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on a restarted member catching up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// A low snapshot count makes the servers snapshot and compact their logs
/// during the test, so recovery reads a snapshot plus a log tail.
const SNAPSHOT_COUNT: u64 = 25;

/// Writes `prefix<n>` = `value-<n>` for n in 0..WRITES, one etcdctl put at
/// a time, counting attempts in `progress`; returns the acknowledged puts.
fn write_stream(
    etcdctl: Etcdctl,
    prefix: String,
    progress: Arc<AtomicUsize>,
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + WRITER_DEADLINE;
    let mut acknowledged = BTreeMap::new();
    for number in 0..WRITES {
        if Instant::now() >= deadline {
            break;
        }
        let key = format!("{prefix}{number:04}");
        let value = format!("value-{number}");
        let output = etcdctl.run(&["put", &key, &value, "--command-timeout=3s"]);
        if output.success() {
            acknowledged.insert(key, value);
        }
        progress.fetch_add(1, Ordering::SeqCst);
    }
    acknowledged
}

fn wait_for_progress(progress: &AtomicUsize, mark: usize) {
    wait_until(
        &format!("the writer has attempted {mark} puts"),
        PROGRESS_TIMEOUT,
        || (progress.load(Ordering::SeqCst) >= mark).then_some(()),
    );
}

/// Waits until `etcdctl`'s member serves, from its local state, every
/// acknowledged pair.
fn wait_until_member_has(etcdctl: &Etcdctl, prefix: &str, acknowledged: &BTreeMap<String, String>) {
    wait_until(
        &format!("{} holds every acknowledged write", etcdctl.endpoints()),
        CATCH_UP_TIMEOUT,
        || {
            let output = etcdctl.run(&["get", prefix, "--prefix", "--consistency=s", "-w", "json"]);
            if !output.success() {
                return None;
            }
            let stored: BTreeMap<String, String> = RangeReply::parse(&output)
                .kvs
                .into_iter()
                .map(|kv| (kv.key, kv.value))
                .collect();
            acknowledged
                .iter()
                .all(|(key, value)| stored.get(key) == Some(value))
                .then_some(())
        },
    );
}

#[test]
fn a_member_killed_during_writes_recovers_every_acknowledged_write() {
    let mut config = ClusterConfig::with_size(3);
    config.snapshot_count = Some(SNAPSHOT_COUNT);
    let mut cluster = Cluster::start_with(config);
    let victim = 2;
    let writer_etcdctl = Etcdctl::new(&format!("{},{}", cluster.endpoint(0), cluster.endpoint(1)));
    let progress = Arc::new(AtomicUsize::new(0));
    let writer = {
        let progress = Arc::clone(&progress);
        thread::spawn(move || write_stream(writer_etcdctl, "stream/".to_owned(), progress))
    };

    wait_for_progress(&progress, WRITES / 4);
    cluster.kill(victim);
    wait_for_progress(&progress, WRITES / 2);
    cluster.restart(victim);
    let acknowledged = writer.join().expect("the writer thread panicked");
    assert!(
        acknowledged.len() >= WRITES / 2,
        "only {} of {WRITES} puts were acknowledged with two of three members up",
        acknowledged.len()
    );

    for index in 0..cluster.size() {
        wait_until_member_has(&cluster.etcdctl_for(index), "stream/", &acknowledged);
    }
    // A linearizable read through the restarted member agrees too.
    let through_victim = cluster.etcdctl_for(victim).get(&["stream/", "--prefix"]);
    for (key, value) in &acknowledged {
        assert!(
            through_victim
                .kvs
                .iter()
                .any(|kv| &kv.key == key && &kv.value == value),
            "acknowledged {key}={value} missing on the restarted member"
        );
    }
    cluster.etcdctl_for(victim).put("after-restart", "ok");
    assert_eq!(
        cluster.etcdctl_for(0).value("after-restart").as_deref(),
        Some("ok")
    );
}

#[test]
fn killing_the_leader_elects_a_new_one_and_writes_continue() {
    let mut cluster = Cluster::start(3);
    let etcdctl = cluster.etcdctl();
    for number in 0..10 {
        etcdctl.put(&format!("before/{number}"), "x");
    }
    let old_leader = cluster.leader_index();
    let old_status = cluster.status(old_leader).expect("the leader answers");
    cluster.kill(old_leader);

    let new_leader = cluster.leader_index();
    assert_ne!(new_leader, old_leader, "a killed member cannot lead");
    let new_status = cluster.status(new_leader).expect("the new leader answers");
    assert!(
        new_status.raft_term > old_status.raft_term,
        "a new leader needs a new term: {new_status:?} vs {old_status:?}"
    );
    assert_ne!(new_status.leader, old_status.member_id);

    let survivors: Vec<usize> = (0..cluster.size())
        .filter(|&index| index != old_leader)
        .collect();
    let survivor_endpoints = survivors
        .iter()
        .map(|&index| cluster.endpoint(index))
        .collect::<Vec<_>>()
        .join(",");
    let survivor_etcdctl = Etcdctl::new(&survivor_endpoints);
    for number in 0..10 {
        survivor_etcdctl.put(&format!("after/{number}"), "y");
    }
    for &index in &survivors {
        let reply = cluster
            .etcdctl_for(index)
            .get(&["", "--prefix", "--keys-only"]);
        assert_eq!(
            reply.kvs.len(),
            20,
            "member {index} sees both batches: {:?}",
            reply.keys()
        );
    }

    // The old leader rejoins as a follower and catches up.
    cluster.restart(old_leader);
    let expected: BTreeMap<String, String> = (0..10)
        .flat_map(|number| {
            [
                (format!("before/{number}"), "x".to_owned()),
                (format!("after/{number}"), "y".to_owned()),
            ]
        })
        .collect();
    wait_until_member_has(&cluster.etcdctl_for(old_leader), "", &expected);
}

/// `member list` lines, sorted: the listing order is not part of the API.
fn sorted_member_list(cluster: &Cluster) -> Vec<String> {
    let output = cluster.etcdctl().run(&["member", "list"]).expect_success();
    let mut lines: Vec<String> = output
        .stdout_lines()
        .into_iter()
        .map(str::to_owned)
        .collect();
    lines.sort_unstable();
    lines
}

#[test]
fn the_whole_cluster_restarts_with_its_state_intact() {
    let mut cluster = Cluster::start(3);
    let etcdctl = cluster.etcdctl();
    for number in 0..30 {
        etcdctl.put(&format!("durable/{number:02}"), &format!("v{number}"));
    }
    etcdctl.put("durable/05", "overwritten");
    etcdctl.run(&["del", "durable/07"]).expect_success();
    let lease_output = etcdctl.run(&["lease", "grant", "300"]).expect_success();
    let lease = lease_output
        .stdout
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_owned();
    etcdctl
        .run(&["put", "durable/leased", "l", &format!("--lease={lease}")])
        .expect_success();
    let before = etcdctl.get(&["durable/", "--prefix"]);
    let members_before = sorted_member_list(&cluster);

    cluster.kill_all();
    cluster.restart_all();

    for index in 0..cluster.size() {
        let after = cluster.etcdctl_for(index).get(&["durable/", "--prefix"]);
        assert_eq!(after.kvs, before.kvs, "member {index} after the restart");
        assert_eq!(
            after.revision, before.revision,
            "member {index}: no revision lost or invented"
        );
    }
    let members_after = sorted_member_list(&cluster);
    assert_eq!(members_after, members_before, "member ids and URLs survive");
    let time_to_live = etcdctl
        .run(&["lease", "timetolive", "--keys", &lease])
        .expect_success();
    assert!(
        time_to_live.stdout.contains("granted with TTL(300s)")
            && time_to_live
                .stdout
                .contains("attached keys([durable/leased])"),
        "the lease survives:\n{time_to_live}"
    );
    let next = etcdctl.put("durable/new", "n");
    assert_eq!(
        next,
        before.revision + 1,
        "revisions continue where they stopped"
    );
}
