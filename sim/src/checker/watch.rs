//! The watch checker: compares what each watch stream delivered with the
//! committed [`EventLog`].
//!
//! For every watch session (one `WatchCreateRequest` on one stream, from
//! its `created` response to its cancellation or the end of the run):
//! - ordered: revisions never go backwards;
//! - atomic per revision: all events of one revision arrive together, in
//!   one response (or in consecutive fragments), exactly the committed
//!   events of that revision that match the watch's range and filters;
//! - no duplicates: a revision is delivered at most once;
//! - no gaps: every committed revision with matching events between the
//!   start revision and the latest revision the stream vouched for (its last
//!   event or progress notification) was delivered;
//! - correct prev_kv: present exactly when asked for, and equal to the key's
//!   committed state before the event;
//! - compaction: a watch whose start revision was compacted is cancelled
//!   with a compact revision that was requested and lies above where the
//!   watch stood, delivers nothing after that, and a watch created after a
//!   compaction was acknowledged, on a member that had applied it, never
//!   serves events from below it.
//!
//! Resuming is a new session starting at the last delivered revision + 1;
//! every session is checked on its own, so a resumed chain is gap-free and
//! duplicate-free exactly when each session is. Sessions whose window the
//! event log does not fully cover are reported unverifiable, never ok.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use cairn_core::kv::{
    Event, EventType, KeyValue, Revision, WatchCreateRequest, WatchFilter, WatchResponse,
};

use crate::event_log::EventLog;
use crate::history::ClientId;
use crate::time::SimTime;

/// How many violations one session may report before the rest are elided.
pub const VIOLATIONS_PER_SESSION_MAX: usize = 8;

/// One watch as the simulated client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchSession {
    /// Unique per run, for the report.
    pub id: u64,
    /// The client that opened it.
    pub client: ClientId,
    /// What was asked.
    pub request: WatchCreateRequest,
    /// When the create request was sent.
    pub created_at: SimTime,
    /// Every response received for this watch, in arrival order, the
    /// `created` response included.
    pub responses: Vec<(SimTime, WatchResponse)>,
}

impl WatchSession {
    /// A session whose create request was sent at `created_at`.
    pub fn new(
        id: u64,
        client: ClientId,
        request: WatchCreateRequest,
        created_at: SimTime,
    ) -> WatchSession {
        WatchSession {
            id,
            client,
            request,
            created_at,
            responses: Vec::new(),
        }
    }

    /// Records a response for this watch, received at `at`.
    pub fn receive(&mut self, at: SimTime, response: WatchResponse) {
        if let Some((last, _)) = self.responses.last() {
            assert!(
                at >= *last,
                "watch {}: response at {at} before the previous at {last}",
                self.id
            );
        }
        self.responses.push((at, response));
    }

    /// The revision to resume from after this session ends: one past the
    /// last delivered event, or the start when nothing was delivered.
    pub fn resume_revision(&self) -> Option<Revision> {
        let last_event = self
            .responses
            .iter()
            .flat_map(|(_, response)| response.events.iter())
            .map(|event| event.kv.mod_revision)
            .max();
        match last_event {
            Some(revision) => Some(revision + 1),
            None if self.request.start_revision > 0 => Some(self.request.start_revision),
            None => self
                .responses
                .iter()
                .find(|(_, response)| response.created)
                .map(|(_, response)| response.header_revision + 1),
        }
    }
}

/// A compaction the workload requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compaction {
    /// Revisions below this one are discarded.
    pub revision: Revision,
    /// When it was acknowledged; `None` if it failed or timed out (it may
    /// still have happened).
    pub acknowledged_at: Option<SimTime>,
    /// The store's revision in the acknowledgement: every member applies
    /// the compaction between this revision and the next, so a member past
    /// this revision has applied it.
    pub acknowledged_revision: Option<Revision>,
}

