//! [`WatchHub`]: every watch of a node, fed from applied revisions and from
//! history for catch-up. Pure: the driver routes its outputs to streams.
//!
//! The model is etcd's watchable store. A watch is *synced* when it waits
//! for revisions not applied yet: [`WatchHub::on_applied`] hands it each new
//! revision's events as one response. Otherwise it is *unsynced* and
//! [`WatchHub::poll`] catches it up from the store's history in batches of
//! whole revisions, after which it joins the synced path. A watch created
//! with start revision 0 (or above the current one) starts synced; one at
//! or below the current revision starts unsynced; one whose next revision
//! falls below the compact revision is answered "canceled" with
//! `compact_revision` set (after its "created", as etcd does).
//!
//! Guarantees per watch: events in revision order, each exactly once, all
//! events of one revision in one response (unless the watch asked for
//! fragments), none after its cancel. Memory is bounded: each stream's
//! queue holds at most [`WatchConfig::stream_queue_responses_max`] event
//! responses; a synced watch whose stream is full becomes unsynced (etcd's
//! "victim") and later catches up from history, where catch-up runs only
//! while the queue has room.
//!
//! Responses are queued per stream in the order they must be sent; control
//! responses (created, canceled, progress) are never dropped (there is one
//! per client request or timer tick).
//!
//! Progress: a stream-wide progress request is answered (watch ID -1) once
//! every watch of the stream is synced, with a revision through which the
//! stream has all its events — etcd 3.5's corrected behaviour; 3.4 answered
//! at once with the current revision even while watches were catching up.
//! A watch may start at the compact revision itself: the store keeps that
//! revision's events through compaction, so it gets all of them (etcd loses
//! that revision's deletes and prev_kvs there).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::error::KvError;
use super::mvcc::KeyRange;
use super::request::{Event, EventType, Revision, WatchCreateRequest, WatchFilter, WatchResponse};
use super::store::KvStore;

/// A client watch stream, as numbered by the driver.
pub type StreamId = u64;

/// The watch ID of a stream-wide progress response.
pub const PROGRESS_WATCH_ID: i64 = -1;

/// Bytes counted per event on top of its keys and values when sizing
/// fragments.
const EVENT_OVERHEAD_BYTES: usize = 32;

/// Bounds of the watch hub.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// Event responses queued per stream before synced watches of that
    /// stream fall back to catch-up (control responses are not counted).
    pub stream_queue_responses_max: usize,
    /// At most this many revisions per catch-up response (etcd: 1000).
    pub catch_up_revisions_max: i64,
    /// A fragmenting watch splits responses above this many bytes (etcd
    /// uses its max request bytes, 1.5 MiB).
    pub fragment_bytes_max: usize,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            stream_queue_responses_max: 1024,
            catch_up_revisions_max: 1000,
            fragment_bytes_max: 1024 * 1024 + 512 * 1024,
        }
    }
}

/// One watch.
#[derive(Clone, Debug)]
struct Watch {
    id: i64,
    range: KeyRange,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    progress_notify: bool,
    fragment: bool,
    // Unsynced: the first revision not yet delivered (etcd's minRev).
    // Synced: the first revision it may be delivered; it has everything up
    // to the hub's dispatched revision, so its position is
    // max(next_revision, dispatched_revision + 1).
    next_revision: Revision,
    synced: bool,
    // Events were sent since the last periodic progress notification.
    sent_since_progress: bool,
}

impl Watch {
    /// The first revision this watch has not been sent.
    fn position(&self, dispatched: Revision) -> Revision {
        if self.synced {
            self.next_revision.max(dispatched + 1)
        } else {
            self.next_revision
        }
    }

    fn wants_key(&self, key: &[u8]) -> bool {
        self.range.contains(key)
    }

