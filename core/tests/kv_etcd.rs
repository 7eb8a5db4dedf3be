//! Guards specific etcd v3 behaviours of the KV state machine that clients
//! rely on: revision numbering, versions, errors and their order, txn
//! semantics (nested compares, reads of own writes, duplicate keys, op
//! limits), range sorting and limits, compaction errors, and lease binding.

use cairn_core::kv::{
    Command, CommandResponse, CompactionRequest, Compare, CompareResult, CompareTarget,
    DeleteRangeRequest, EventType, GrpcCode, KvConfig, KvError, KvStore, LeaseCheckpoint,
    LeaseGrantRequest, PutRequest, PutResponse, RangeRequest, RequestOp, ResponseOp, SortOrder,
    SortTarget, TxnRequest, TxnResponse,
};

fn put(key: &str, value: &str) -> Command {
    Command::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        prev_kv: true,
        ..PutRequest::default()
    })
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..PutRequest::default()
    })
}

fn delete_op(key: &str, range_end: &[u8]) -> RequestOp {
    RequestOp::DeleteRange(DeleteRangeRequest {
        key: key.into(),
        range_end: range_end.to_vec(),
        prev_kv: false,
    })
}

fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare: vec![],
        success,
        failure,
    }
}

fn get(store: &KvStore, key: &str) -> Option<cairn_core::kv::KeyValue> {
    let request = RangeRequest {
        key: key.into(),
        ..RangeRequest::default()
    };
    store.range(&request).unwrap().kvs.into_iter().next()
}

fn apply_ok(store: &mut KvStore, command: Command) -> CommandResponse {
    store.apply(&command, 0).response.unwrap()
}

#[test]
fn revisions_start_at_one_and_versions_reset_after_delete() {
    let mut store = KvStore::new(KvConfig::default());
    assert_eq!(store.revision(), 1);
    apply_ok(&mut store, put("foo", "a"));
    let kv = get(&store, "foo").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 2, 1));
    let response = apply_ok(&mut store, put("foo", "b"));
    let CommandResponse::Put(PutResponse {
        prev_kv: Some(prev),
    }) = response
    else {
        panic!("no prev_kv in {response:?}");
    };
    assert_eq!(prev.value, b"a");
    let kv = get(&store, "foo").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    let applied = store.apply(
        &Command::DeleteRange(DeleteRangeRequest {
            key: "foo".into(),
            ..Default::default()
        }),
        0,
    );
    assert_eq!(applied.revision, 4);
    assert_eq!(applied.events.len(), 1);
    assert_eq!(applied.events[0].kind, EventType::Delete);
    assert_eq!(applied.events[0].kv.mod_revision, 4);
    assert_eq!(applied.events[0].prev_kv.as_ref().unwrap().value, b"b");
    // A delete of nothing does not bump the revision.
    let applied = store.apply(
        &Command::DeleteRange(DeleteRangeRequest {
            key: "foo".into(),
            ..Default::default()
        }),
        0,
    );
    assert_eq!(applied.revision, 4);
    assert!(applied.events.is_empty());
    apply_ok(&mut store, put("foo", "c"));
    let kv = get(&store, "foo").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
}