/// A broken watch guarantee.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WatchViolation {
    /// Events went backwards or a revision was delivered twice.
    #[error("session {session}: revision {revision} delivered after revision {previous}")]
    OutOfOrder {
        /// The session.
        session: u64,
        /// The earlier-delivered revision.
        previous: Revision,
        /// The revision delivered after it.
        revision: Revision,
    },
    /// A revision's events were split across responses without `fragment`.
    #[error("session {session}: revision {revision} split across responses {first} and {second}")]
    SplitRevision {
        /// The session.
        session: u64,
        /// The revision.
        revision: Revision,
        /// The first response's position.
        first: usize,
        /// The next response's position.
        second: usize,
    },
    /// The events delivered for a revision differ from the committed ones.
    #[error(
        "session {session}: revision {revision} delivered {delivered:?}, committed (filtered) {expected:?}"
    )]
    WrongEvents {
        /// The session.
        session: u64,
        /// The revision.
        revision: Revision,
        /// What was delivered.
        delivered: Vec<Event>,
        /// What should have been.
        expected: Vec<Event>,
    },
    /// A committed revision with matching events was skipped.
    #[error(
        "session {session}: gap: revision {revision} was never delivered although the stream reached {reached}"
    )]
    Gap {
        /// The session.
        session: u64,
        /// The missing revision.
        revision: Revision,
        /// The revision the stream vouched for.
        reached: Revision,
    },
    /// An event's prev_kv is wrong.
    #[error(
        "session {session}: revision {revision} key {key:?}: prev_kv {delivered:?}, expected {expected:?}"
    )]
    WrongPreviousKeyValue {
        /// The session.
        session: u64,
        /// The revision.
        revision: Revision,
        /// The key.
        key: String,
        /// What was delivered.
        delivered: Option<KeyValue>,
        /// What should have been.
        expected: Option<KeyValue>,
    },
    /// A response's header revision is below the events it carries.
    #[error("session {session}: response {response} has header {header} below event revision {revision}")]
    HeaderBehindEvents {
        /// The session.
        session: u64,
        /// The response's position.
        response: usize,
        /// Its header revision.
        header: Revision,
        /// The highest event revision in it.
        revision: Revision,
    },
    /// Compaction rules broken.
    #[error("session {session}: compaction: {reason}")]
    Compaction {
        /// The session.
        session: u64,
        /// What went wrong.
        reason: String,
    },
    /// Something arrived after the watch was cancelled.
    #[error("session {session}: response {response} arrived after cancellation")]
    AfterCancel {
        /// The session.
        session: u64,
        /// The response's position.
        response: usize,
    },
}

/// The result of [`check_watches`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchReport {
    /// Sessions checked.
    pub sessions: usize,
    /// Events checked against the log.
    pub events_verified: usize,
    /// Sessions (partly) outside the event log: their verdict is unknown.
    pub sessions_unverifiable: usize,
    /// Every violation found.
    pub violations: Vec<WatchViolation>,
}

impl WatchReport {
    /// No violation and nothing unverifiable.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty() && self.sessions_unverifiable == 0
    }
}

impl fmt::Display for WatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "watches: {} sessions, {} events verified, {} violations, {} unverifiable sessions",
            self.sessions,
            self.events_verified,
            self.violations.len(),
            self.sessions_unverifiable
        )?;
        for violation in &self.violations {
            writeln!(f, "  {violation}")?;
        }
        Ok(())
    }
}

/// Whether `key` is in the watch's range.
fn watches_key(request: &WatchCreateRequest, key: &[u8]) -> bool {
    if request.range_end.is_empty() {
        key == request.key.as_slice()
    } else if request.range_end == [0] {
        key >= request.key.as_slice()
    } else {
        key >= request.key.as_slice() && key < request.range_end.as_slice()
    }
}

/// Whether the watch delivers `event` (range and filters).
fn delivers(request: &WatchCreateRequest, event: &Event) -> bool {
    let filtered = match event.kind {
        EventType::Put => request.filters.contains(&WatchFilter::NoPut),
        EventType::Delete => request.filters.contains(&WatchFilter::NoDelete),
    };
    !filtered && watches_key(request, &event.kv.key)
}

/// A committed event, with the key's committed state before it when known.
struct Committed {
    event: Event,
    previous: Option<Option<KeyValue>>,
}

/// Checks every watch session against the committed log.
pub fn check_watches(
    log: &EventLog,
    compactions: &[Compaction],
    sessions: &[WatchSession],
) -> WatchReport {
    // Previous values are known where the log replays from the start.
    let mut committed: BTreeMap<Revision, Vec<Committed>> = BTreeMap::new();
    let mut replay = log.replay();
    while let Some(applied) = replay.step() {
        let events = applied
            .into_iter()
            .map(|applied| Committed {
                event: applied.event,
                previous: Some(applied.previous),
            })
            .collect();
        committed.insert(replay.revision(), events);
    }
    for (revision, events) in log.range(replay.revision() + 1, log.last_revision()) {
        let events = events
            .events
            .iter()
            .map(|event| Committed {
                event: event.clone(),
                previous: None,
            })
            .collect();
        committed.insert(revision, events);
    }
    let mut report = WatchReport {
        sessions: sessions.len(),
        ..WatchReport::default()
    };
    for session in sessions {
        let mut checker = SessionChecker {
            log,
            committed: &committed,
            compactions,
            session,
            violations: Vec::new(),
            unverifiable: false,
            events_verified: 0,
        };
        checker.check();
        if checker.unverifiable {
            report.sessions_unverifiable += 1;
        }
        report.events_verified += checker.events_verified;
        report.violations.extend(
            checker
                .violations
                .into_iter()
                .take(VIOLATIONS_PER_SESSION_MAX),
        );
    }
    report
}

