//! The node driver end to end, in process over loopback TCP: one and three
//! members agree on writes, serve linearizable and serializable reads,
//! forward a follower's writes, survive losing the leader, recover from
//! their disk, feed watches, and run leases to expiry. Guards the driver's
//! duty order (persist, send, apply, answer) and its waiter bookkeeping.

mod node_support;

use cairn_core::kv::{DeleteRangeRequest, EventType, PutRequest, WatchCreateRequest};
use cairn_server::node::{MemoryDisk, NodeError, NodeFailure};
use node_support::{wait_for, TestCluster, TestDisk, TEST_TIMEOUT};

#[tokio::test]
async fn a_single_node_serves_writes_and_both_kinds_of_read() {
    let cluster = TestCluster::start(1, |_| {}).await;
    assert_eq!(cluster.wait_for_leader().await, 0);
    let first = cluster.put(0, "a", "1").await;
    let second = cluster.put(0, "a", "2").await;
    assert!(second > first, "revision {second} after {first}");
    assert_eq!(
        cluster.get(0, "a", false).await.unwrap().as_deref(),
        Some("2")
    );
    assert_eq!(
        cluster.get(0, "a", true).await.unwrap().as_deref(),
        Some("2")
    );

    let (header, deleted) = cluster
        .handle(0)
        .delete_range(DeleteRangeRequest {
            key: b"a".to_vec(),
            ..DeleteRangeRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(deleted.deleted, 1);
    assert_eq!(header.member_id, cluster.nodes[0].config.member_id.0);
    assert_eq!(header.cluster_id, cluster.nodes[0].config.cluster_id);
    assert!(header.raft_term >= 1);
    assert_eq!(cluster.get(0, "a", false).await.unwrap(), None);

    // Validation errors come back before anything is proposed.
    let error = cluster
        .handle(0)
        .put(PutRequest::default())
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "etcdserver: key is not provided");
    cluster.shutdown_all().await;
}

#[tokio::test]
async fn three_nodes_replicate_and_forward_follower_writes() {
    let cluster = TestCluster::start(3, |_| {}).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    cluster.put(leader, "from-leader", "x").await;
    cluster.put(follower, "from-follower", "y").await;
    // Every member reaches the same state at the same applied index.
    let (index, hash) = cluster.handle(leader).applied_hash().await.unwrap();
    for i in 0..3 {
        wait_for("the same state at the same index", || async {
            let (other_index, other_hash) = cluster.handle(i).applied_hash().await.ok()?;
            if other_index == index {
                assert_eq!(other_hash, hash, "member {i} diverged at index {index}");
                return Some(());
            }
            // Publishing members may have moved the leader on; compare there.
            (other_index > index).then_some(())
        })
        .await;
        let status = cluster.handle(i).raft_status().await.unwrap();
        assert_eq!(status.leader, Some(cluster.nodes[leader].config.member_id));
    }
    for i in 0..3 {
        // Linearizable reads see both writes at once, on every member.
        assert_eq!(
            cluster
                .get(i, "from-leader", false)
                .await
                .unwrap()
                .as_deref(),
            Some("x")
        );
        assert_eq!(
            cluster
                .get(i, "from-follower", false)
                .await
                .unwrap()
                .as_deref(),
            Some("y")
        );
        cluster.wait_for_value(i, "from-follower", "y", true).await;
    }
    let (_, members) = cluster.handle(follower).member_list().await.unwrap();
    assert_eq!(members.len(), 3);
    // Every member publishes its name and client URLs.
    wait_for("published member attributes", || async {
        let (_, members) = cluster.handle(leader).member_list().await.ok()?;
        members
            .iter()
            .all(|member| member.name.starts_with("node-") && !member.client_urls.is_empty())
            .then_some(())
    })
    .await;
    cluster.shutdown_all().await;
}

#[tokio::test]
async fn losing_the_leader_elects_another_and_writes_continue() {
    let mut cluster = TestCluster::start(3, |_| {}).await;
    let leader = cluster.wait_for_leader().await;
    cluster.put(leader, "before", "1").await;
    cluster.kill(leader).await;
    let new_leader = cluster.wait_for_leader().await;
    assert_ne!(new_leader, leader);
    cluster.put(new_leader, "after", "2").await;
    for i in cluster.running() {
        cluster.wait_for_value(i, "before", "1", false).await;
        cluster.wait_for_value(i, "after", "2", false).await;
    }
    // The old leader comes back from its disk and catches up.
    cluster.start_node(leader).await;
    cluster.wait_for_value(leader, "after", "2", true).await;
    cluster.shutdown_all().await;
}

#[tokio::test]
async fn a_restarted_node_recovers_its_data() {
    let mut cluster = TestCluster::start(1, |config| config.snapshot_count = 5).await;
    cluster.wait_for_leader().await;
    for i in 0..12 {
        cluster
            .put(0, &format!("key-{i}"), &format!("value-{i}"))
            .await;
    }
    let revision_before = cluster.handle(0).header().revision;
    cluster.kill(0).await;
    cluster.start_node(0).await;
    cluster.wait_for_leader().await;
    for i in 0..12 {
        cluster
            .wait_for_value(0, &format!("key-{i}"), &format!("value-{i}"), true)
            .await;
    }
    assert_eq!(cluster.handle(0).header().revision, revision_before);
    assert!(cluster.handle(0).metrics().snapshots() >= 1);
    cluster.shutdown_all().await;
}

#[tokio::test]
async fn a_lagging_member_catches_up_from_a_snapshot() {
    let mut cluster = TestCluster::start(3, |config| config.snapshot_count = 4).await;
    let leader = cluster.wait_for_leader().await;
    let lagging = (leader + 1) % 3;
    cluster.kill(lagging).await;
    for i in 0..20 {
        cluster
            .put(leader, &format!("k{i}"), &format!("v{i}"))
            .await;
    }
    cluster.start_node(lagging).await;
    for i in 0..20 {
        cluster
            .wait_for_value(lagging, &format!("k{i}"), &format!("v{i}"), true)
            .await;
    }
    cluster.shutdown_all().await;
}

#[tokio::test]
async fn watches_receive_events_in_order() {
    let cluster = TestCluster::start(3, |_| {}).await;
    let leader = cluster.wait_for_leader().await;
    let watcher = (leader + 2) % 3;
    let mut session = cluster.handle(watcher).watch_session().await.unwrap();
    session
        .create(WatchCreateRequest {
            key: b"w/".to_vec(),
            range_end: b"w0".to_vec(),
            prev_kv: true,
            ..WatchCreateRequest::default()
        })
        .await
        .unwrap();
    let created = tokio::time::timeout(TEST_TIMEOUT, session.next())
        .await
        .unwrap()
        .unwrap();
    assert!(created.created, "{created:?}");
    let watch_id = created.watch_id;

    cluster.put(leader, "w/1", "a").await;
    cluster.put(leader, "w/1", "b").await;
    cluster.put(leader, "other", "ignored").await;
    cluster
        .handle(leader)
        .delete_range(DeleteRangeRequest {
            key: b"w/1".to_vec(),
            ..DeleteRangeRequest::default()
        })
        .await
        .unwrap();

    let mut events = Vec::new();
    while events.len() < 3 {
        let response = tokio::time::timeout(TEST_TIMEOUT, session.next())
            .await
            .expect("watch events in time")
            .expect("stream open");
        assert_eq!(response.watch_id, watch_id);
        events.extend(response.events);
    }
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0].kind, EventType::Put);
    assert_eq!(events[0].kv.value, b"a");
    assert_eq!(events[1].kv.value, b"b");
    assert_eq!(events[1].prev_kv.as_ref().unwrap().value, b"a");
    assert_eq!(events[2].kind, EventType::Delete);
    assert!(events[0].kv.mod_revision < events[1].kv.mod_revision);

    session.cancel(watch_id).await.unwrap();
    cluster.shutdown_all().await;
}

