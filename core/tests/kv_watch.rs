//! Guards the watch guarantees: a watch started at any revision receives
//! exactly the model history's events from that revision on (filtered by
//! its range and filters, prev_kv only when asked), in order, without gaps
//! or duplicates, with each revision's events in one response (or in
//! fragments marked as such), across compaction and slow streams. It is
//! cancelled with compact_revision only when the next revision it needed was
//! compacted, after its created response; a progress answer's revision
//! never runs ahead of the events delivered to its stream.

mod kv_model;

use std::collections::BTreeMap;

use cairn_core::kv::watch::WatchConfig;
use cairn_core::kv::{
    Command, Event, EventType, KvConfig, KvStore, Revision, StreamId, WatchCreateRequest,
    WatchFilter, WatchHub, WatchResponse,
};
use kv_model::{command_strategy, in_range, key_strategy, range_end_strategy, Model};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Action {
    Apply(Command),
    Watch {
        stream: StreamId,
        start: Revision,
        request: WatchCreateRequest,
    },
    Poll(usize),
    Cancel {
        stream: StreamId,
        pick: usize,
    },
    Progress(StreamId),
    ProgressNotify,
    /// Feeds the applied but not yet fed revisions to the hub (the driver
    /// may lag behind the store).
    Feed,
    /// Loses the unfed revisions (a driver that skipped on_applied): the
    /// hub must notice the gap and catch up from history.
    DropFeed,
}

fn action_strategy() -> impl Strategy<Value = Action> {
    let watch = (
        0u64..3,
        prop_oneof![1 => Just(0i64), 3 => 1i64..30],
        key_strategy(),
        range_end_strategy(),
        any::<(bool, bool, bool, bool, bool)>(),
    )
        .prop_map(|(stream, start, key, range_end, flags)| {
            let (no_put, no_delete, prev_kv, fragment, progress_notify) = flags;
            let mut filters = Vec::new();
            if no_put {
                filters.push(WatchFilter::NoPut);
            }
            if no_delete && !no_put {
                filters.push(WatchFilter::NoDelete);
            }
            // Bounded ranges must not be empty (etcd refuses those).
            let range_end = if range_end.len() > 1 || (range_end.len() == 1 && range_end != [0]) {
                if range_end > key {
                    range_end
                } else {
                    Vec::new()
                }
            } else {
                range_end
            };
            let request = WatchCreateRequest {
                key,
                range_end,
                start_revision: 0,
                progress_notify,
                filters,
                prev_kv,
                watch_id: 0,
                fragment,
            };
            Action::Watch {
                stream,
                start,
                request,
            }
        });
    prop_oneof![
        8 => command_strategy().prop_map(Action::Apply),
        3 => watch,
        3 => (1usize..6).prop_map(Action::Poll),
        1 => (0u64..3, any::<usize>()).prop_map(|(stream, pick)| Action::Cancel { stream, pick }),
        1 => (0u64..3).prop_map(Action::Progress),
        1 => Just(Action::ProgressNotify),
        6 => Just(Action::Feed),
        1 => Just(Action::DropFeed),
    ]
}

/// What the test knows about one watch.
#[derive(Debug)]
struct Record {
    request: WatchCreateRequest,
    start: Revision,
    responses: Vec<WatchResponse>,
    canceled_by_client: bool,
}

impl Record {
    fn expected(&self, model: &Model) -> Vec<Event> {
        let request = &self.request;
        model
            .events_between(self.start, model.revision())
            .into_iter()
            .filter(|event| in_range(&event.kv.key, &request.key, &request.range_end))
            .filter(|event| match event.kind {
                EventType::Put => !request.filters.contains(&WatchFilter::NoPut),
                EventType::Delete => !request.filters.contains(&WatchFilter::NoDelete),
            })
            .map(|mut event| {
                if !request.prev_kv {
                    event.prev_kv = None;
                }
                event
            })
            .collect()
    }

    fn received(&self) -> Vec<Event> {
        self.responses
            .iter()
            .flat_map(|response| response.events.clone())
            .collect()
    }

    fn compacted(&self) -> Option<Revision> {
        self.responses
            .iter()
            .find(|r| r.canceled && r.compact_revision != 0)
            .map(|r| r.compact_revision)
    }
}

struct Harness {
    store: KvStore,
    model: Model,
    hub: WatchHub,
    records: BTreeMap<(StreamId, i64), Record>,
    unfed: Vec<Vec<Event>>,
}