    /// The event as this watch delivers it, or None when filtered out.
    fn deliver(&self, event: &Event) -> Option<Event> {
        let dropped = match event.kind {
            EventType::Put => self.no_put,
            EventType::Delete => self.no_delete,
        };
        if dropped || !self.wants_key(&event.kv.key) {
            return None;
        }
        let mut event = event.clone();
        if !self.prev_kv {
            event.prev_kv = None;
        }
        Some(event)
    }
}

/// One client stream: its watches and its outgoing queue.
#[derive(Clone, Debug, Default)]
struct Stream {
    watches: BTreeMap<i64, Watch>,
    // Auto-assigned IDs start at 0 (etcd's AutoWatchID is 0).
    next_watch_id: i64,
    queue: VecDeque<WatchResponse>,
    // Event responses in `queue` (the bounded part).
    queued_event_responses: usize,
    // A progress request waits for every watch to be synced.
    progress_requested: bool,
}

impl Stream {
    fn has_room(&self, config: &WatchConfig) -> bool {
        self.queued_event_responses < config.stream_queue_responses_max
    }

    fn push_control(&mut self, response: WatchResponse) {
        self.queue.push_back(response);
    }

    fn push_events(
        &mut self,
        config: &WatchConfig,
        watch: &Watch,
        header: Revision,
        events: Vec<Event>,
    ) {
        for response in fragments(config, watch, header, events) {
            self.queued_event_responses += 1;
            self.queue.push_back(response);
        }
    }

    fn pop(&mut self) -> Option<WatchResponse> {
        let response = self.queue.pop_front()?;
        if !response.events.is_empty() {
            self.queued_event_responses -= 1;
        }
        Some(response)
    }

    /// The revision through which every watch of the stream has been sent
    /// all its events.
    fn progress_revision(&self, current: Revision, dispatched: Revision) -> Revision {
        let delivered = self
            .watches
            .values()
            .map(|watch| watch.position(dispatched) - 1)
            .min();
        delivered.map_or(current, |delivered| delivered.min(current))
    }

    fn all_synced(&self) -> bool {
        self.watches.values().all(|watch| watch.synced)
    }
}

fn event_bytes(event: &Event) -> usize {
    let prev = event
        .prev_kv
        .as_ref()
        .map_or(0, |kv| kv.key.len() + kv.value.len());
    event.kv.key.len() + event.kv.value.len() + prev + EVENT_OVERHEAD_BYTES
}

/// One response, or etcd's fragments of it when the watch asked for them
/// and it is too large: every fragment but the last has `fragment` set, and
/// each holds at least one event.
fn fragments(
    config: &WatchConfig,
    watch: &Watch,
    header_revision: Revision,
    events: Vec<Event>,
) -> Vec<WatchResponse> {
    let response = |events: Vec<Event>, fragment: bool| WatchResponse {
        header_revision,
        watch_id: watch.id,
        fragment,
        events,
        ..WatchResponse::default()
    };
    let total: usize = events.iter().map(event_bytes).sum();
    if !watch.fragment || events.len() < 2 || total < config.fragment_bytes_max {
        return vec![response(events, false)];
    }
    let mut responses = Vec::new();
    let mut current: Vec<Event> = Vec::new();
    let mut current_bytes = 0;
    for event in events {
        let bytes = event_bytes(&event);
        if !current.is_empty() && current_bytes + bytes >= config.fragment_bytes_max {
            responses.push(response(std::mem::take(&mut current), true));
            current_bytes = 0;
        }
        current_bytes += bytes;
        current.push(event);
    }
    responses.push(response(current, false));
    responses
}

/// All watches on one node.
#[derive(Debug)]
pub struct WatchHub {
    config: WatchConfig,
    streams: BTreeMap<StreamId, Stream>,
    // Every revision up to this one has been dispatched to synced watches.
    dispatched_revision: Revision,
    // Watches by interest, so a revision visits only the watches it concerns:
    // single-key watches by key, all others in `ranged`.
    single_key: BTreeMap<Vec<u8>, BTreeSet<(StreamId, i64)>>,
    ranged: BTreeSet<(StreamId, i64)>,
    // The store revision last seen, for responses issued without a store.
    revision: Revision,
    // Streams after this one are drained first by the next poll (fairness).
    poll_after: Option<StreamId>,
}