#[tokio::test]
async fn leases_are_granted_kept_alive_on_followers_revoked_and_expire() {
    let cluster = TestCluster::start(3, |_| {}).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    let ttl_min = cluster.nodes[0].config.lease_ttl_min_seconds();

    // Grant with ID 0: the node picks a positive ID.
    let (_, grant) = cluster
        .handle(follower)
        .lease_grant(ttl_min, 0)
        .await
        .unwrap();
    assert!(grant.id > 0, "lease id {}", grant.id);
    assert_eq!(grant.ttl, ttl_min);
    let put = PutRequest {
        key: b"leased".to_vec(),
        value: b"v".to_vec(),
        lease: grant.id,
        ..PutRequest::default()
    };
    cluster.handle(follower).put(put).await.unwrap();

    // Keep-alive and time-to-live through a follower reach the leader.
    let (_, ttl) = cluster
        .handle(follower)
        .lease_keep_alive(grant.id)
        .await
        .unwrap();
    assert_eq!(ttl, ttl_min);
    let (_, time_to_live) = cluster
        .handle(follower)
        .lease_time_to_live(grant.id, true)
        .await
        .unwrap();
    assert_eq!(time_to_live.granted_ttl, ttl_min);
    assert_eq!(time_to_live.keys, vec![b"leased".to_vec()]);
    let (_, leases) = cluster.handle(follower).lease_leases().await.unwrap();
    assert_eq!(leases, vec![grant.id]);
    let (_, unknown) = cluster
        .handle(follower)
        .lease_keep_alive(grant.id + 1)
        .await
        .unwrap();
    assert_eq!(unknown, 0);

    // Not kept alive any more: the leader revokes it and the key goes.
    wait_for("the lease to expire and delete its key", || async {
        match cluster.get(follower, "leased", false).await {
            Ok(None) => Some(()),
            _ => None,
        }
    })
    .await;
    let (_, expired) = cluster
        .handle(leader)
        .lease_time_to_live(grant.id, false)
        .await
        .unwrap();
    assert_eq!(expired.ttl, -1);

    // An explicit revoke deletes at once.
    let (_, second) = cluster.handle(leader).lease_grant(60, 0).await.unwrap();
    let put = PutRequest {
        key: b"leased-2".to_vec(),
        value: b"v".to_vec(),
        lease: second.id,
        ..PutRequest::default()
    };
    cluster.handle(leader).put(put).await.unwrap();
    cluster
        .handle(follower)
        .lease_revoke(second.id)
        .await
        .unwrap();
    assert_eq!(cluster.get(leader, "leased-2", false).await.unwrap(), None);
    cluster.shutdown_all().await;
}

