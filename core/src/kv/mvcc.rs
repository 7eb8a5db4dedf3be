//! [`Mvcc`]: the multi-version key index — every key's history of changes,
//! the global revision, compaction, and the revision-ordered change log that
//! watches catch up from.
//!
//! This is etcd's `mvcc` package reduced to its meaning. Each key keeps a
//! [`KeyHistory`]: its changes (puts and tombstones) ordered by
//! `(revision, sub)`, exactly as etcd's key index orders `revision{main, sub}`.
//! A read at revision `r` sees the last change with `revision <= r`; a
//! tombstone there means "absent". Compaction at `c` keeps, per key, the last
//! change at or below `c` unless it is a tombstone, and everything above `c`
//! (etcd's `keyIndex.compact`).
//!
//! Besides the per-key histories, [`Mvcc`] keeps a change log: for every
//! revision above the compact revision, the keys it changed in sub-revision
//! order. Every revision holds at least one change (a write that changes
//! nothing does not bump the revision), so the log is dense and indexed by
//! revision; watch catch-up reads it instead of scanning the keyspace.
//!
//! Writes go through [`Mvcc::put`] and [`Mvcc::delete`] while a write is
//! open ([`Mvcc::begin_write`] .. [`Mvcc::end_write`]): their changes carry
//! the pending revision `revision + 1` and are visible to reads inside the
//! same write (etcd's txn-reads-its-own-writes), and the revision advances
//! at `end_write` only if something changed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use super::error::KvError;
use super::request::{Event, EventType, KeyValue, LeaseId, Revision};

/// The revision of a fresh store: etcd starts at 1, so the first write is 2.
pub const INITIAL_REVISION: Revision = 1;

/// Bytes of bookkeeping counted per stored change on top of key and value,
/// for [`Mvcc::size_bytes`].
const CHANGE_OVERHEAD_BYTES: u64 = 64;

/// Below this many retained changes a key's history grows one change at a
/// time; beyond it, by doubling (amortized O(1) for hot keys).
const KEY_HISTORY_EXACT_GROWTH_MAX: usize = 4;

/// One change of one key: a put (the key's state after it) or a tombstone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The main revision of the write.
    pub revision: Revision,
    /// The position of the change within its revision.
    pub sub: u32,
    /// Revision of the key's creation; 0 marks a tombstone.
    pub create_revision: Revision,
    /// The key's version after the put; 0 for a tombstone.
    pub version: i64,
    /// The value after the put; empty for a tombstone.
    pub value: Vec<u8>,
    /// The lease after the put; 0 for a tombstone.
    pub lease: LeaseId,
}

impl Change {
    /// True for a deletion.
    pub fn is_tombstone(&self) -> bool {
        self.create_revision == 0
    }

    /// The key-value this change leaves (a tombstone's carries only the key
    /// and the deleting revision, as etcd's delete events do).
    pub fn key_value(&self, key: &[u8]) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            create_revision: self.create_revision,
            mod_revision: self.revision,
            version: self.version,
            value: self.value.clone(),
            lease: self.lease,
        }
    }

    fn position(&self) -> (Revision, u32) {
        (self.revision, self.sub)
    }
}

/// The retained changes of one key, ordered by `(revision, sub)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyHistory {
    // Invariant: strictly increasing by (revision, sub); never empty while stored.
    changes: Vec<Change>,
}

impl KeyHistory {
    /// The live change at `revision` (None when absent or deleted).
    pub fn at(&self, revision: Revision) -> Option<&Change> {
        let end = self
            .changes
            .partition_point(|change| change.revision <= revision);
        let change = self.changes[..end].last()?;
        (!change.is_tombstone()).then_some(change)
    }

    /// The live change strictly before `revision`.
    pub fn before(&self, revision: Revision) -> Option<&Change> {
        self.at(revision - 1)
    }

    /// The latest change, live or not.
    pub fn latest(&self) -> Option<&Change> {
        self.changes.last()
    }

    /// The change at exactly `(revision, sub)`.
    pub fn find(&self, revision: Revision, sub: u32) -> Option<&Change> {
        self.changes
            .binary_search_by(|change| change.position().cmp(&(revision, sub)))
            .ok()
            .map(|index| &self.changes[index])
    }

    /// All retained changes, oldest first.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// Builds a history from changes; None unless strictly ordered and non-empty.
    pub fn from_changes(changes: Vec<Change>) -> Option<KeyHistory> {
        if changes.is_empty() {
            return None;
        }
        let ordered = changes
            .windows(2)
            .all(|pair| pair[0].position() < pair[1].position());
        ordered.then_some(KeyHistory { changes })
    }