impl Default for WatchHub {
    fn default() -> Self {
        WatchHub::new(WatchConfig::default())
    }
}

impl WatchHub {
    /// An empty hub.
    pub fn new(config: WatchConfig) -> WatchHub {
        WatchHub {
            config,
            streams: BTreeMap::new(),
            dispatched_revision: 0,
            single_key: BTreeMap::new(),
            ranged: BTreeSet::new(),
            revision: 0,
            poll_after: None,
        }
    }

    fn index_insert(&mut self, stream: StreamId, id: i64, range: &KeyRange) {
        match range {
            KeyRange::Single(key) => {
                self.single_key
                    .entry(key.clone())
                    .or_default()
                    .insert((stream, id));
            }
            KeyRange::Bounded(..) | KeyRange::From(_) => {
                self.ranged.insert((stream, id));
            }
        }
    }

    fn index_remove(&mut self, stream: StreamId, id: i64, range: &KeyRange) {
        match range {
            KeyRange::Single(key) => {
                if let Some(watchers) = self.single_key.get_mut(key) {
                    watchers.remove(&(stream, id));
                    if watchers.is_empty() {
                        self.single_key.remove(key);
                    }
                }
            }
            KeyRange::Bounded(..) | KeyRange::From(_) => {
                self.ranged.remove(&(stream, id));
            }
        }
    }

    /// Registers a watch; its `created` response (or a cancel) appears in `poll`.
    ///
    /// As in etcd, an empty key means `"\0"`, range_end `"\0"` means every
    /// key from `key` on, ID 0 asks for the next free ID (starting at 0), and
    /// start revision 0 means "after the current revision". A request etcd
    /// refuses (empty range, duplicate ID) is answered in the stream with
    /// `created` and `canceled` set, watch ID -1 and the error as
    /// cancel_reason, and returned as the error.
    pub fn create(
        &mut self,
        store: &KvStore,
        stream: StreamId,
        request: WatchCreateRequest,
    ) -> Result<i64, KvError> {
        let current = store.revision();
        self.revision = current;
        if self.watch_count() == 0 {
            // Nothing was waiting for earlier revisions.
            self.dispatched_revision = self.dispatched_revision.max(current);
        }
        let entry = self.streams.entry(stream).or_default();
        let key = if request.key.is_empty() {
            vec![0]
        } else {
            request.key.clone()
        };
        let range = KeyRange::new(&key, &request.range_end);
        let checked = match &range {
            KeyRange::Bounded(start, end) if start >= end => Err(KvError::WatchRangeEmpty),
            _ if request.watch_id != 0 && entry.watches.contains_key(&request.watch_id) => {
                Err(KvError::WatchDuplicateId {
                    watch_id: request.watch_id,
                })
            }
            _ => Ok(()),
        };
        if let Err(error) = checked {
            entry.push_control(WatchResponse {
                header_revision: current,
                watch_id: -1,
                created: true,
                canceled: true,
                cancel_reason: error.to_string(),
                ..WatchResponse::default()
            });
            return Err(error);
        }
        let id = if request.watch_id == 0 {
            while entry.watches.contains_key(&entry.next_watch_id) {
                entry.next_watch_id += 1;
            }
            entry.next_watch_id += 1;
            entry.next_watch_id - 1
        } else {
            request.watch_id
        };
        // NB: etcd leaves a negative start revision in a broken state; it is
        // read here as "from the first revision".
        let start = request.start_revision;
        let synced = start == 0 || start > current;
        let next_revision = if synced {
            start.max(current + 1)
        } else {
            start.max(1)
        };
        let watch = Watch {
            id,
            range: range.clone(),
            no_put: request.filters.contains(&WatchFilter::NoPut),
            no_delete: request.filters.contains(&WatchFilter::NoDelete),
            prev_kv: request.prev_kv,
            progress_notify: request.progress_notify,
            fragment: request.fragment,
            next_revision,
            synced,
            sent_since_progress: false,
        };
        entry.watches.insert(id, watch);
        entry.push_control(WatchResponse {
            header_revision: current,
            watch_id: id,
            created: true,
            ..WatchResponse::default()
        });
        self.index_insert(stream, id, &range);
        tracing::debug!(stream, watch_id = id, start, synced, "watch created");
        Ok(id)
    }