#[tokio::test]
async fn a_graceful_shutdown_hands_leadership_over() {
    let mut cluster = TestCluster::start(3, |_| {}).await;
    let leader = cluster.wait_for_leader().await;
    cluster.put(leader, "k", "v").await;
    let (handle, task) = cluster.nodes[leader].running.take().unwrap();
    tokio::time::timeout(TEST_TIMEOUT, handle.shutdown())
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(TEST_TIMEOUT, task.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        handle.put(PutRequest::default()).await.unwrap_err(),
        NodeError::Stopped
    );
    let new_leader = cluster.wait_for_leader().await;
    assert_ne!(new_leader, leader);
    cluster.put(new_leader, "k", "w").await;
    cluster.shutdown_all().await;
}

#[tokio::test]
async fn a_storage_failure_stops_the_node() {
    let mut cluster = TestCluster::configure(1, |_| {});
    let disk = MemoryDisk::new();
    cluster.nodes[0].disk = TestDisk::Memory(disk.clone());
    cluster.start_node(0).await;
    cluster.wait_for_leader().await;
    cluster.put(0, "k", "v").await;
    disk.fail_writes();
    let error = cluster
        .handle(0)
        .put(PutRequest {
            key: b"k".to_vec(),
            value: b"w".to_vec(),
            ..PutRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error, NodeError::Stopped);
    let (_, task) = cluster.nodes[0].running.take().unwrap();
    let failure = tokio::time::timeout(TEST_TIMEOUT, task.wait())
        .await
        .unwrap();
    assert!(
        matches!(failure, Err(NodeFailure::Storage(_))),
        "{failure:?}"
    );
}

#[tokio::test]
async fn move_leader_and_membership_changes() {
    let cluster = TestCluster::start(3, |_| {}).await;
    let leader = cluster.wait_for_leader().await;
    let target = (leader + 1) % 3;
    let target_id = cluster.nodes[target].config.member_id.0;
    let error = cluster
        .handle(target)
        .move_leader(target_id)
        .await
        .unwrap_err();
    assert_eq!(error, NodeError::NotLeader);
    cluster.handle(leader).move_leader(target_id).await.unwrap();
    assert_eq!(cluster.wait_for_leader().await, target);

    // Add a learner (never started) and remove it again.
    let (_, learner, members) = cluster
        .handle(target)
        .member_add(vec!["http://127.0.0.1:9".to_string()], true)
        .await
        .unwrap();
    assert!(learner.is_learner);
    assert_eq!(members.len(), 4);
    let error = cluster
        .handle(target)
        .member_add(vec!["http://127.0.0.1:9".to_string()], true)
        .await
        .unwrap_err();
    assert_eq!(error, NodeError::PeerUrlExists);
    let (_, members) = cluster
        .handle(target)
        .member_remove(learner.id)
        .await
        .unwrap();
    assert_eq!(members.len(), 3);
    let error = cluster
        .handle(target)
        .member_remove(learner.id)
        .await
        .unwrap_err();
    assert_eq!(error, NodeError::MemberNotFound);

    let status = cluster.handle(leader).status().await.unwrap();
    assert_eq!(status.leader, target_id);
    assert!(status.raft_applied_index >= 1);
    let (_, hash, _) = cluster.handle(target).hash_kv(0).await.unwrap();
    let (_, other_hash, _) = wait_for("hash_kv to agree", || async {
        let answer = cluster.handle(leader).hash_kv(0).await.ok()?;
        (answer.1 == hash).then_some(answer)
    })
    .await;
    assert_eq!(other_hash, hash);
    cluster.shutdown_all().await;
}

#[tokio::test]
async fn watches_catch_up_from_history_and_answer_progress_requests() {
    let cluster = TestCluster::start(1, |_| {}).await;
    cluster.wait_for_leader().await;
    let first = cluster.put(0, "h", "1").await;
    cluster.put(0, "h", "2").await;
    let mut session = cluster.handle(0).watch_session().await.unwrap();
    session
        .create(WatchCreateRequest {
            key: b"h".to_vec(),
            start_revision: first,
            ..WatchCreateRequest::default()
        })
        .await
        .unwrap();
    let mut values = Vec::new();
    while values.len() < 2 {
        let response = tokio::time::timeout(TEST_TIMEOUT, session.next())
            .await
            .unwrap()
            .unwrap();
        values.extend(response.events.into_iter().map(|event| event.kv.value));
    }
    assert_eq!(values, vec![b"1".to_vec(), b"2".to_vec()]);

    session.progress().await.unwrap();
    let progress = tokio::time::timeout(TEST_TIMEOUT, session.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(progress.watch_id, -1, "{progress:?}");
    assert!(progress.events.is_empty());
    assert_eq!(
        progress.header_revision,
        cluster.handle(0).header().revision
    );

    // A dropped session's watches are closed by the node.
    let metrics = cluster.handle(0).metrics().clone();
    assert_eq!(metrics.watchers(), 1);
    drop(session);
    wait_for("the dropped session's watch to close", || async {
        (metrics.watchers() == 0 && metrics.watch_streams() == 0).then_some(())
    })
    .await;
    cluster.shutdown_all().await;
}

#[tokio::test]
async fn a_member_added_at_runtime_joins_after_compaction() {
    let mut cluster = TestCluster::start(3, |config| config.snapshot_count = 4).await;
    let leader = cluster.wait_for_leader().await;
    for i in 0..10 {
        cluster
            .put(leader, &format!("j{i}"), &format!("v{i}"))
            .await;
    }
    let joiner = cluster.add_member_slot().await;
    let (_, member, members) = cluster
        .handle(leader)
        .member_add(
            cluster.nodes[joiner].config.initial_cluster[&cluster.nodes[joiner].config.member_id]
                .peer_urls
                .clone(),
            false,
        )
        .await
        .unwrap();
    assert_eq!(member.id, cluster.nodes[joiner].config.member_id.0);
    assert_eq!(members.len(), 4);
    cluster.start_node(joiner).await;
    for i in 0..10 {
        cluster
            .wait_for_value(joiner, &format!("j{i}"), &format!("v{i}"), true)
            .await;
    }
    cluster.put(joiner, "after-join", "x").await;
    cluster
        .wait_for_value(leader, "after-join", "x", false)
        .await;
    cluster.shutdown_all().await;
}

#[tokio::test]
async fn a_member_added_at_runtime_joins_and_catches_up_from_the_log() {
    let mut cluster = TestCluster::start(3, |_| {}).await;
    let leader = cluster.wait_for_leader().await;
    for i in 0..10 {
        cluster
            .put(leader, &format!("j{i}"), &format!("v{i}"))
            .await;
    }
    let joiner = cluster.add_member_slot().await;
    let (_, member, members) = cluster
        .handle(leader)
        .member_add(
            cluster.nodes[joiner].config.initial_cluster[&cluster.nodes[joiner].config.member_id]
                .peer_urls
                .clone(),
            false,
        )
        .await
        .unwrap();
    assert_eq!(member.id, cluster.nodes[joiner].config.member_id.0);
    assert_eq!(members.len(), 4);
    cluster.start_node(joiner).await;
    for i in 0..10 {
        cluster
            .wait_for_value(joiner, &format!("j{i}"), &format!("v{i}"), true)
            .await;
    }
    cluster.put(joiner, "after-join", "x").await;
    cluster
        .wait_for_value(leader, "after-join", "x", false)
        .await;
    cluster.shutdown_all().await;
}

#[tokio::test]
async fn a_removed_member_stops_and_the_rest_carry_on() {
    let mut cluster = TestCluster::start(3, |_| {}).await;
    let leader = cluster.wait_for_leader().await;
    let removed = (leader + 1) % 3;
    let removed_id = cluster.nodes[removed].config.member_id.0;
    let (_, members) = cluster
        .handle(leader)
        .member_remove(removed_id)
        .await
        .unwrap();
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|member| member.id != removed_id));
    let (_, task) = cluster.nodes[removed].running.take().unwrap();
    tokio::time::timeout(TEST_TIMEOUT, task.wait())
        .await
        .expect("the removed member stops")
        .expect("a removal is a clean stop");
    let leader = cluster.wait_for_leader().await;
    cluster.put(leader, "two-left", "ok").await;
    for i in cluster.running() {
        cluster.wait_for_value(i, "two-left", "ok", false).await;
    }
    cluster.shutdown_all().await;
}

