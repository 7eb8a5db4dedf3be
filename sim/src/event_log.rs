//! The ground truth the watch, durability, revision and lease checkers
//! compare against: the events of every committed revision, as members
//! applied them.
//!
//! The simulator feeds it from the apply path of every member
//! ([`EventLog::record`]) or from a member's retained MVCC history at the end
//! of the run. Every member applies the same log, so two observations of one
//! revision must be identical; a difference is itself a safety violation
//! ([`EventLogConflict`]). The log may have holes (revisions no observed
//! member applied one by one, e.g. all received snapshots); checkers that
//! need a revision the log lacks report "unknown", never "ok".

use std::collections::BTreeMap;

use cairn_core::kv::{Event, EventType, KeyValue, Revision};
use cairn_core::raft::NodeId;

use crate::time::SimTime;

/// Two members applied different events at the same revision.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "revision {revision}: member {node} applied {observed:?} but member {first_node} applied {recorded:?}"
)]
pub struct EventLogConflict {
    /// The revision.
    pub revision: Revision,
    /// The member whose observation disagrees.
    pub node: NodeId,
    /// What it applied.
    pub observed: Vec<Event>,
    /// The member first recorded for this revision.
    pub first_node: NodeId,
    /// What that member applied.
    pub recorded: Vec<Event>,
}

/// The events of one committed revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionEvents {
    /// The member this revision was first recorded from.
    pub first_node: NodeId,
    /// When a member first applied it: an upper bound on when it was decided.
    pub applied_at: SimTime,
    /// Its events in apply order (etcd's order within a transaction).
    pub events: Vec<Event>,
}

/// Committed revisions with their events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventLog {
    /// The revision of the empty store before the first write (etcd: 1).
    initial_revision: Revision,
    revisions: BTreeMap<Revision, RevisionEvents>,
}

impl EventLog {
    /// An empty log for a store whose revision before any write is `initial_revision`.
    pub fn new(initial_revision: Revision) -> EventLog {
        EventLog {
            initial_revision,
            revisions: BTreeMap::new(),
        }
    }

    /// Records that `node` applied `events` as revision `revision` at `at`.
    /// The first observation is kept; a later identical one is ignored; a
    /// different one is a conflict (prev_kv is not compared: members may or
    /// may not fill it).
    pub fn record(
        &mut self,
        node: NodeId,
        revision: Revision,
        events: Vec<Event>,
        at: SimTime,
    ) -> Result<(), EventLogConflict> {
        assert!(
            revision > self.initial_revision,
            "revision {revision} is not after the initial revision {}",
            self.initial_revision
        );
        assert!(
            !events.is_empty(),
            "revision {revision} recorded without events"
        );
        match self.revisions.get_mut(&revision) {
            None => {
                self.revisions.insert(
                    revision,
                    RevisionEvents {
                        first_node: node,
                        applied_at: at,
                        events,
                    },
                );
                Ok(())
            }
            Some(recorded) => {
                if !same_events(&recorded.events, &events) {
                    return Err(EventLogConflict {
                        revision,
                        node,
                        observed: events,
                        first_node: recorded.first_node,
                        recorded: recorded.events.clone(),
                    });
                }
                recorded.applied_at = recorded.applied_at.min(at);
                Ok(())
            }
        }
    }

    /// The revision of the empty store.
    pub fn initial_revision(&self) -> Revision {
        self.initial_revision
    }

