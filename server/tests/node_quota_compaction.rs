//! The two flags that change what the state machine keeps, end to end in
//! process: --auto-compaction-mode/-retention (the leader proposes
//! compactions on its tick clock, replicated to every member) and
//! --quota-backend-bytes (a member past the quota raises the replicated
//! NOSPACE alarm; writes that grow the state fail until it is disarmed).

mod node_support;

use std::time::Duration;

use cairn_core::kv::{
    AlarmMember, AlarmType, CompactionRequest, DeleteRangeRequest, KvError, PutRequest,
    RangeRequest, TxnRequest,
};
use cairn_core::kv::{RequestOp, Revision};
use cairn_server::node::{AutoCompaction, NodeError};
use node_support::{retryable, wait_for, TestCluster};

/// A revision-mode check interval short enough for a test.
const TEST_REVISION_INTERVAL: Duration = Duration::from_millis(200);
/// A periodic retention short enough for a test.
const TEST_PERIODIC_RETENTION: Duration = Duration::from_millis(600);
/// A quota a handful of puts exceed.
const TEST_QUOTA_BYTES: u64 = 4096;
/// The value size of the puts that fill the quota.
const FILL_VALUE_BYTES: usize = 512;
/// Puts tried before the quota must have been hit.
const FILL_PUTS_MAX: usize = 64;

/// A serializable read of `key` at `revision` on member `i`.
async fn read_at(
    cluster: &TestCluster,
    i: usize,
    key: &str,
    revision: Revision,
) -> Result<usize, NodeError> {
    let request = RangeRequest {
        key: key.as_bytes().to_vec(),
        revision,
        serializable: true,
        ..RangeRequest::default()
    };
    let (_, response) = cluster.handle(i).range(request).await?;
    Ok(response.kvs.len())
}

/// Waits until a read at `revision` fails as compacted on member `i`.
async fn wait_compacted(cluster: &TestCluster, i: usize, revision: Revision) -> Revision {
    wait_for(
        &format!("revision {revision} compacted on member {i}"),
        || async {
            match read_at(cluster, i, "k", revision).await {
                Err(NodeError::Kv(KvError::Compacted { compact_revision })) => {
                    Some(compact_revision)
                }
                Ok(_) => None,
                Err(error) if retryable(&error) => None,
                Err(error) => panic!("read at {revision} failed: {error}"),
            }
        },
    )
    .await
}

#[tokio::test]
async fn revision_mode_compacts_on_every_member_keeping_the_retention() {
    const RETENTION: i64 = 3;
    let cluster = TestCluster::start(3, |config| {
        config.auto_compaction = Some(AutoCompaction::Revision(RETENTION));
        config.auto_compaction_revision_interval = TEST_REVISION_INTERVAL;
    })
    .await;
    let leader = cluster.wait_for_leader().await;
    let first = cluster.put(leader, "k", "0").await;
    let mut last = first;
    for value in 1..8 {
        last = cluster.put(leader, "k", &value.to_string()).await;
    }
    for i in 0..3 {
        let compact_revision = wait_compacted(&cluster, i, first).await;
        assert!(
            compact_revision <= last - RETENTION,
            "member {i} compacted to {compact_revision}, beyond {last} - {RETENTION}"
        );
        // The compactor reaches current - retention and keeps what is after.
        let compact_revision = wait_compacted(&cluster, i, last - RETENTION - 1).await;
        assert_eq!(compact_revision, last - RETENTION, "member {i}");
        assert_eq!(
            read_at(&cluster, i, "k", last - RETENTION).await.unwrap(),
            1
        );
    }
    cluster.shutdown_all().await;
}

#[tokio::test]
async fn periodic_mode_compacts_to_the_revision_of_one_retention_ago() {
    let cluster = TestCluster::start(1, |config| {
        config.auto_compaction = Some(AutoCompaction::Periodic(TEST_PERIODIC_RETENTION));
    })
    .await;
    cluster.wait_for_leader().await;
    let first = cluster.put(0, "k", "0").await;
    let last = cluster.put(0, "k", "1").await;
    let compact_revision = wait_compacted(&cluster, 0, first - 1).await;
    assert!(
        compact_revision <= last,
        "compacted to {compact_revision} past {last}"
    );
    // With no more writes, the samples catch up with the last revision.
    wait_compacted(&cluster, 0, last - 1).await;
    assert_eq!(read_at(&cluster, 0, "k", last).await.unwrap(), 1);
    cluster.shutdown_all().await;
}

fn big_put(key: &str) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec(),
        value: vec![b'x'; FILL_VALUE_BYTES],
        ..PutRequest::default()
    }
}

