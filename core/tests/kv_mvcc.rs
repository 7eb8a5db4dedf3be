//! Guards the MVCC state machine against a naive model of etcd's semantics:
//! random sequences of put, delete, txn and compact must produce the same
//! outcomes, revisions and events as the model, and every Range at every
//! revision (with sort, limit, count, filters, keys_only, count_only) must
//! agree with the model's answer, including the compacted and future errors.

mod kv_model;

use cairn_core::kv::{Command, KvConfig, KvStore, RangeRequest};
use kv_model::{command_strategy, outcome, range_strategy, Model};
use proptest::prelude::*;

/// Checks every range shape at every revision from 0 to one past the current.
fn check_ranges(store: &KvStore, model: &Model, ranges: &[RangeRequest]) {
    for revision in 0..=model.revision() + 1 {
        for range in ranges {
            let request = RangeRequest {
                revision,
                ..range.clone()
            };
            assert_eq!(
                store.range(&request),
                model.range(&request),
                "range {request:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn store_agrees_with_model(
        commands in prop::collection::vec(command_strategy(), 1..40),
        ranges in prop::collection::vec(range_strategy(0), 1..6),
    ) {
        let mut store = KvStore::new(KvConfig::default());
        let mut model = Model::default();
        for (step, command) in commands.iter().enumerate() {
            let applied = store.apply(command, 0);
            let expected = model.apply(command);
            prop_assert_eq!(outcome(&applied.response), expected, "step {} {:?}", step, command);
            prop_assert_eq!(applied.revision, model.revision());
            prop_assert_eq!(store.revision(), model.revision());
            prop_assert_eq!(store.compact_revision(), model.compact_revision);
            let new_events = if matches!(command, Command::Compact(_)) || applied.events.is_empty() {
                Vec::new()
            } else {
                model.events[model.revision() as usize].clone()
            };
            prop_assert_eq!(&applied.events, &new_events, "events of step {}", step);
            if step % 8 == 7 {
                check_ranges(&store, &model, &ranges);
            }
        }
        store.check_invariants();
        check_ranges(&store, &model, &ranges);
        // Catch-up reads of history agree with the model from the compact revision on.
        let from = model.compact_revision.max(1);
        prop_assert_eq!(
            store.events_between(from, model.revision()).unwrap(),
            model.events_between(from, model.revision())
        );
        if model.compact_revision > 1 {
            prop_assert!(store.events_between(model.compact_revision - 1, model.revision()).is_err());
        }
    }
}