#[test]
fn put_errors_follow_etcd() {
    let mut store = KvStore::new(KvConfig::default());
    let ignore_value = Command::Put(PutRequest {
        key: "k".into(),
        ignore_value: true,
        ..PutRequest::default()
    });
    assert_eq!(
        store.apply(&ignore_value, 0).response,
        Err(KvError::KeyNotFound)
    );
    assert_eq!(store.revision(), 1);
    let with_lease = Command::Put(PutRequest {
        key: "k".into(),
        lease: 7,
        ignore_value: true,
        ..PutRequest::default()
    });
    // The standalone put checks the lease before the key.
    assert_eq!(
        store.apply(&with_lease, 0).response,
        Err(KvError::LeaseNotFound)
    );
    let value_provided = Command::Put(PutRequest {
        key: "k".into(),
        value: "v".into(),
        ignore_value: true,
        ..PutRequest::default()
    });
    assert_eq!(store.validate(&value_provided), Err(KvError::ValueProvided));
    let lease_provided = Command::Put(PutRequest {
        key: "k".into(),
        lease: 3,
        ignore_lease: true,
        ..PutRequest::default()
    });
    assert_eq!(store.validate(&lease_provided), Err(KvError::LeaseProvided));
    assert_eq!(store.validate(&put("", "v")), Err(KvError::KeyNotProvided));
    assert_eq!(
        store.apply(&put("", "v"), 0).response,
        Err(KvError::KeyNotProvided)
    );
    let large = put("k", &"x".repeat(KvConfig::default().request_bytes_max));
    assert_eq!(store.validate(&large), Err(KvError::RequestTooLarge));
    assert_eq!(KvError::RequestTooLarge.code(), GrpcCode::InvalidArgument);
    assert_eq!(
        KvError::Compacted {
            compact_revision: 3
        }
        .to_string(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    // ignore_value keeps the value; ignore_lease keeps the lease.
    apply_ok(&mut store, put("k", "v1"));
    let keep = PutRequest {
        key: "k".into(),
        ignore_value: true,
        ..PutRequest::default()
    };
    apply_ok(&mut store, Command::Put(keep));
    let kv = get(&store, "k").unwrap();
    assert_eq!((kv.value.as_slice(), kv.version), (&b"v1"[..], 2));
}

#[test]
fn range_revision_errors_and_compaction() {
    let mut store = KvStore::new(KvConfig::default());
    for value in ["1", "2", "3", "4"] {
        apply_ok(&mut store, put("k", value));
    }
    assert_eq!(store.revision(), 5);
    let at = |revision| RangeRequest {
        key: "k".into(),
        revision,
        ..RangeRequest::default()
    };
    assert_eq!(store.range(&at(3)).unwrap().kvs[0].value, b"2");
    assert_eq!(
        store.range(&at(6)),
        Err(KvError::FutureRevision {
            current_revision: 5
        })
    );
    let compact = |revision| {
        Command::Compact(CompactionRequest {
            revision,
            physical: true,
        })
    };
    assert_eq!(
        store.apply(&compact(6), 0).response,
        Err(KvError::FutureRevision {
            current_revision: 5
        })
    );
    apply_ok(&mut store, compact(4));
    assert_eq!(store.revision(), 5, "compaction does not bump the revision");
    assert_eq!(
        store.range(&at(3)),
        Err(KvError::Compacted {
            compact_revision: 4
        })
    );
    assert_eq!(store.range(&at(4)).unwrap().kvs[0].value, b"3");
    assert_eq!(
        store.apply(&compact(4), 0).response,
        Err(KvError::Compacted {
            compact_revision: 4
        })
    );
    assert_eq!(
        store.hash_kv(4),
        Err(KvError::Compacted {
            compact_revision: 4
        })
    );
    assert!(store.hash_kv(5).is_ok());
    assert_eq!(
        store.events_between(3, 5),
        Err(KvError::Compacted {
            compact_revision: 4
        })
    );
    let events = store.events_between(4, 5).unwrap();
    assert_eq!(
        events.len(),
        2,
        "the compact revision's own events are kept: {events:?}"
    );
}

#[test]
fn range_sort_limit_and_count() {
    let mut store = KvStore::new(KvConfig::default());
    for (key, value) in [("a", "3"), ("b", "1"), ("c", "2"), ("d", "1")] {
        apply_ok(&mut store, put(key, value));
    }
    apply_ok(&mut store, put("a", "9"));
    let keys = |response: cairn_core::kv::RangeResponse| -> Vec<String> {
        response
            .kvs
            .iter()
            .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
            .collect()
    };
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..RangeRequest::default()
    };
    let limited = RangeRequest {
        limit: 2,
        ..all.clone()
    };
    let response = store.range(&limited).unwrap();
    assert_eq!((response.count, response.more), (4, true));
    assert_eq!(keys(response), ["a", "b"]);
    // NONE with a non-KEY target sorts ascending (etcd's rule).
    let by_value = RangeRequest {
        sort_target: SortTarget::Value,
        ..all.clone()
    };
    assert_eq!(keys(store.range(&by_value).unwrap()), ["b", "d", "c", "a"]);
    let by_mod_descend = RangeRequest {
        sort_target: SortTarget::Mod,
        sort_order: SortOrder::Descend,
        limit: 1,
        ..all.clone()
    };
    let response = store.range(&by_mod_descend).unwrap();
    assert_eq!((response.count, response.more), (4, true));
    assert_eq!(keys(response), ["a"]);
    let count_only = RangeRequest {
        count_only: true,
        limit: 1,
        ..all.clone()
    };
    let response = store.range(&count_only).unwrap();
    assert_eq!(
        (response.count, response.more, response.kvs.len()),
        (4, false, 0)
    );
    let keys_only = RangeRequest {
        keys_only: true,
        ..all.clone()
    };
    assert!(store
        .range(&keys_only)
        .unwrap()
        .kvs
        .iter()
        .all(|kv| kv.value.is_empty()));
    let prefix = RangeRequest {
        key: "a".into(),
        range_end: "c".into(),
        ..all.clone()
    };
    assert_eq!(keys(store.range(&prefix).unwrap()), ["a", "b"]);
    // Filters do not change count.
    let filtered = RangeRequest {
        min_mod_revision: 4,
        ..all.clone()
    };
    let response = store.range(&filtered).unwrap();
    assert_eq!(response.count, 4);
    assert_eq!(keys(response), ["a", "c", "d"]);
    let empty_key = RangeRequest::default();
    assert_eq!(store.range(&empty_key), Err(KvError::KeyNotProvided));
}

#[test]
fn txn_reads_own_writes_and_nested_compares_see_the_start_state() {
    let mut store = KvStore::new(KvConfig::default());
    apply_ok(&mut store, put("a", "old"));
    let nested = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Value("old".into()),
            key: "a".into(),
            range_end: vec![],
        }],
        success: vec![put_op("nested-saw-old", "1")],
        failure: vec![put_op("nested-saw-new", "1")],
    };
    let request = TxnRequest {
        compare: vec![],
        success: vec![
            put_op("a", "new"),
            RequestOp::Range(RangeRequest {
                key: "a".into(),
                ..RangeRequest::default()
            }),
            RequestOp::Txn(nested),
        ],
        failure: vec![],
    };
    let applied = store.apply(&Command::Txn(request), 0);
    let CommandResponse::Txn(TxnResponse {
        succeeded,
        responses,
    }) = applied.response.unwrap()
    else {
        panic!("not a txn response");
    };
    assert!(succeeded);
    let ResponseOp::Range(range) = &responses[1] else {
        panic!("not a range")
    };
    assert_eq!(range.kvs[0].value, b"new");
    assert_eq!(range.kvs[0].mod_revision, 3);
    assert!(get(&store, "nested-saw-old").is_some());
    assert!(get(&store, "nested-saw-new").is_none());
    assert_eq!(applied.revision, 3, "one revision for the whole txn");
    assert_eq!(applied.events.len(), 2);
    // A txn that only reads does not bump the revision.
    let read_only = txn(
        vec![RequestOp::Range(RangeRequest {
            key: "a".into(),
            ..Default::default()
        })],
        vec![],
    );
    assert_eq!(store.apply(&Command::Txn(read_only), 0).revision, 3);
    // A missing key compares as zeroes, except on value.
    let missing = |target| Compare {
        result: CompareResult::Equal,
        target,
        key: "missing".into(),
        range_end: vec![],
    };
    let create_zero = TxnRequest {
        compare: vec![missing(CompareTarget::Create(0))],
        success: vec![],
        failure: vec![],
    };
    let response = apply_ok(&mut store, Command::Txn(create_zero));
    assert!(matches!(
        response,
        CommandResponse::Txn(TxnResponse {
            succeeded: true,
            ..
        })
    ));
    let value_empty = TxnRequest {
        compare: vec![missing(CompareTarget::Value(vec![]))],
        success: vec![],
        failure: vec![],
    };
    let response = apply_ok(&mut store, Command::Txn(value_empty));
    assert!(matches!(
        response,
        CommandResponse::Txn(TxnResponse {
            succeeded: false,
            ..
        })
    ));
}