    /// Drops what compaction at `compact_revision` makes unreachable; returns
    /// the bytes freed.
    fn compact(&mut self, key_bytes: usize, compact_revision: Revision) -> u64 {
        let end = self
            .changes
            .partition_point(|change| change.revision <= compact_revision);
        if end == 0 {
            return 0;
        }
        let mut drop_count = end - 1;
        if self.changes[end - 1].is_tombstone() {
            drop_count = end;
        }
        let freed = self.changes[..drop_count]
            .iter()
            .map(|change| change_bytes(key_bytes, change))
            .sum();
        self.changes.drain(..drop_count);
        freed
    }
}

fn change_bytes(key_bytes: usize, change: &Change) -> u64 {
    (key_bytes + change.value.len()) as u64 + CHANGE_OVERHEAD_BYTES
}

/// The start and end bounds of a non-empty key range.
type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// A key range as etcd reads `key` / `range_end`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRange {
    /// Exactly one key (`range_end` empty).
    Single(Vec<u8>),
    /// `[start, end)`; empty when `end <= start`.
    Bounded(Vec<u8>, Vec<u8>),
    /// Every key `>= start` (`range_end` is `"\0"`).
    From(Vec<u8>),
}

impl KeyRange {
    /// Interprets a request's `key` and `range_end` (etcd's `mkGteRange`).
    pub fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        if range_end.is_empty() {
            KeyRange::Single(key.to_vec())
        } else if range_end == [0] {
            KeyRange::From(key.to_vec())
        } else {
            KeyRange::Bounded(key.to_vec(), range_end.to_vec())
        }
    }

    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Single(only) => key == only.as_slice(),
            KeyRange::Bounded(start, end) => start.as_slice() <= key && key < end.as_slice(),
            KeyRange::From(start) => start.as_slice() <= key,
        }
    }

    fn bounds(&self) -> Option<KeyBounds<'_>> {
        match self {
            KeyRange::Single(only) => Some((
                Bound::Included(only.as_slice()),
                Bound::Included(only.as_slice()),
            )),
            KeyRange::Bounded(start, end) => (start < end).then_some((
                Bound::Included(start.as_slice()),
                Bound::Excluded(end.as_slice()),
            )),
            KeyRange::From(start) => Some((Bound::Included(start.as_slice()), Bound::Unbounded)),
        }
    }
}

/// The open write: its changes so far, in sub-revision order.
#[derive(Clone, Debug, Default)]
struct PendingWrite {
    keys: Vec<Vec<u8>>,
}

/// The multi-version key index.
#[derive(Debug, Clone)]
pub struct Mvcc {
    keys: BTreeMap<Vec<u8>, KeyHistory>,
    // Invariant: every change in `keys` has revision <= revision + 1, and
    // changes at revision + 1 exist only while a write is pending.
    revision: Revision,
    // Invariant: compact_revision <= revision.
    compact_revision: Revision,
    // log[i] lists the keys changed at revision log_base + 1 + i, in sub
    // order. Invariant: log_base == max(compact_revision, INITIAL_REVISION)
    // and log_base + log.len() == revision.
    log: VecDeque<Vec<Vec<u8>>>,
    log_base: Revision,
    // The events of revision compact_revision, materialized when it was
    // compacted, so a watch starting exactly there still gets them all.
    compacted_events: Vec<Event>,
    pending: Option<PendingWrite>,
    size_bytes: u64,
}

impl Default for Mvcc {
    fn default() -> Self {
        Mvcc::new()
    }
}

impl Mvcc {
    /// An empty index at [`INITIAL_REVISION`].
    pub fn new() -> Mvcc {
        Mvcc {
            keys: BTreeMap::new(),
            revision: INITIAL_REVISION,
            compact_revision: 0,
            log: VecDeque::new(),
            log_base: INITIAL_REVISION,
            compacted_events: Vec::new(),
            pending: None,
            size_bytes: 0,
        }
    }