/// Waits until member `i` lists exactly `expected`.
async fn wait_alarms(cluster: &TestCluster, i: usize, expected: &[AlarmMember]) {
    wait_for(&format!("alarms {expected:?} on member {i}"), || async {
        match cluster.handle(i).alarms().await {
            Ok((_, alarms)) if alarms == expected => Some(()),
            Ok(_) => None,
            Err(error) if retryable(&error) => None,
            Err(error) => panic!("alarm list failed: {error}"),
        }
    })
    .await
}

#[tokio::test]
async fn the_quota_raises_a_replicated_nospace_alarm_until_disarmed_with_space() {
    let cluster = TestCluster::start(3, |config| {
        config.quota_backend_bytes = TEST_QUOTA_BYTES;
    })
    .await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    let mut written = 0;
    let error = loop {
        assert!(
            written < FILL_PUTS_MAX,
            "{written} puts never hit the quota"
        );
        match cluster
            .handle(leader)
            .put(big_put(&format!("k{written}")))
            .await
        {
            Ok(_) => written += 1,
            Err(error) if retryable(&error) => {}
            Err(error) => break error,
        }
    };
    assert!(matches!(error, NodeError::Kv(KvError::NoSpace)), "{error}");
    assert_eq!(
        error.to_string(),
        "etcdserver: mvcc: database space exceeded"
    );
    assert!(written > 0, "the first put already exceeded the quota");
    let alarm = AlarmMember {
        member_id: cluster.nodes[leader].config.member_id.0,
        alarm: AlarmType::NoSpace,
    };
    for i in 0..3 {
        wait_alarms(&cluster, i, &[alarm]).await;
    }

    // Every member refuses what grows the state, even a tiny put, a txn
    // with a write and a lease grant; reads still work.
    let tiny = PutRequest {
        key: b"tiny".to_vec(),
        value: b"1".to_vec(),
        ..PutRequest::default()
    };
    let error = cluster
        .handle(follower)
        .put(tiny.clone())
        .await
        .unwrap_err();
    assert!(matches!(error, NodeError::Kv(KvError::NoSpace)), "{error}");
    let txn = TxnRequest {
        success: vec![RequestOp::Put(tiny.clone())],
        ..TxnRequest::default()
    };
    let error = cluster.handle(leader).txn(txn).await.unwrap_err();
    assert!(matches!(error, NodeError::Kv(KvError::NoSpace)), "{error}");
    let error = cluster.handle(leader).lease_grant(60, 0).await.unwrap_err();
    assert!(matches!(error, NodeError::Kv(KvError::NoSpace)), "{error}");
    for i in 0..3 {
        assert_eq!(
            cluster.get(i, "k0", false).await.unwrap().unwrap().len(),
            FILL_VALUE_BYTES
        );
    }

    // Disarming without freeing space: what still fits is written, but the
    // next write past the quota raises the alarm again.
    let (_, cleared) = cluster.handle(follower).alarm_disarm(alarm).await.unwrap();
    assert_eq!(cleared, vec![alarm]);
    wait_alarms(&cluster, leader, &[]).await;
    cluster.handle(leader).put(tiny.clone()).await.unwrap();
    let error = cluster
        .handle(leader)
        .put(big_put("again"))
        .await
        .unwrap_err();
    assert!(matches!(error, NodeError::Kv(KvError::NoSpace)), "{error}");
    wait_alarms(&cluster, follower, &[alarm]).await;

    // Deletes and compaction still work and free the space.
    let (header, deleted) = cluster
        .handle(leader)
        .delete_range(DeleteRangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..DeleteRangeRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(deleted.deleted, written as i64 + 1, "the k* keys and tiny");
    cluster
        .handle(leader)
        .compact(CompactionRequest {
            revision: header.revision,
            physical: true,
        })
        .await
        .unwrap();
    let (_, cleared) = cluster.handle(leader).alarm_disarm(alarm).await.unwrap();
    assert_eq!(cleared, vec![alarm]);
    // Disarming what is not active clears nothing.
    let (_, cleared) = cluster.handle(leader).alarm_disarm(alarm).await.unwrap();
    assert_eq!(cleared, Vec::new());
    for i in 0..3 {
        wait_alarms(&cluster, i, &[]).await;
    }
    cluster
        .handle(follower)
        .put(big_put("again"))
        .await
        .unwrap();
    assert_eq!(
        cluster
            .get(leader, "again", false)
            .await
            .unwrap()
            .unwrap()
            .len(),
        FILL_VALUE_BYTES
    );
    cluster.shutdown_all().await;
}
