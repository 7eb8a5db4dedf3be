//! Guards snapshot and restore: restore(snapshot(s)) behaves identically to
//! s — same bytes, same hash, same HashKV, same reads at every revision,
//! same watch history, and the same responses, events and hashes for every
//! later command — and a damaged snapshot is refused or restored into a
//! consistent state, never a panic.

mod kv_model;

use cairn_core::kv::{Command, KvConfig, KvStore, LeaseGrantRequest, PutRequest};
use kv_model::{command_strategy, key_strategy, range_strategy};
use proptest::prelude::*;

fn any_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        6 => command_strategy(),
        1 => (1i64..4, 1i64..100).prop_map(|(id, ttl)| Command::LeaseGrant(LeaseGrantRequest { ttl, id })),
        1 => (key_strategy(), 1i64..4).prop_map(|(key, lease)| Command::Put(PutRequest {
            key,
            value: b"leased".to_vec(),
            lease,
            ..PutRequest::default()
        })),
        1 => (1i64..4).prop_map(|id| Command::LeaseRevoke { id }),
    ]
}

fn assert_same(original: &KvStore, restored: &KvStore, ranges: &[cairn_core::kv::RangeRequest]) {
    assert_eq!(original.snapshot(), restored.snapshot());
    assert_eq!(original.hash(), restored.hash());
    assert_eq!(original.revision(), restored.revision());
    assert_eq!(original.compact_revision(), restored.compact_revision());
    assert_eq!(original.leases(), restored.leases());
    for revision in 0..=original.revision() + 1 {
        assert_eq!(original.hash_kv(revision), restored.hash_kv(revision));
        for range in ranges {
            let request = cairn_core::kv::RangeRequest {
                revision,
                ..range.clone()
            };
            assert_eq!(original.range(&request), restored.range(&request));
        }
        assert_eq!(
            original.events_between(revision, original.revision()),
            restored.events_between(revision, restored.revision())
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn restore_of_snapshot_behaves_identically(
        before in prop::collection::vec(any_command(), 0..30),
        after in prop::collection::vec(any_command(), 0..20),
        ranges in prop::collection::vec(range_strategy(0), 1..4),
    ) {
        let mut original = KvStore::new(KvConfig::default());
        for command in &before {
            original.apply(command, 0);
        }
        let mut restored = KvStore::restore(KvConfig::default(), &original.snapshot()).unwrap();
        restored.check_invariants();
        assert_same(&original, &restored, &ranges);
        for command in &after {
            prop_assert_eq!(original.apply(command, 0), restored.apply(command, 0));
        }
        assert_same(&original, &restored, &ranges);
    }

    #[test]
    fn damaged_snapshots_are_refused_or_consistent(
        commands in prop::collection::vec(any_command(), 1..25),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut store = KvStore::new(KvConfig::default());
        for command in &commands {
            store.apply(command, 0);
        }
        let snapshot = store.snapshot();
        let truncated = &snapshot[..cut.index(snapshot.len())];
        prop_assert!(KvStore::restore(KvConfig::default(), truncated).is_err());
        let mut flipped = snapshot.clone();
        let position = flip.index(flipped.len());
        flipped[position] ^= 1 << bit;
        if let Ok(mut restored) = KvStore::restore(KvConfig::default(), &flipped) {
            restored.check_invariants();
            for command in &commands {
                restored.apply(command, 0);
            }
            restored.check_invariants();
        }
    }
}