#[test]
fn txn_duplicate_keys_and_op_limits_follow_etcd() {
    let store = KvStore::new(KvConfig::default());
    let check = |request: TxnRequest| store.validate(&Command::Txn(request));
    assert_eq!(
        check(txn(vec![put_op("a", "1"), put_op("a", "2")], vec![])),
        Err(KvError::DuplicateKey)
    );
    assert_eq!(
        check(txn(vec![put_op("a", "1"), delete_op("a", b"")], vec![])),
        Err(KvError::DuplicateKey)
    );
    assert_eq!(
        check(txn(vec![put_op("b", "1"), delete_op("a", b"c")], vec![])),
        Err(KvError::DuplicateKey)
    );
    // Different branches, overlapping deletes, and (as in etcd) from-key deletes are fine.
    assert_eq!(
        check(txn(vec![put_op("a", "1")], vec![put_op("a", "2")])),
        Ok(())
    );
    assert_eq!(
        check(txn(vec![delete_op("a", b"c"), delete_op("b", b"")], vec![])),
        Ok(())
    );
    assert_eq!(
        check(txn(vec![put_op("b", "1"), delete_op("a", &[0])], vec![])),
        Ok(())
    );
    // Nested: a child's put against the parent's delete, and then/else exclusivity.
    let child = |success, failure| RequestOp::Txn(txn(success, failure));
    assert_eq!(
        check(txn(
            vec![delete_op("a", b""), child(vec![put_op("a", "1")], vec![])],
            vec![]
        )),
        Err(KvError::DuplicateKey)
    );
    assert_eq!(
        check(txn(
            vec![child(vec![put_op("a", "1")], vec![put_op("a", "2")])],
            vec![]
        )),
        Ok(())
    );
    assert_eq!(
        check(txn(
            vec![put_op("a", "0"), child(vec![], vec![put_op("a", "2")])],
            vec![]
        )),
        Err(KvError::DuplicateKey)
    );
    // etcd counts max(compares, success, failure) per level.
    let ops: Vec<RequestOp> = (0..128).map(|i| put_op(&format!("k{i}"), "v")).collect();
    assert_eq!(check(txn(ops.clone(), ops.clone())), Ok(()));
    let mut too_many = ops.clone();
    too_many.push(put_op("k-extra", "v"));
    assert_eq!(check(txn(too_many, vec![])), Err(KvError::TooManyOps));
    // A nested txn gets the budget its parents leave (etcd: maxTxnOps - opc).
    let mut fits: Vec<RequestOp> = ops[..127].to_vec();
    assert_eq!(
        check(txn(vec![child(fits.clone(), vec![])], vec![])),
        Ok(())
    );
    fits.push(put_op("k-extra", "v"));
    assert_eq!(
        check(txn(vec![child(fits, vec![])], vec![])),
        Err(KvError::TooManyOps)
    );
    let empty_compare = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Version(0),
            key: vec![],
            range_end: vec![],
        }],
        success: vec![],
        failure: vec![],
    };
    assert_eq!(check(empty_compare), Err(KvError::KeyNotProvided));
}