    /// Cancels a watch: its queued responses are dropped and a `canceled`
    /// response is queued. An unknown ID is ignored (etcd sends nothing).
    pub fn cancel(&mut self, stream: StreamId, watch_id: i64) {
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        let Some(watch) = entry.watches.remove(&watch_id) else {
            return;
        };
        let before = entry.queue.len();
        entry
            .queue
            .retain(|response| response.watch_id != watch_id || response.events.is_empty());
        entry.queued_event_responses -= before - entry.queue.len();
        entry.push_control(WatchResponse {
            header_revision: self.revision,
            watch_id,
            canceled: true,
            ..WatchResponse::default()
        });
        self.index_remove(stream, watch_id, &watch.range);
        tracing::debug!(stream, watch_id, "watch canceled");
    }

    /// Drops every watch of a closed stream.
    pub fn close_stream(&mut self, stream: StreamId) {
        if let Some(entry) = self.streams.remove(&stream) {
            for (id, watch) in entry.watches {
                self.index_remove(stream, id, &watch.range);
            }
        }
    }

    /// Queues a progress answer (watch_id -1) for a stream: at once when
    /// every watch of the stream is synced, otherwise as soon as they are.
    /// Its header revision is one through which the stream has received
    /// every event.
    pub fn request_progress(&mut self, store: &KvStore, stream: StreamId) {
        self.revision = store.revision();
        let dispatched = self.dispatched_revision;
        let entry = self.streams.entry(stream).or_default();
        entry.progress_requested = true;
        Self::answer_progress(entry, store.revision(), dispatched);
    }

    fn answer_progress(entry: &mut Stream, current: Revision, dispatched: Revision) {
        if entry.progress_requested && entry.all_synced() {
            entry.progress_requested = false;
            let header_revision = entry.progress_revision(current, dispatched);
            entry.push_control(WatchResponse {
                header_revision,
                watch_id: PROGRESS_WATCH_ID,
                ..WatchResponse::default()
            });
        }
    }

    /// Periodic progress (etcd's progress_notify): every synced watch that
    /// asked for it and was sent no events since the last call gets an
    /// empty response with the revision it has reached. Call on a timer.
    pub fn progress_notify_all(&mut self, store: &KvStore) {
        let current = store.revision();
        self.revision = current;
        let dispatched = self.dispatched_revision;
        for entry in self.streams.values_mut() {
            let mut notified = Vec::new();
            for watch in entry.watches.values_mut() {
                if !watch.progress_notify {
                    continue;
                }
                if watch.synced && !watch.sent_since_progress {
                    notified.push(WatchResponse {
                        header_revision: (watch.position(dispatched) - 1).min(current),
                        watch_id: watch.id,
                        ..WatchResponse::default()
                    });
                }
                watch.sent_since_progress = false;
            }
            for response in notified {
                if entry.has_room(&self.config) {
                    entry.push_control(response);
                }
            }
        }
    }

    /// Feeds the events of newly applied revisions (normally one revision
    /// per call, as [`super::store::Applied::events`]). Synced watches get
    /// one response per revision. Revisions already fed are ignored; if
    /// revisions were skipped, every synced watch catches up from history
    /// instead; a synced watch whose stream is full does too.
    pub fn on_applied(&mut self, store: &KvStore, events: &[Event]) {
        self.revision = store.revision();
        let mut rest = events;
        while let Some(first) = rest.first() {
            let revision = first.kv.mod_revision;
            let split = rest.iter().position(|e| e.kv.mod_revision != revision);
            let (batch, later) = rest.split_at(split.unwrap_or(rest.len()));
            self.dispatch(revision, batch);
            rest = later;
        }
    }