impl Harness {
    fn route(&mut self, responses: Vec<(StreamId, WatchResponse)>) {
        for (stream, response) in responses {
            if response.watch_id == -1 {
                assert!(
                    !response.canceled,
                    "refused watch in a valid test: {response:?}"
                );
                self.check_progress(stream, response.header_revision);
                continue;
            }
            let record = self
                .records
                .get_mut(&(stream, response.watch_id))
                .unwrap_or_else(|| panic!("response for unknown watch {response:?}"));
            if record.responses.is_empty() {
                assert!(
                    response.created,
                    "first response is not 'created': {response:?}"
                );
            } else {
                assert!(!response.created, "created twice: {response:?}");
                let last = record.responses.last().unwrap();
                assert!(!last.canceled, "response after cancel: {response:?}");
            }
            record.responses.push(response);
        }
    }

    /// Every event up to `revision` must already be with each watch of `stream`.
    fn check_progress(&self, stream: StreamId, revision: Revision) {
        assert!(
            revision <= self.store.revision(),
            "progress {revision} ahead of the store"
        );
        for ((record_stream, id), record) in &self.records {
            // A watch whose created response is not routed yet was created
            // after this progress answer was queued.
            let done = record.canceled_by_client
                || record.responses.is_empty()
                || record.responses.last().is_some_and(|r| r.canceled);
            if *record_stream != stream || done {
                continue;
            }
            let expected: Vec<Event> = record
                .expected(&self.model)
                .into_iter()
                .filter(|event| event.kv.mod_revision <= revision)
                .collect();
            let received = record.received();
            assert!(
                received.len() >= expected.len() && received[..expected.len()] == expected[..],
                "progress {revision} on stream {stream} before watch {id} got its events"
            );
        }
    }

    fn feed(&mut self) {
        for events in std::mem::take(&mut self.unfed) {
            self.hub.on_applied(&self.store, &events);
        }
    }

