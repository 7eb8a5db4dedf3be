//! Guards lease semantics: revoking a lease, by request or by the leader's
//! expiry decision, deletes exactly the live keys attached to it, all in one
//! new revision (none if it had no keys); puts move keys between leases; and
//! the leader's volatile deadlines never change replicated state (a
//! follower applying the same commands has the same hash).

mod kv_model;

use cairn_core::kv::{
    Command, EventType, KvConfig, KvStore, LeaseGrantRequest, LeaseId, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};
use kv_model::{key_strategy, KEYS};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Action {
    Grant {
        id: LeaseId,
        ttl: i64,
    },
    Put {
        key: Vec<u8>,
        lease: LeaseId,
        ignore_lease: bool,
    },
    TxnPut {
        key: Vec<u8>,
        lease: LeaseId,
    },
    Delete {
        key: Vec<u8>,
        from_key: bool,
    },
    Revoke(LeaseId),
    Renew(LeaseId),
    Advance(u64),
    Checkpoint,
}

fn action_strategy() -> impl Strategy<Value = Action> {
    prop_oneof![
        2 => (1i64..4, 1i64..20).prop_map(|(id, ttl)| Action::Grant { id, ttl }),
        5 => (key_strategy(), 0i64..4, prop::bool::weighted(0.2))
            .prop_map(|(key, lease, ignore_lease)| Action::Put { key, lease, ignore_lease }),
        2 => (key_strategy(), 0i64..4).prop_map(|(key, lease)| Action::TxnPut { key, lease }),
        1 => (key_strategy(), any::<bool>()).prop_map(|(key, from_key)| Action::Delete { key, from_key }),
        1 => (0i64..4).prop_map(Action::Revoke),
        2 => (1i64..4).prop_map(Action::Renew),
        2 => (0u64..8_000).prop_map(Action::Advance),
        1 => Just(Action::Checkpoint),
    ]
}

/// The live keys attached to `lease`, by reading every key.
fn keys_with_lease(store: &KvStore, lease: LeaseId) -> Vec<Vec<u8>> {
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..RangeRequest::default()
    };
    let response = store.range(&all).unwrap();
    response
        .kvs
        .into_iter()
        .filter(|kv| kv.lease == lease)
        .map(|kv| kv.key)
        .collect()
}

/// Applies `command` to leader and follower; checks a revoke's effect.
fn apply_both(leader: &mut KvStore, follower: &mut KvStore, command: &Command, now_ms: u64) {
    let revoked = match command {
        Command::LeaseRevoke { id } => Some((*id, keys_with_lease(leader, *id), leader.revision())),
        _ => None,
    };
    let applied = leader.apply(command, now_ms);
    let followed = follower.apply(command, now_ms + 12_345);
    assert_eq!(
        applied, followed,
        "leader and follower disagree on {command:?}"
    );
    leader.check_invariants();
    if let (Some((id, keys, before)), Ok(_)) = (revoked, &applied.response) {
        let deleted: Vec<Vec<u8>> = applied.events.iter().map(|e| e.kv.key.clone()).collect();
        assert_eq!(deleted, keys, "revoke of {id} deleted the wrong keys");
        assert!(applied.events.iter().all(|e| e.kind == EventType::Delete));
        assert!(applied
            .events
            .iter()
            .all(|e| e.kv.mod_revision == before + 1));
        let expected_revision = if keys.is_empty() { before } else { before + 1 };
        assert_eq!(applied.revision, expected_revision);
        assert!(keys_with_lease(leader, id).is_empty());
        assert_eq!(leader.lease_time_to_live(id, true, now_ms).ttl, -1);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn revoke_and_expiry_delete_exactly_the_lease_keys(
        actions in prop::collection::vec(action_strategy(), 1..60),
    ) {
        let mut leader = KvStore::new(KvConfig::default());
        let mut follower = KvStore::new(KvConfig::default());
        let mut now_ms = 1_000u64;
        leader.lease_promote(now_ms);
        for action in actions {
            let command = match action {
                Action::Grant { id, ttl } => Some(Command::LeaseGrant(LeaseGrantRequest { ttl, id })),
                Action::Put { key, lease, ignore_lease } => Some(Command::Put(PutRequest {
                    key,
                    value: b"v".to_vec(),
                    lease: if ignore_lease { 0 } else { lease },
                    ignore_lease,
                    ..PutRequest::default()
                })),
                Action::TxnPut { key, lease } => Some(Command::Txn(TxnRequest {
                    compare: vec![],
                    success: vec![RequestOp::Put(PutRequest { key, lease, ..PutRequest::default() })],
                    failure: vec![],
                })),
                Action::Delete { key, from_key } => Some(Command::DeleteRange(
                    cairn_core::kv::DeleteRangeRequest {
                        key,
                        range_end: if from_key { vec![0] } else { vec![] },
                        prev_kv: true,
                    },
                )),
                Action::Revoke(id) => Some(Command::LeaseRevoke { id }),
                Action::Renew(id) => {
                    let exists = leader.leases().contains(&id);
                    let renewed = leader.lease_renew(id, now_ms);
                    prop_assert!(renewed.is_ok() || !exists || leader.lease_expired(now_ms).contains(&id));
                    None
                }
                Action::Advance(ms) => {
                    now_ms += ms;
                    // The leader revokes what expired, as the driver would.
                    for id in leader.lease_expired(now_ms) {
                        apply_both(&mut leader, &mut follower, &Command::LeaseRevoke { id }, now_ms);
                    }
                    prop_assert!(leader.lease_expired(now_ms).is_empty());
                    None
                }
                Action::Checkpoint => Some(Command::LeaseCheckpoint {
                    checkpoints: leader.lease_checkpoints(now_ms),
                }),
            };
            if let Some(command) = command {
                apply_both(&mut leader, &mut follower, &command, now_ms);
            }
        }
        prop_assert_eq!(leader.hash(), follower.hash());
        prop_assert_eq!(leader.snapshot(), follower.snapshot());
        // Every lease lists exactly the live keys that carry it.
        for id in leader.leases() {
            let mut attached = leader.lease_time_to_live(id, true, now_ms).keys;
            attached.sort();
            prop_assert_eq!(attached, keys_with_lease(&leader, id));
        }
        prop_assert!(KEYS.len() > 1);
    }
}