#[test]
fn txn_failing_mid_way_rolls_back() {
    // A from-key delete followed by an ignore_value put of a key it deleted
    // passes etcd's duplicate check and fails while running: nothing changes.
    let mut store = KvStore::new(KvConfig::default());
    apply_ok(&mut store, put("b", "1"));
    let hash = store.hash();
    let request = txn(
        vec![
            delete_op("a", &[0]),
            RequestOp::Put(PutRequest {
                key: "b".into(),
                ignore_value: true,
                ..Default::default()
            }),
        ],
        vec![],
    );
    assert_eq!(store.validate(&Command::Txn(request.clone())), Ok(()));
    let applied = store.apply(&Command::Txn(request), 0);
    assert_eq!(applied.response, Err(KvError::KeyNotFound));
    assert_eq!((applied.revision, applied.events.len()), (2, 0));
    assert_eq!(store.hash(), hash);
    store.check_invariants();
}

#[test]
fn leases_bind_keys_and_revoke_deletes_them_in_one_revision() {
    let mut store = KvStore::new(KvConfig::default());
    let grant = |id, ttl| Command::LeaseGrant(LeaseGrantRequest { ttl, id });
    let response = apply_ok(&mut store, grant(5, 1));
    assert!(matches!(response, CommandResponse::LeaseGrant(g) if g.id == 5 && g.ttl == 2));
    assert_eq!(
        store.apply(&grant(5, 10), 0).response,
        Err(KvError::LeaseExists)
    );
    assert_eq!(
        store.apply(&grant(6, 9_000_000_001), 0).response,
        Err(KvError::LeaseTtlTooLarge)
    );
    assert_eq!(
        store.apply(&grant(0, 10), 0).response,
        Err(KvError::LeaseNotFound)
    );
    for key in ["x", "y", "z"] {
        let command = Command::Put(PutRequest {
            key: key.into(),
            lease: 5,
            ..Default::default()
        });
        apply_ok(&mut store, command);
    }
    // Re-putting without the lease detaches it.
    apply_ok(&mut store, put("z", "free"));
    let ttl = store.lease_time_to_live(5, true, 0);
    assert_eq!(ttl.keys, vec![b"x".to_vec(), b"y".to_vec()]);
    assert_eq!(ttl.granted_ttl, 2);
    assert_eq!(store.lease_time_to_live(99, false, 0).ttl, -1);
    let before = store.revision();
    let applied = store.apply(&Command::LeaseRevoke { id: 5 }, 0);
    assert_eq!(applied.response, Ok(CommandResponse::LeaseRevoke));
    assert_eq!(applied.revision, before + 1);
    let deleted: Vec<_> = applied
        .events
        .iter()
        .map(|e| (e.kind, e.kv.key.clone()))
        .collect();
    assert_eq!(
        deleted,
        vec![
            (EventType::Delete, b"x".to_vec()),
            (EventType::Delete, b"y".to_vec())
        ]
    );
    assert!(get(&store, "z").is_some());
    assert_eq!(
        store.apply(&Command::LeaseRevoke { id: 5 }, 0).response,
        Err(KvError::LeaseNotFound)
    );
    assert!(store.leases().is_empty());
}