    /// Rebuilds an index from its parts (a restored snapshot); the change log
    /// is derived from the histories. Errors name the first inconsistency.
    pub fn from_parts(
        keys: BTreeMap<Vec<u8>, KeyHistory>,
        revision: Revision,
        compact_revision: Revision,
        compacted_events: Vec<Event>,
    ) -> Result<Mvcc, String> {
        if revision < INITIAL_REVISION {
            return Err(format!("revision {revision} < {INITIAL_REVISION}"));
        }
        if compact_revision < 0 || compact_revision > revision {
            return Err(format!(
                "compact revision {compact_revision} outside [0, {revision}]"
            ));
        }
        let log_base = compact_revision.max(INITIAL_REVISION);
        let log_len = usize::try_from(revision - log_base)
            .map_err(|_| format!("revision {revision} below log base {log_base}"))?;
        // Every logged revision holds a change, so a longer log is corrupt
        // (and must be refused before allocating it).
        let change_count: usize = keys.values().map(|history| history.changes.len()).sum();
        if log_len > change_count {
            return Err(format!(
                "{log_len} revisions above {log_base} for {change_count} changes"
            ));
        }
        let mut by_revision: BTreeMap<(Revision, u32), Vec<u8>> = BTreeMap::new();
        let mut size_bytes = 0;
        for (key, history) in &keys {
            if history.changes.is_empty() {
                return Err(format!("key {key:?} has an empty history"));
            }
            if !history
                .changes
                .windows(2)
                .all(|pair| pair[0].position() < pair[1].position())
            {
                return Err(format!("key {key:?} has unordered changes"));
            }
            for change in &history.changes {
                if change.revision > revision || change.revision <= INITIAL_REVISION {
                    return Err(format!(
                        "key {key:?} has a change at revision {} outside ({INITIAL_REVISION}, {revision}]",
                        change.revision
                    ));
                }
                size_bytes += change_bytes(key.len(), change);
                if change.revision > log_base
                    && by_revision.insert(change.position(), key.clone()).is_some()
                {
                    return Err(format!("two changes at {:?}", change.position()));
                }
            }
            let below = history
                .changes
                .partition_point(|c| c.revision <= compact_revision);
            if below > 1 || (below == 1 && history.changes[0].is_tombstone()) {
                return Err(format!("key {key:?} keeps compacted history"));
            }
        }
        let mut log: VecDeque<Vec<Vec<u8>>> = (0..log_len).map(|_| Vec::new()).collect();
        for ((change_revision, sub), key) in by_revision {
            let slot = &mut log[(change_revision - log_base - 1) as usize];
            if slot.len() != sub as usize {
                return Err(format!(
                    "revision {change_revision} misses sub-revision {}",
                    slot.len()
                ));
            }
            slot.push(key);
        }
        if let Some(index) = log.iter().position(Vec::is_empty) {
            return Err(format!(
                "revision {} has no change",
                log_base + 1 + index as Revision
            ));
        }
        let mvcc = Mvcc {
            keys,
            revision,
            compact_revision,
            log,
            log_base,
            compacted_events,
            pending: None,
            size_bytes,
        };
        Ok(mvcc)
    }

    /// The current revision.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The compact revision (0 before any compaction).
    pub fn compact_revision(&self) -> Revision {
        self.compact_revision
    }

    /// Every key's history.
    pub fn keys(&self) -> &BTreeMap<Vec<u8>, KeyHistory> {
        &self.keys
    }

    /// The events of the compact revision, kept through its compaction.
    pub fn compacted_events(&self) -> &[Event] {
        &self.compacted_events
    }

    /// Approximate bytes of keys, values and bookkeeping retained.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The revision reads see: the pending one once the open write changed
    /// something, the current one otherwise.
    pub fn read_revision(&self) -> Revision {
        match &self.pending {
            Some(pending) if !pending.keys.is_empty() => self.revision + 1,
            _ => self.revision,
        }
    }

    /// Checks that `revision` (0 = current) can be read; returns the
    /// revision to read at.
    pub fn check_read(&self, revision: Revision) -> Result<Revision, KvError> {
        let current = self.read_revision();
        if revision > current {
            return Err(KvError::FutureRevision {
                current_revision: self.revision,
            });
        }
        if revision <= 0 {
            return Ok(current);
        }
        if revision < self.compact_revision {
            return Err(KvError::Compacted {
                compact_revision: self.compact_revision,
            });
        }
        Ok(revision)
    }

    /// The live key-value of `key` at `revision` (no compaction check).
    pub fn get(&self, key: &[u8], revision: Revision) -> Option<KeyValue> {
        let change = self.keys.get(key)?.at(revision)?;
        Some(change.key_value(key))
    }

    /// Visits the live key-values in `range` at `revision`, in key order,
    /// until `visit` returns false.
    pub fn visit_range(
        &self,
        range: &KeyRange,
        revision: Revision,
        mut visit: impl FnMut(&[u8], &Change) -> bool,
    ) {
        let Some(bounds) = range.bounds() else {
            return;
        };
        for (key, history) in self.keys.range::<[u8], _>(bounds) {
            if let Some(change) = history.at(revision) {
                if !visit(key, change) {
                    return;
                }
            }
        }
    }