struct SessionChecker<'a> {
    log: &'a EventLog,
    committed: &'a BTreeMap<Revision, Vec<Committed>>,
    compactions: &'a [Compaction],
    session: &'a WatchSession,
    violations: Vec<WatchViolation>,
    unverifiable: bool,
    events_verified: usize,
}

impl SessionChecker<'_> {
    fn check(&mut self) {
        let id = self.session.id;
        let request = &self.session.request;
        // The first revision the watch must deliver, when known.
        let mut start: Option<Revision> =
            (request.start_revision > 0).then_some(request.start_revision);
        // The revision the stream has vouched for: everything up to it was sent.
        let mut reached: Option<Revision> = None;
        let mut last_revision: Option<Revision> = None;
        // Whether the previous response ended mid-revision (fragment).
        let mut continues_fragment = false;
        let mut cancelled = false;
        let mut delivered: BTreeMap<Revision, Vec<Event>> = BTreeMap::new();
        for (position, (_, response)) in self.session.responses.iter().enumerate() {
            if cancelled {
                self.violations.push(WatchViolation::AfterCancel {
                    session: id,
                    response: position,
                });
                continue;
            }
            if response.created && start.is_none() {
                start = Some(response.header_revision + 1);
            }
            if response.canceled {
                cancelled = true;
                if response.compact_revision > 0 {
                    let next = last_revision.map(|revision| revision + 1).or(start);
                    self.check_compacted_cancel(response.compact_revision, next);
                }
            }
            if let Some(highest) = response
                .events
                .iter()
                .map(|event| event.kv.mod_revision)
                .max()
            {
                if response.header_revision < highest {
                    self.violations.push(WatchViolation::HeaderBehindEvents {
                        session: id,
                        response: position,
                        header: response.header_revision,
                        revision: highest,
                    });
                }
            } else if !response.created && !response.canceled {
                // A progress notification: everything up to its header was sent.
                reached = reached.max(Some(response.header_revision));
            }
            for (index, event) in response.events.iter().enumerate() {
                let revision = event.kv.mod_revision;
                if let Some(previous) = last_revision {
                    let same_revision_allowed = index > 0 || continues_fragment;
                    if revision < previous {
                        self.violations.push(WatchViolation::OutOfOrder {
                            session: id,
                            previous,
                            revision,
                        });
                        continue;
                    }
                    if revision == previous && !same_revision_allowed {
                        let reason = if delivered.contains_key(&revision) {
                            WatchViolation::SplitRevision {
                                session: id,
                                revision,
                                first: position.saturating_sub(1),
                                second: position,
                            }
                        } else {
                            WatchViolation::OutOfOrder {
                                session: id,
                                previous,
                                revision,
                            }
                        };
                        self.violations.push(reason);
                    }
                }
                last_revision = Some(revision);
                delivered.entry(revision).or_default().push(event.clone());
            }
            continues_fragment = response.fragment;
            reached = reached.max(last_revision);
        }
        self.check_compacted_start(start, &delivered, cancelled);
        self.check_delivered(&delivered);
        if let (Some(start), Some(reached)) = (start, reached) {
            self.check_gaps(start, reached, &delivered);
        }
    }

    /// The watch was cancelled for compaction at `compact_revision` while
    /// its next revision was `next`.
    fn check_compacted_cancel(&mut self, compact_revision: Revision, next: Option<Revision>) {
        let requested = self
            .compactions
            .iter()
            .any(|compaction| compaction.revision == compact_revision);
        if !requested {
            self.violations.push(WatchViolation::Compaction {
                session: self.session.id,
                reason: format!(
                    "cancelled with compact revision {compact_revision}, which nobody requested"
                ),
            });
        }
        if let Some(next) = next {
            if next >= compact_revision {
                self.violations.push(WatchViolation::Compaction {
                    session: self.session.id,
                    reason: format!(
                        "cancelled with compact revision {compact_revision} although its next revision {next} was retained"
                    ),
                });
            }
        }
    }

    /// A watch created, on a member that had applied it, after an
    /// acknowledged compaction above its start must not serve events from
    /// below that compaction. A watch is served from the member's own state
    /// (as etcd's are): a member that lags behind the compaction may still
    /// serve those revisions, so only compactions the member had applied
    /// count (its revision at creation is past the compaction's).
    fn check_compacted_start(
        &mut self,
        start: Option<Revision>,
        delivered: &BTreeMap<Revision, Vec<Event>>,
        cancelled: bool,
    ) {
        let Some(start) = start else { return };
        let revision_at_creation = self
            .session
            .responses
            .iter()
            .find(|(_, response)| response.created)
            .map(|(_, response)| response.header_revision);
        let compacted_before_creation = self
            .compactions
            .iter()
            .filter(|compaction| {
                compaction
                    .acknowledged_at
                    .is_some_and(|at| at < self.session.created_at)
            })
            .filter(
                |compaction| match (compaction.acknowledged_revision, revision_at_creation) {
                    (Some(compacted_at), Some(created_at)) => created_at > compacted_at,
                    _ => false,
                },
            )
            .map(|compaction| compaction.revision)
            .max();
        let Some(compacted) = compacted_before_creation else {
            return;
        };
        if start >= compacted {
            return;
        }
        if let Some((revision, _)) = delivered.range(..compacted).next() {
            self.violations.push(WatchViolation::Compaction {
                session: self.session.id,
                reason: format!(
                    "started at {start} after compaction to {compacted} was acknowledged, yet delivered revision {revision}"
                ),
            });
        } else if !delivered.is_empty() && !cancelled {
            self.violations.push(WatchViolation::Compaction {
                session: self.session.id,
                reason: format!(
                    "started at {start} after compaction to {compacted} was acknowledged, yet was not cancelled"
                ),
            });
        }
    }

    /// Every delivered revision holds exactly the matching committed events.
    fn check_delivered(&mut self, delivered: &BTreeMap<Revision, Vec<Event>>) {
        let request = &self.session.request;
        for (revision, events) in delivered {
            let Some(committed) = self.committed.get(revision) else {
                self.unverifiable = true;
                continue;
            };
            let expected: Vec<&Committed> = committed
                .iter()
                .filter(|committed| delivers(request, &committed.event))
                .collect();
            let same = events.len() == expected.len()
                && events.iter().zip(&expected).all(|(event, committed)| {
                    event.kind == committed.event.kind && event.kv == committed.event.kv
                });
            if !same {
                self.violations.push(WatchViolation::WrongEvents {
                    session: self.session.id,
                    revision: *revision,
                    delivered: events.clone(),
                    expected: expected
                        .iter()
                        .map(|committed| committed.event.clone())
                        .collect(),
                });
                continue;
            }
            self.events_verified += events.len();
            for (event, committed) in events.iter().zip(&expected) {
                let expected_previous = if request.prev_kv {
                    match &committed.previous {
                        Some(previous) => previous.clone(),
                        None => {
                            self.unverifiable = true;
                            continue;
                        }
                    }
                } else {
                    None
                };
                if event.prev_kv != expected_previous {
                    self.violations.push(WatchViolation::WrongPreviousKeyValue {
                        session: self.session.id,
                        revision: *revision,
                        key: String::from_utf8_lossy(&event.kv.key).into_owned(),
                        delivered: event.prev_kv.clone(),
                        expected: expected_previous,
                    });
                }
            }
        }
    }

    /// Every matching committed revision in `start..=reached` was delivered.
    fn check_gaps(
        &mut self,
        start: Revision,
        reached: Revision,
        delivered: &BTreeMap<Revision, Vec<Event>>,
    ) {
        if start > reached {
            return;
        }
        if !self
            .log
            .covers(start.max(self.log.initial_revision() + 1), reached)
        {
            self.unverifiable = true;
        }
        let request = &self.session.request;
        let matching: BTreeSet<Revision> = self
            .committed
            .range(start..=reached)
            .filter(|(_, events)| {
                events
                    .iter()
                    .any(|committed| delivers(request, &committed.event))
            })
            .map(|(revision, _)| *revision)
            .collect();
        for revision in matching {
            if !delivered.contains_key(&revision) {
                self.violations.push(WatchViolation::Gap {
                    session: self.session.id,
                    revision,
                    reached,
                });
            }
        }
    }
}