    /// The highest recorded revision (the initial revision when empty).
    pub fn last_revision(&self) -> Revision {
        self.revisions
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.initial_revision)
    }

    /// One revision's events, if recorded.
    pub fn get(&self, revision: Revision) -> Option<&RevisionEvents> {
        self.revisions.get(&revision)
    }

    /// Every recorded revision in order.
    pub fn iter(&self) -> impl Iterator<Item = (Revision, &RevisionEvents)> {
        self.revisions
            .iter()
            .map(|(revision, events)| (*revision, events))
    }

    /// Recorded revisions in `low..=high`, in order.
    pub fn range(
        &self,
        low: Revision,
        high: Revision,
    ) -> impl Iterator<Item = (Revision, &RevisionEvents)> {
        // An empty range when low > high (BTreeMap::range would panic).
        let high = high.max(low.saturating_sub(1));
        self.revisions
            .range(low..)
            .take_while(move |(revision, _)| **revision <= high)
            .map(|(revision, events)| (*revision, events))
    }

    /// The highest revision `r` such that every revision after the initial
    /// one up to `r` is recorded: states up to `r` can be replayed.
    pub fn contiguous_through(&self) -> Revision {
        let mut through = self.initial_revision;
        for revision in self.revisions.keys() {
            if *revision != through + 1 {
                break;
            }
            through = *revision;
        }
        through
    }

    /// Whether every revision in `low..=high` is recorded.
    pub fn covers(&self, low: Revision, high: Revision) -> bool {
        if low > high {
            return true;
        }
        let count = self.range(low, high).count();
        usize::try_from(high - low + 1).is_ok_and(|expected| expected == count)
    }

    /// A replayer positioned at the initial (empty) state.
    pub fn replay(&self) -> Replay<'_> {
        Replay {
            log: self,
            revision: self.initial_revision,
            state: BTreeMap::new(),
        }
    }
}

/// Whether two event lists are the same, ignoring prev_kv.
fn same_events(left: &[Event], right: &[Event]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .all(|(a, b)| a.kind == b.kind && a.kv == b.kv)
}

/// The key-value state of the store at one revision, advanced revision by
/// revision through the [`EventLog`]. Only valid up to
/// [`EventLog::contiguous_through`].
#[derive(Clone, Debug)]
pub struct Replay<'log> {
    log: &'log EventLog,
    revision: Revision,
    state: BTreeMap<Vec<u8>, KeyValue>,
}

/// One event as applied, with the key's state before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedEvent {
    /// The event.
    pub event: Event,
    /// The key before the event (what prev_kv must say).
    pub previous: Option<KeyValue>,
}

impl Replay<'_> {
    /// The revision the state reflects.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The state: every live key.
    pub fn state(&self) -> &BTreeMap<Vec<u8>, KeyValue> {
        &self.state
    }

    /// Advances one revision, returning its events with previous values, or
    /// `None` when the next revision is not recorded.
    pub fn step(&mut self) -> Option<Vec<AppliedEvent>> {
        let next = self.revision + 1;
        let events = &self.log.revisions.get(&next)?.events;
        let mut applied = Vec::with_capacity(events.len());
        for event in events {
            let previous = match event.kind {
                EventType::Put => self.state.insert(event.kv.key.clone(), event.kv.clone()),
                EventType::Delete => self.state.remove(&event.kv.key),
            };
            applied.push(AppliedEvent {
                event: event.clone(),
                previous,
            });
        }
        self.revision = next;
        Some(applied)
    }

    /// Advances to `revision`; false when a revision on the way is missing
    /// (the replay stops at the last recorded one).
    pub fn advance_to(&mut self, revision: Revision) -> bool {
        while self.revision < revision {
            if self.step().is_none() {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, revision: Revision) -> Event {
        Event {
            kind: EventType::Put,
            kv: KeyValue {
                key: key.as_bytes().to_vec(),
                create_revision: revision,
                mod_revision: revision,
                version: 1,
                value: b"v".to_vec(),
                lease: 0,
            },
            prev_kv: None,
        }
    }

    #[test]
    fn holes_limit_replay_and_coverage() {
        let mut log = EventLog::new(1);
        for revision in [2, 3, 5] {
            log.record(NodeId(1), revision, vec![put("a", revision)], SimTime(0))
                .expect("record");
        }
        assert_eq!(log.last_revision(), 5);
        assert_eq!(log.contiguous_through(), 3);
        assert!(log.covers(2, 3));
        assert!(!log.covers(2, 5));
        assert!(log.covers(6, 5), "an empty range is covered");
        assert_eq!(log.range(4, 2).count(), 0);
        let mut replay = log.replay();
        assert!(!replay.advance_to(5));
        assert_eq!(replay.revision(), 3);
        assert_eq!(replay.state()[b"a".as_slice()].mod_revision, 3);
    }

    #[test]
    fn the_earliest_apply_time_is_kept() {
        let mut log = EventLog::new(1);
        log.record(NodeId(1), 2, vec![put("a", 2)], SimTime(50))
            .expect("first");
        log.record(NodeId(2), 2, vec![put("a", 2)], SimTime(20))
            .expect("same events");
        assert_eq!(log.get(2).expect("recorded").applied_at, SimTime(20));
    }
}