    fn poll(&mut self, responses_max: usize) {
        let responses = self.hub.poll(&self.store, responses_max);
        self.route(responses);
        self.hub.check_invariants();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn watchers_receive_exactly_the_history(
        actions in prop::collection::vec(action_strategy(), 1..60),
        queue_max in 1usize..4,
        fragment_bytes_max in prop_oneof![Just(40usize), Just(1 << 20)],
    ) {
        let config = WatchConfig {
            stream_queue_responses_max: queue_max,
            catch_up_revisions_max: 3,
            fragment_bytes_max,
        };
        let mut harness = Harness {
            store: KvStore::new(KvConfig::default()),
            model: Model::default(),
            hub: WatchHub::new(config),
            records: BTreeMap::new(),
            unfed: Vec::new(),
        };
        for action in actions {
            match action {
                Action::Apply(command) => {
                    let applied = harness.store.apply(&command, 0);
                    let _ = harness.model.apply(&command);
                    if !applied.events.is_empty() {
                        harness.unfed.push(applied.events);
                    }
                }
                Action::Watch { stream, start, request } => {
                    let request = WatchCreateRequest { start_revision: start, ..request };
                    let id = harness.hub.create(&harness.store, stream, request.clone()).unwrap();
                    let effective = if start == 0 { harness.store.revision() + 1 } else { start };
                    let record = Record { request, start: effective, responses: vec![], canceled_by_client: false };
                    prop_assert!(harness.records.insert((stream, id), record).is_none(), "ID reused");
                }
                Action::Poll(max) => harness.poll(max),
                Action::Cancel { stream, pick } => {
                    let live: Vec<i64> = harness.records.iter()
                        .filter(|((s, _), r)| *s == stream && !r.canceled_by_client)
                        .map(|((_, id), _)| *id)
                        .collect();
                    if !live.is_empty() {
                        let id = live[pick % live.len()];
                        harness.hub.cancel(stream, id);
                        // Route what was queued before, then drop the record's future.
                        harness.records.get_mut(&(stream, id)).unwrap().canceled_by_client = true;
                    }
                }
                Action::Progress(stream) => harness.hub.request_progress(&harness.store, stream),
                Action::ProgressNotify => harness.hub.progress_notify_all(&harness.store),
                Action::Feed => harness.feed(),
                Action::DropFeed => harness.unfed.clear(),
            }
        }
        // One more fed revision, so a hub that lost revisions to DropFeed
        // sees the gap (a real driver feeds every revision).
        let last = Command::Put(cairn_core::kv::PutRequest {
            key: b"a".to_vec(),
            value: b"last".to_vec(),
            ..Default::default()
        });
        let applied = harness.store.apply(&last, 0);
        harness.model.apply(&last).unwrap();
        harness.unfed.push(applied.events);
        harness.feed();
        let mut rounds = 0;
        while harness.hub.has_queued() || harness.hub.has_unsynced() {
            harness.poll(16);
            rounds += 1;
            prop_assert!(rounds < 10_000, "watch hub does not drain");
        }
        for ((stream, id), record) in &harness.records {
            let expected = record.expected(&harness.model);
            let received = record.received();
            prop_assert!(
                received.len() <= expected.len() && received[..] == expected[..received.len()],
                "watch {}/{} got {:?}, expected a prefix of {:?}", stream, id, received, expected
            );
            if let Some(compact_revision) = record.compacted() {
                // The watch had delivered everything before `position`, so
                // its next revision was at least that: it must be compacted.
                let position = received.last().map_or(record.start, |e| e.kv.mod_revision + 1);
                prop_assert!(
                    position.max(record.start) < compact_revision,
                    "watch {}/{} canceled at {} though it was at {}",
                    stream, id, compact_revision, position
                );
            } else if !record.canceled_by_client {
                prop_assert_eq!(received.len(), expected.len(), "watch {}/{} incomplete", stream, id);
            }
            // One revision never spans two responses unless the first is a fragment.
            let mut previous: Option<(Revision, bool)> = None;
            for response in record.responses.iter().filter(|r| !r.events.is_empty()) {
                let first = response.events[0].kv.mod_revision;
                if let Some((last, fragment)) = previous {
                    prop_assert!(last < first || fragment, "revision {} split without fragment", last);
                }
                let last = response.events.last().unwrap().kv.mod_revision;
                previous = Some((last, response.fragment));
            }
        }
    }
}

#[test]
fn compacted_start_is_created_then_canceled_with_compact_revision() {
    let mut store = KvStore::new(KvConfig::default());
    let mut hub = WatchHub::default();
    for value in ["1", "2", "3"] {
        let put = cairn_core::kv::PutRequest {
            key: "k".into(),
            value: value.into(),
            ..Default::default()
        };
        let applied = store.apply(&Command::Put(put), 0);
        hub.on_applied(&store, &applied.events);
    }
    let compact = cairn_core::kv::CompactionRequest {
        revision: 3,
        physical: false,
    };
    store.apply(&Command::Compact(compact), 0);
    let request = WatchCreateRequest {
        key: "k".into(),
        start_revision: 2,
        ..Default::default()
    };
    let id = hub.create(&store, 7, request).unwrap();
    assert_eq!(id, 0, "etcd assigns watch IDs from 0");
    let responses = hub.poll(&store, 10);
    assert_eq!(responses.len(), 2);
    assert!(responses[0].1.created && !responses[0].1.canceled);
    assert!(responses[1].1.canceled);
    assert_eq!(responses[1].1.compact_revision, 3);
    // At the compact revision itself, the watch is served (with that revision's events).
    let request = WatchCreateRequest {
        key: "k".into(),
        start_revision: 3,
        ..Default::default()
    };
    assert_eq!(hub.create(&store, 7, request).unwrap(), 1);
    let responses = hub.poll(&store, 10);
    assert_eq!(responses.len(), 2);
    let revisions: Vec<_> = responses[1]
        .1
        .events
        .iter()
        .map(|e| e.kv.mod_revision)
        .collect();
    assert_eq!(revisions, vec![3, 4]);
    // Refusals are answered in the stream.
    let duplicate = WatchCreateRequest {
        key: "k".into(),
        watch_id: 1,
        ..Default::default()
    };
    assert!(hub.create(&store, 7, duplicate).is_err());
    let empty = WatchCreateRequest {
        key: "k".into(),
        range_end: "a".into(),
        ..Default::default()
    };
    assert!(hub.create(&store, 7, empty).is_err());
    let responses = hub.poll(&store, 10);
    assert_eq!(responses.len(), 2);
    assert!(responses
        .iter()
        .all(|(_, r)| r.created && r.canceled && r.watch_id == -1));
    assert_eq!(
        responses[0].1.cancel_reason,
        "mvcc: duplicate watch ID provided on the WatchStream"
    );
    assert_eq!(responses[1].1.cancel_reason, "mvcc: watcher range is empty");
    // A progress request on a synced stream is answered at once with watch ID -1.
    hub.request_progress(&store, 7);
    let responses = hub.poll(&store, 10);
    assert_eq!(responses.len(), 1);
    assert_eq!(
        (responses[0].1.watch_id, responses[0].1.header_revision),
        (-1, 4)
    );
    // Cancel answers canceled.
    hub.cancel(7, 1);
    let responses = hub.poll(&store, 10);
    assert_eq!(responses.len(), 1);
    assert!(responses[0].1.canceled && responses[0].1.watch_id == 1);
}