#[tokio::test]
async fn a_lease_survives_a_leader_change() {
    let mut cluster = TestCluster::start(3, |_| {}).await;
    let leader = cluster.wait_for_leader().await;
    let (_, grant) = cluster.handle(leader).lease_grant(60, 0).await.unwrap();
    let put = PutRequest {
        key: b"owned".to_vec(),
        value: b"v".to_vec(),
        lease: grant.id,
        ..PutRequest::default()
    };
    cluster.handle(leader).put(put).await.unwrap();
    cluster.kill(leader).await;
    let new_leader = cluster.wait_for_leader().await;
    let follower = cluster
        .running()
        .into_iter()
        .find(|&i| i != new_leader)
        .unwrap();
    // The new leader tracks the lease; a follower's keep-alive reaches it.
    let ttl = wait_for("a keep-alive through the new leader", || async {
        cluster
            .handle(follower)
            .lease_keep_alive(grant.id)
            .await
            .ok()
    })
    .await;
    assert_eq!(ttl.1, 60);
    let (_, leases) = cluster.handle(new_leader).lease_leases().await.unwrap();
    assert_eq!(leases, vec![grant.id]);
    cluster
        .handle(new_leader)
        .lease_revoke(grant.id)
        .await
        .unwrap();
    wait_for("the revoke to delete the key on a follower", || async {
        matches!(cluster.get(follower, "owned", true).await, Ok(None)).then_some(())
    })
    .await;
    cluster.shutdown_all().await;
}