    /// The live keys in `range` at the read revision.
    pub fn live_keys(&self, range: &KeyRange) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        self.visit_range(range, self.read_revision(), |key, _| {
            keys.push(key.to_vec());
            true
        });
        keys
    }

    /// Opens a write; its changes take revision `revision + 1`.
    pub fn begin_write(&mut self) {
        assert!(
            self.pending.is_none(),
            "a write is already open at revision {}",
            self.revision
        );
        self.pending = Some(PendingWrite::default());
    }

    fn push_change(&mut self, key: &[u8], mut change: Change) {
        let pending = self
            .pending
            .as_mut()
            .expect("mvcc change outside an open write");
        change.sub = u32::try_from(pending.keys.len()).expect("more than u32::MAX changes");
        pending.keys.push(key.to_vec());
        self.size_bytes += change_bytes(key.len(), &change);
        let Some(history) = self.keys.get_mut(key) else {
            self.keys.insert(
                key.to_vec(),
                KeyHistory {
                    changes: vec![change],
                },
            );
            return;
        };
        if let Some(last) = history.changes.last() {
            assert!(
                last.position() < change.position(),
                "change {:?} not after {:?} for key {key:?}",
                change.position(),
                last.position()
            );
        }
        if history.changes.len() < KEY_HISTORY_EXACT_GROWTH_MAX {
            // Most keys keep a few changes: grow those exactly rather than
            // doubling (a second change would otherwise reserve room for 4).
            history.changes.reserve_exact(1);
        }
        history.changes.push(change);
    }

    /// Writes `key` in the open write; returns the key-value it replaced.
    pub fn put(&mut self, key: &[u8], value: Vec<u8>, lease: LeaseId) -> Option<KeyValue> {
        let revision = self.revision + 1;
        let previous = self.get(key, revision);
        let (create_revision, version) = match &previous {
            Some(previous) => (previous.create_revision, previous.version + 1),
            None => (revision, 1),
        };
        let change = Change {
            revision,
            sub: 0,
            create_revision,
            version,
            value,
            lease,
        };
        self.push_change(key, change);
        previous
    }

    /// Deletes `key` in the open write if it is live; returns what it deleted.
    pub fn delete(&mut self, key: &[u8]) -> Option<KeyValue> {
        let revision = self.revision + 1;
        let previous = self.get(key, revision)?;
        let tombstone = Change {
            revision,
            sub: 0,
            create_revision: 0,
            version: 0,
            value: Vec::new(),
            lease: 0,
        };
        self.push_change(key, tombstone);
        Some(previous)
    }

    /// Closes the open write; the revision advances if it changed anything.
    /// Returns the events of the write, in order.
    pub fn end_write(&mut self) -> Vec<Event> {
        let pending = self
            .pending
            .take()
            .expect("end_write without an open write");
        if pending.keys.is_empty() {
            return Vec::new();
        }
        self.revision += 1;
        let events = pending
            .keys
            .iter()
            .enumerate()
            .map(|(sub, key)| self.event_at(key, self.revision, sub as u32))
            .collect();
        let mut keys = pending.keys;
        // Most revisions change one key: keep no spare capacity per revision.
        keys.shrink_to_fit();
        self.log.push_back(keys);
        events
    }

    /// Closes the open write, discarding its changes; the revision stays.
    pub fn abort_write(&mut self) {
        let pending = self
            .pending
            .take()
            .expect("abort_write without an open write");
        let revision = self.revision + 1;
        for key in pending.keys.iter().rev() {
            let history = self.keys.get_mut(key).expect("changed key has a history");
            let change = history.changes.pop().expect("changed key has a change");
            assert_eq!(change.revision, revision, "rolled back change of {key:?}");
            self.size_bytes -= change_bytes(key.len(), &change);
            if history.changes.is_empty() {
                self.keys.remove(key);
            }
        }
    }

    /// The event of the change `(revision, sub)` of `key`. The previous
    /// key-value is the key's state at `revision - 1` (etcd reads it there),
    /// and a creating put has none.
    fn event_at(&self, key: &[u8], revision: Revision, sub: u32) -> Event {
        let history = self.keys.get(key).expect("logged key has a history");
        let change = history
            .find(revision, sub)
            .expect("logged change is in the history");
        let kind = if change.is_tombstone() {
            EventType::Delete
        } else {
            EventType::Put
        };
        let creates = kind == EventType::Put && change.create_revision == change.revision;
        let prev_kv = if creates {
            None
        } else {
            history
                .before(revision)
                .map(|previous| previous.key_value(key))
        };
        Event {
            kind,
            kv: change.key_value(key),
            prev_kv,
        }
    }

    /// Visits, in order, the events of revisions `[from, to]` whose key
    /// passes `wanted`. `from` may be the compact revision itself.
    pub fn visit_events(
        &self,
        from: Revision,
        to: Revision,
        mut wanted: impl FnMut(&[u8]) -> bool,
        mut visit: impl FnMut(Event),
    ) -> Result<(), KvError> {
        if from < self.compact_revision {
            return Err(KvError::Compacted {
                compact_revision: self.compact_revision,
            });
        }
        if to > self.revision {
            return Err(KvError::FutureRevision {
                current_revision: self.revision,
            });
        }
        if from > to {
            return Ok(());
        }
        if from == self.compact_revision {
            for event in &self.compacted_events {
                if wanted(&event.kv.key) {
                    visit(event.clone());
                }
            }
        }
        let first = from.max(self.log_base + 1);
        for revision in first..=to {
            let keys = &self.log[(revision - self.log_base - 1) as usize];
            for (sub, key) in keys.iter().enumerate() {
                if wanted(key) {
                    visit(self.event_at(key, revision, sub as u32));
                }
            }
        }
        Ok(())
    }

    /// Compacts history at `compact_revision`: reads below it fail from now on.
    pub fn compact(&mut self, compact_revision: Revision) -> Result<(), KvError> {
        assert!(self.pending.is_none(), "compaction inside an open write");
        if compact_revision <= self.compact_revision {
            return Err(KvError::Compacted {
                compact_revision: self.compact_revision,
            });
        }
        if compact_revision > self.revision {
            return Err(KvError::FutureRevision {
                current_revision: self.revision,
            });
        }
        let mut compacted_events = Vec::new();
        self.visit_events(
            compact_revision,
            compact_revision,
            |_| true,
            |event| compacted_events.push(event),
        )?;
        let mut touched: BTreeSet<Vec<u8>> = BTreeSet::new();
        while self.log_base < compact_revision {
            let keys = self
                .log
                .pop_front()
                .expect("log covers every revision above its base");
            touched.extend(keys);
            self.log_base += 1;
        }
        for key in touched {
            let history = self.keys.get_mut(&key).expect("logged key has a history");
            self.size_bytes -= history.compact(key.len(), compact_revision);
            if history.changes.is_empty() {
                self.keys.remove(&key);
            }
        }
        self.compact_revision = compact_revision;
        self.compacted_events = compacted_events;
        Ok(())
    }

    /// O(n) consistency checks, for tests and debug builds.
    pub fn check_invariants(&self) {
        assert!(self.pending.is_none(), "pending write at rest");
        assert!(
            self.compact_revision <= self.revision,
            "compact revision {} > revision {}",
            self.compact_revision,
            self.revision
        );
        let log_base = self.compact_revision.max(INITIAL_REVISION);
        assert_eq!(self.log_base, log_base, "log base");
        assert_eq!(
            self.log_base + self.log.len() as Revision,
            self.revision,
            "log length {} from base {}",
            self.log.len(),
            self.log_base
        );
        let mut size_bytes = 0;
        for (key, history) in &self.keys {
            assert!(!history.changes.is_empty(), "empty history for {key:?}");
            for pair in history.changes.windows(2) {
                assert!(
                    pair[0].position() < pair[1].position(),
                    "unordered history of {key:?}"
                );
            }
            let below = history
                .changes
                .partition_point(|c| c.revision <= self.compact_revision);
            assert!(
                below <= 1,
                "{below} changes of {key:?} at or below the compact revision"
            );
            if below == 1 {
                assert!(
                    !history.changes[0].is_tombstone(),
                    "compacted tombstone kept for {key:?}"
                );
            }
            for change in &history.changes {
                size_bytes += change_bytes(key.len(), change);
                if change.revision > self.log_base {
                    let logged = &self.log[(change.revision - self.log_base - 1) as usize];
                    assert_eq!(
                        logged.get(change.sub as usize).map(Vec::as_slice),
                        Some(key.as_slice()),
                        "log misses change {:?} of {key:?}",
                        change.position()
                    );
                }
            }
        }
        assert_eq!(self.size_bytes, size_bytes, "size accounting");
        for (index, keys) in self.log.iter().enumerate() {
            assert!(
                !keys.is_empty(),
                "revision {} has no change",
                self.log_base + 1 + index as i64
            );
        }
    }
}