#[test]
fn lease_deadlines_are_leader_only_and_survive_leader_change_by_checkpoint() {
    let config = KvConfig {
        lease_leader_extension_ms: 0,
        ..KvConfig::default()
    };
    let mut leader = KvStore::new(config.clone());
    let mut follower = KvStore::new(config);
    leader.lease_promote(1_000);
    let grant = Command::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 1 });
    leader.apply(&grant, 1_000);
    follower.apply(&grant, 1_000);
    assert_eq!(follower.lease_renew(1, 2_000), Err(KvError::NotLeader));
    assert!(follower.lease_expired(1_000_000).is_empty());
    assert_eq!(leader.lease_time_to_live(1, false, 4_500).ttl, 6);
    assert_eq!(leader.lease_expired(10_999), Vec::<i64>::new());
    assert_eq!(leader.lease_expired(11_000), vec![1]);
    assert_eq!(leader.lease_renew(1, 11_000), Err(KvError::LeaseNotFound));
    assert_eq!(leader.lease_renew(2, 5_000), Err(KvError::LeaseNotFound));
    assert_eq!(leader.lease_renew(1, 5_000), Ok(10));
    assert!(leader.lease_expired(14_999).is_empty());
    // Checkpoint at 9 s: 6 s remain. A follower promoted later starts from that.
    let checkpoints = leader.lease_checkpoints(9_000);
    assert_eq!(checkpoints[0].remaining_ttl_ms, 6_000);
    let checkpoint = Command::LeaseCheckpoint { checkpoints };
    leader.apply(&checkpoint, 9_000);
    follower.apply(&checkpoint, 9_000);
    assert_eq!(
        leader.hash(),
        follower.hash(),
        "deadlines are not replicated state"
    );
    // Renewing clears the stale remainder through a checkpoint of 0 (etcd).
    assert_eq!(leader.lease_renew(1, 9_500), Ok(10));
    let clear = leader.lease_renewal_checkpoints();
    assert_eq!(
        clear,
        vec![LeaseCheckpoint {
            id: 1,
            remaining_ttl_ms: 0
        }]
    );
    assert!(leader.lease_renewal_checkpoints().is_empty(), "drained");
    leader.lease_demote();
    follower.lease_promote(50_000);
    assert!(follower.lease_expired(55_999).is_empty());
    assert_eq!(follower.lease_expired(56_000), vec![1]);
    let clear = Command::LeaseCheckpoint { checkpoints: clear };
    follower.apply(&clear, 56_000);
    follower.lease_demote();
    follower.lease_promote(60_000);
    assert!(
        follower.lease_expired(69_999).is_empty(),
        "full TTL after the clearing checkpoint"
    );
    assert_eq!(follower.lease_expired(70_000), vec![1]);
}