    /// Turns every synced watch unsynced at its position.
    fn desync_all(&mut self) {
        let dispatched = self.dispatched_revision;
        for entry in self.streams.values_mut() {
            for watch in entry.watches.values_mut() {
                if watch.synced {
                    watch.next_revision = watch.position(dispatched);
                    watch.synced = false;
                }
            }
        }
    }

    fn dispatch(&mut self, revision: Revision, events: &[Event]) {
        if revision <= self.dispatched_revision {
            return;
        }
        if revision > self.dispatched_revision + 1 {
            tracing::debug!(
                revision,
                dispatched = self.dispatched_revision,
                "revisions skipped; synced watches catch up"
            );
            self.desync_all();
        }
        self.dispatched_revision = revision;
        let mut candidates: BTreeSet<(StreamId, i64)> = self.ranged.clone();
        for event in events {
            if let Some(watchers) = self.single_key.get(&event.kv.key) {
                candidates.extend(watchers.iter().copied());
            }
        }
        for (stream, id) in candidates {
            let entry = self.streams.get_mut(&stream).expect("indexed stream");
            let room = entry.has_room(&self.config);
            let watch = entry.watches.get_mut(&id).expect("indexed watch");
            if !watch.synced || watch.next_revision > revision {
                continue;
            }
            let delivered: Vec<Event> = events.iter().filter_map(|e| watch.deliver(e)).collect();
            if delivered.is_empty() {
                continue;
            }
            if !room {
                tracing::debug!(watch_id = id, revision, "stream full; watch unsynced");
                watch.synced = false;
                watch.next_revision = revision;
                continue;
            }
            watch.next_revision = revision + 1;
            watch.sent_since_progress = true;
            let watch = watch.clone();
            entry.push_events(&self.config, &watch, revision, delivered);
        }
    }