#[test]
fn txn_checks_run_before_any_write() {
    let mut store = KvStore::new(KvConfig::default());
    apply_ok(&mut store, put("a", "1"));
    let future_read = RequestOp::Range(RangeRequest {
        key: "a".into(),
        revision: 99,
        ..RangeRequest::default()
    });
    let request = txn(vec![put_op("b", "1"), future_read.clone()], vec![]);
    let applied = store.apply(&Command::Txn(request), 0);
    assert_eq!(
        applied.response,
        Err(KvError::FutureRevision {
            current_revision: 2
        })
    );
    assert_eq!((applied.revision, applied.events.len()), (2, 0));
    // Puts are checked before ranges: a missing key for ignore_value wins.
    let ignore = RequestOp::Put(PutRequest {
        key: "missing".into(),
        ignore_value: true,
        ..PutRequest::default()
    });
    let request = txn(vec![future_read, ignore], vec![]);
    assert_eq!(
        store.apply(&Command::Txn(request), 0).response,
        Err(KvError::KeyNotFound)
    );
    let leased = RequestOp::Put(PutRequest {
        key: "c".into(),
        lease: 42,
        ..PutRequest::default()
    });
    let request = txn(vec![put_op("b", "1"), leased], vec![]);
    assert_eq!(
        store.apply(&Command::Txn(request), 0).response,
        Err(KvError::LeaseNotFound)
    );
    assert_eq!(store.revision(), 2);
    // Only the chosen branch is checked.
    let failing_compare = Compare {
        result: CompareResult::Equal,
        target: CompareTarget::Value("other".into()),
        key: "a".into(),
        range_end: vec![],
    };
    let leased = RequestOp::Put(PutRequest {
        key: "c".into(),
        lease: 42,
        ..PutRequest::default()
    });
    let request = TxnRequest {
        compare: vec![failing_compare],
        success: vec![leased],
        failure: vec![put_op("b", "2")],
    };
    let response = apply_ok(&mut store, Command::Txn(request));
    assert!(matches!(
        response,
        CommandResponse::Txn(TxnResponse {
            succeeded: false,
            ..
        })
    ));
    assert_eq!(store.revision(), 3);
}

#[test]
fn range_compare_over_a_prefix_requires_every_key() {
    let mut store = KvStore::new(KvConfig::default());
    apply_ok(&mut store, put("p/1", "x"));
    apply_ok(&mut store, put("p/2", "y"));
    let compare = |value: &str| Compare {
        result: CompareResult::Equal,
        target: CompareTarget::Value(value.into()),
        key: "p/".into(),
        range_end: "p0".into(),
    };
    let succeeded = |store: &mut KvStore, value| {
        let request = TxnRequest {
            compare: vec![compare(value)],
            success: vec![],
            failure: vec![],
        };
        match apply_ok(store, Command::Txn(request)) {
            CommandResponse::Txn(response) => response.succeeded,
            other => panic!("not a txn response: {other:?}"),
        }
    };
    assert!(!succeeded(&mut store, "x"));
    apply_ok(&mut store, put("p/2", "x"));
    assert!(succeeded(&mut store, "x"));
}