    /// Responses ready to send, at most `responses_max`, in order per stream
    /// and round-robin across streams. Unsynced (catching-up) watches are
    /// advanced from the store's history first.
    pub fn poll(
        &mut self,
        store: &KvStore,
        responses_max: usize,
    ) -> Vec<(StreamId, WatchResponse)> {
        self.revision = store.revision();
        let stream_ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for stream in &stream_ids {
            self.catch_up(store, *stream);
        }
        let after = self.poll_after;
        let mut order: Vec<StreamId> = stream_ids
            .iter()
            .copied()
            .filter(|s| Some(*s) > after)
            .collect();
        order.extend(stream_ids.iter().copied().filter(|s| Some(*s) <= after));
        let mut responses = Vec::new();
        while responses.len() < responses_max {
            let mut progressed = false;
            for stream in &order {
                if responses.len() >= responses_max {
                    break;
                }
                let entry = self.streams.get_mut(stream).expect("listed stream");
                if let Some(response) = entry.pop() {
                    responses.push((*stream, response));
                    self.poll_after = Some(*stream);
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        #[cfg(debug_assertions)]
        self.check_invariants();
        responses
    }

    /// Like [`WatchHub::poll`] for one stream only (for a driver that
    /// applies backpressure per stream).
    pub fn poll_stream(
        &mut self,
        store: &KvStore,
        stream: StreamId,
        responses_max: usize,
    ) -> Vec<WatchResponse> {
        self.revision = store.revision();
        self.catch_up(store, stream);
        let Some(entry) = self.streams.get_mut(&stream) else {
            return Vec::new();
        };
        let mut responses = Vec::new();
        while responses.len() < responses_max {
            match entry.pop() {
                Some(response) => responses.push(response),
                None => break,
            }
        }
        responses
    }

    /// Advances each unsynced watch of `stream` by one batch while the
    /// stream has room, then answers a waiting progress request.
    fn catch_up(&mut self, store: &KvStore, stream: StreamId) {
        let current = store.revision();
        let compact_revision = store.compact_revision();
        let dispatched = self.dispatched_revision;
        let config = &self.config;
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        let unsynced: Vec<i64> = entry
            .watches
            .values()
            .filter(|watch| !watch.synced)
            .map(|watch| watch.id)
            .collect();
        let mut compacted = Vec::new();
        for id in unsynced {
            let room = entry.has_room(config);
            let watch = entry.watches.get_mut(&id).expect("unsynced watch");
            if watch.next_revision < compact_revision {
                let watch = entry.watches.remove(&id).expect("unsynced watch");
                // etcd sends this with revision 0 in the header.
                entry.push_control(WatchResponse {
                    header_revision: 0,
                    watch_id: id,
                    canceled: true,
                    compact_revision,
                    ..WatchResponse::default()
                });
                tracing::debug!(stream, watch_id = id, compact_revision, "watch compacted");
                compacted.push((id, watch.range));
                continue;
            }
            if watch.next_revision > current {
                watch.synced = true;
                continue;
            }
            if !room {
                continue;
            }
            let to = current.min(watch.next_revision + config.catch_up_revisions_max - 1);
            let mut events = Vec::new();
            let visited = store.visit_events(
                watch.next_revision,
                to,
                |key| watch.wants_key(key),
                |event| events.extend(watch.deliver(&event)),
            );
            visited.expect("catch-up range checked against the store");
            // Once synced, revisions up to `to` that are dispatched later
            // are skipped: next_revision is the watch's floor.
            watch.next_revision = to + 1;
            watch.synced = to == current;
            if !events.is_empty() {
                watch.sent_since_progress = true;
                let watch = watch.clone();
                entry.push_events(config, &watch, current, events);
            }
        }
        Self::answer_progress(entry, current, dispatched);
        for (id, range) in compacted {
            self.index_remove(stream, id, &range);
        }
    }

    /// After the store was replaced (a snapshot was restored), every watch
    /// catches up from the new store.
    pub fn on_store_reset(&mut self, store: &KvStore) {
        self.revision = store.revision();
        self.desync_all();
        self.dispatched_revision = store.revision();
    }

    /// Whether any response is queued.
    pub fn has_queued(&self) -> bool {
        self.streams.values().any(|entry| !entry.queue.is_empty())
    }

    /// Whether any watch is catching up from history (poll has work).
    pub fn has_unsynced(&self) -> bool {
        self.streams.values().any(|entry| !entry.all_synced())
    }

    /// The number of watches across all streams.
    pub fn watch_count(&self) -> usize {
        self.streams.values().map(|entry| entry.watches.len()).sum()
    }

    /// O(n) consistency checks.
    pub fn check_invariants(&self) {
        let mut indexed = 0;
        for (stream, entry) in &self.streams {
            let event_responses = entry.queue.iter().filter(|r| !r.events.is_empty()).count();
            assert_eq!(
                entry.queued_event_responses, event_responses,
                "stream {stream} counts {} queued event responses, holds {event_responses}",
                entry.queued_event_responses
            );
            for (id, watch) in &entry.watches {
                assert_eq!(
                    *id, watch.id,
                    "watch stored under the wrong ID in stream {stream}"
                );
                let found = match &watch.range {
                    KeyRange::Single(key) => self
                        .single_key
                        .get(key)
                        .is_some_and(|w| w.contains(&(*stream, *id))),
                    KeyRange::Bounded(..) | KeyRange::From(_) => {
                        self.ranged.contains(&(*stream, *id))
                    }
                };
                assert!(found, "watch {stream}/{id} is not indexed");
                indexed += 1;
            }
        }
        let in_index: usize =
            self.single_key.values().map(BTreeSet::len).sum::<usize>() + self.ranged.len();
        assert_eq!(
            in_index, indexed,
            "index holds {in_index} watches, streams {indexed}"
        );
    }
}
