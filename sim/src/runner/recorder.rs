//! [`Recorder`]: everything one run observes, in one place the node
//! observers, the clients and the nemesis all write to: the Raft checker fed
//! after every Ready, the committed event log fed from every apply, lease
//! revocations, the per-link message faults, every member's durable log and
//! latest indexes for the convergence checker, and the event trace whose
//! hash proves a run replays byte for byte.
//!
//! The simulation is single-threaded, so a plain mutex never contends; it
//! only satisfies the `Send + Sync` bound of the node observer.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cairn_core::kv::{Command, KvStore, LeaseId, RangeRequest};
use cairn_core::raft::{Entry, Index, MessageBody, NodeId, Role, Term};
use cairn_server::node::{
    AppliedCommand, MessageFate, NodeObserver, ReadyObservation, RecoveryObservation,
};
use cairn_server::transport::PeerMessage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::fsync_faults::FsyncFaults;
use crate::checker::convergence::{MatchChecker, MatchViolation, MemberProbe};
use crate::checker::lease::LeaseRevocation;
use crate::checker::raft::{fnv1a, EntryDigest, NodeObservation, RaftChecker, RaftViolation};
use crate::event_log::{EventLog, EventLogConflict};
use crate::time::SimTime;

/// The store's revision before the first write (etcd starts at 1).
pub const INITIAL_REVISION: i64 = 1;
/// Trace lines kept for the failure report (the hash covers all of them).
pub const TRACE_LINES_KEPT: usize = 200_000;

/// Message faults on every link, in percent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkFaults {
    /// Chance a message is lost.
    pub loss_percent: u32,
    /// Chance a message is sent twice.
    pub duplicate_percent: u32,
}

/// The run's event trace: a running hash over every line, and the latest
/// lines for the failure report.
#[derive(Debug)]
pub struct Trace {
    hash: u64,
    lines: VecDeque<String>,
    total: u64,
}

impl Trace {
    fn new() -> Trace {
        Trace {
            hash: fnv1a(std::iter::empty()),
            lines: VecDeque::new(),
            total: 0,
        }
    }

    /// Appends one line stamped with simulated time.
    pub fn line(&mut self, at: SimTime, text: &str) {
        let line = format!("{at} {text}");
        for byte in line.bytes().chain(std::iter::once(b'\n')) {
            self.hash = (self.hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        if self.lines.len() == TRACE_LINES_KEPT {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
        self.total += 1;
    }

    /// The hash over every line so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// How many lines were traced.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> impl Iterator<Item = &String> {
        self.lines.iter()
    }
}

/// A member as of its latest Ready, for the convergence check.
#[derive(Clone, Debug)]
struct LatestReady {
    probe: MemberProbe,
    term: Term,
    role: Role,
    /// Voters and learners of its configuration.
    configuration: BTreeSet<NodeId>,
}

/// What the run observed.
#[derive(Debug)]
pub struct Recorder {
    origin: tokio::time::Instant,
    /// Raft invariants.
    pub raft: RaftChecker,
    /// The first Raft violation (the checker stops at it).
    pub raft_violation: Option<RaftViolation>,
    /// Committed revisions as members applied them.
    pub event_log: EventLog,
    /// Members that applied different events at one revision.
    pub conflicts: Vec<EventLogConflict>,
    /// Lease revocations, first application each.
    pub revocations: BTreeMap<LeaseId, LeaseRevocation>,
    /// Each member's incarnation (bumped at every start).
    pub incarnations: BTreeMap<NodeId, u64>,
    /// Each member's last observed applied index (to hash state only on change).
    last_applied: BTreeMap<NodeId, Index>,
    /// Durable logs and leaders' match indexes.
    pub matches: MatchChecker,
    /// The first match index a follower did not hold durably.
    pub match_violation: Option<MatchViolation>,
    /// Each running incarnation's latest Ready.
    latest: BTreeMap<NodeId, LatestReady>,
    /// Set by the runner once it waits for convergence: from then on every
    /// Ready hashes the member's store (when its applied index moved).
    pub hash_states: bool,
    /// Message faults in force.
    pub links: LinkFaults,
    /// Messages lost and duplicated by the link faults.
    pub messages_dropped: u64,
    /// Messages duplicated.
    pub messages_duplicated: u64,
    rng: ChaCha8Rng,
    /// The event trace.
    pub trace: Trace,
}

impl Recorder {
    /// A recorder whose clock starts now and whose message faults draw from `seed`.
    pub fn new(seed: u64) -> Recorder {
        Recorder {
            origin: tokio::time::Instant::now(),
            raft: RaftChecker::new(),
            raft_violation: None,
            event_log: EventLog::new(INITIAL_REVISION),
            conflicts: Vec::new(),
            revocations: BTreeMap::new(),
            incarnations: BTreeMap::new(),
            last_applied: BTreeMap::new(),
            matches: MatchChecker::new(),
            match_violation: None,
            latest: BTreeMap::new(),
            hash_states: false,
            links: LinkFaults::default(),
            messages_dropped: 0,
            messages_duplicated: 0,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x6c69_6e6b),
            trace: Trace::new(),
        }
    }

    /// Simulated time since the run started.
    pub fn now(&self) -> SimTime {
        SimTime::from_duration(self.origin.elapsed())
    }

    /// Traces one line at the current simulated time.
    pub fn trace(&mut self, text: &str) {
        let now = self.now();
        self.trace.line(now, text);
    }

    /// Counts a new incarnation of `member` (it is starting).
    pub fn new_incarnation(&mut self, member: NodeId) -> u64 {
        let incarnation = self.incarnations.entry(member).or_insert(0);
        *incarnation += 1;
        let incarnation = *incarnation;
        self.last_applied.remove(&member);
        self.latest.remove(&member);
        self.trace(&format!(
            "member {member} starts (incarnation {incarnation})"
        ));
        incarnation
    }

    fn on_ready(&mut self, observation: &ReadyObservation<'_>) {
        let member = observation.member;
        let status = &observation.status;
        let changed = self.last_applied.get(&member) != Some(&observation.applied);
        let state_hash = changed.then(|| state_hash(observation.store));
        self.last_applied.insert(member, observation.applied);
        let raft_observation = NodeObservation {
            node: member,
            incarnation: self.incarnations.get(&member).copied().unwrap_or(0),
            term: status.term,
            role: status.role,
            leader: status.leader,
            commit: status.commit,
            applied: observation.applied,
            last_index: status.last_index,
            entries: observation.appended.iter().map(EntryDigest::of).collect(),
            state_hash,
        };
        let mut line = format!(
            "ready {member} term={} role={:?} leader={:?} commit={} applied={} last={}",
            status.term.0,
            status.role,
            status.leader.map(|id| id.0),
            status.commit.0,
            observation.applied.0,
            status.last_index.0
        );
        for digest in &raft_observation.entries {
            let _ = write!(
                line,
                " e{}/{}/{:x}",
                digest.index.0, digest.term.0, digest.data_hash
            );
        }
        if let Some(hash) = state_hash {
            let _ = write!(line, " state={hash:x}");
        }
        self.trace(&line);
        self.observe_for_convergence(observation);
        // The committed window in a second observation: the two windows
        // need not be contiguous with each other.
        let committed_observation = (!observation.committed.is_empty()).then(|| NodeObservation {
            entries: observation.committed.iter().map(EntryDigest::of).collect(),
            state_hash: None,
            ..raft_observation.clone()
        });
        for checked in std::iter::once(&raft_observation).chain(committed_observation.as_ref()) {
            if self.raft_violation.is_some() {
                break;
            }
            let now = self.now();
            if let Err(violation) = self.raft.observe(now, checked) {
                self.trace(&format!("RAFT VIOLATION {violation}"));
                self.raft_violation = Some(violation);
            }
        }
    }

    /// Feeds the convergence checker: the member's durable log, a leader's
    /// match indexes, and the member's latest indexes (and state hash).
    fn observe_for_convergence(&mut self, observation: &ReadyObservation<'_>) {
        let member = observation.member;
        let status = &observation.status;
        self.matches.persisted(
            member,
            status.term,
            observation
                .snapshot
                .map(|snapshot| (snapshot.index, snapshot.term)),
            observation
                .appended
                .iter()
                .map(|entry| (entry.index, entry.term)),
        );
        if status.role == Role::Leader && self.match_violation.is_none() {
            if let Err(violation) =
                self.matches
                    .check_leader(member, status.term, &status.match_index)
            {
                self.trace(&format!("MATCH INDEX VIOLATION {violation}"));
                self.match_violation = Some(violation);
            }
        }
        let previous_hash = self
            .latest
            .get(&member)
            .filter(|latest| latest.probe.applied == observation.applied)
            .and_then(|latest| latest.probe.state_hash);
        let state_hash = if self.hash_states {
            previous_hash.or_else(|| Some(observation.store.hash()))
        } else {
            None
        };
        let configuration = status
            .conf_state
            .voters
            .iter()
            .chain(&status.conf_state.learners)
            .copied()
            .collect();
        self.latest.insert(
            member,
            LatestReady {
                probe: MemberProbe {
                    member,
                    commit: status.commit,
                    applied: observation.applied,
                    state_hash,
                },
                term: status.term,
                role: status.role,
                configuration,
            },
        );
    }

    /// The latest probes of the `running` members that belong to the
    /// configuration of the leader of the highest term among them (all of
    /// them when none leads). A running member not seen since it started
    /// has no hash yet.
    pub fn convergence_probes(&self, running: &BTreeSet<NodeId>) -> Vec<MemberProbe> {
        let leader = running
            .iter()
            .filter_map(|member| self.latest.get(member))
            .filter(|latest| latest.role == Role::Leader)
            .max_by_key(|latest| latest.term);
        running
            .iter()
            .filter(|member| leader.is_none_or(|leader| leader.configuration.contains(member)))
            .map(|&member| {
                self.latest.get(&member).map_or(
                    MemberProbe {
                        member,
                        commit: Index(0),
                        applied: Index(0),
                        state_hash: None,
                    },
                    |latest| latest.probe,
                )
            })
            .collect()
    }

    fn on_recovered(&mut self, recovery: &RecoveryObservation<'_>) {
        let snapshot = recovery
            .snapshot
            .map(|snapshot| (snapshot.index, snapshot.term));
        self.matches.recovered(
            recovery.member,
            recovery.term,
            snapshot,
            recovery
                .entries
                .iter()
                .map(|entry| (entry.index, entry.term)),
        );
        let (snapshot_index, snapshot_term) = snapshot.unwrap_or((Index(0), Term(0)));
        let last = recovery
            .entries
            .last()
            .map_or((snapshot_index, snapshot_term), |entry| {
                (entry.index, entry.term)
            });
        self.trace(&format!(
            "recovered {} term={} snapshot={}/{} last={}/{}",
            recovery.member,
            recovery.term.0,
            snapshot_index.0,
            snapshot_term.0,
            last.0 .0,
            last.1 .0
        ));
    }

    fn on_applied(&mut self, applied: &AppliedCommand<'_>) {
        let now = self.now();
        self.trace(&format!(
            "apply {} index={} revision={} events={}",
            applied.member,
            applied.index.0,
            applied.revision,
            applied.events.len()
        ));
        if let Command::LeaseRevoke { id } = applied.command {
            let revision = (!applied.events.is_empty()).then_some(applied.revision);
            let revocation = self.revocations.entry(*id).or_insert(LeaseRevocation {
                lease: *id,
                revision,
                applied_at: now,
            });
            revocation.applied_at = revocation.applied_at.min(now);
        }
        if applied.events.is_empty() {
            return;
        }
        if let Err(conflict) = self.event_log.record(
            applied.member,
            applied.revision,
            applied.events.to_vec(),
            now,
        ) {
            self.trace(&format!("EVENT LOG CONFLICT {conflict}"));
            self.conflicts.push(conflict);
        }
    }

    fn on_send(&mut self, from: NodeId, to: NodeId, message: &PeerMessage) -> MessageFate {
        let links = self.links;
        // A forwarded proposal carries a client write: duplicating it makes
        // the leader append (and apply) the write twice. The TCP transport
        // never duplicates, so the fault model leaves proposals alone (found
        // by flaky-network seed 1; see the runner's report).
        let is_proposal = matches!(
            message,
            PeerMessage::Raft(raft) if matches!(raft.body, MessageBody::Propose { .. })
        );
        if links.loss_percent > 0 && self.rng.gen_range(0..100) < links.loss_percent {
            self.messages_dropped += 1;
            self.trace(&format!("drop {from}->{to}"));
            return MessageFate::Drop;
        }
        if links.duplicate_percent > 0
            && !is_proposal
            && self.rng.gen_range(0..100) < links.duplicate_percent
        {
            self.messages_duplicated += 1;
            self.trace(&format!("duplicate {from}->{to}"));
            return MessageFate::Duplicate;
        }
        MessageFate::Deliver
    }
}

/// A hash of the store's live key-values (key, value, revisions, version,
/// lease): equal stores hash equal on every platform.
fn state_hash(store: &KvStore) -> u64 {
    let everything = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..RangeRequest::default()
    };
    let Ok(response) = store.range(&everything) else {
        return 0;
    };
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&store.revision().to_be_bytes());
    for kv in &response.kvs {
        bytes.extend_from_slice(&(kv.key.len() as u64).to_be_bytes());
        bytes.extend_from_slice(&kv.key);
        bytes.extend_from_slice(&(kv.value.len() as u64).to_be_bytes());
        bytes.extend_from_slice(&kv.value);
        for number in [kv.create_revision, kv.mod_revision, kv.version, kv.lease] {
            bytes.extend_from_slice(&number.to_be_bytes());
        }
    }
    fnv1a(bytes)
}

/// The shared recorder.
#[derive(Clone, Debug)]
pub struct SharedRecorder(Arc<Mutex<Recorder>>);

impl SharedRecorder {
    /// Shares `recorder`.
    pub fn new(recorder: Recorder) -> SharedRecorder {
        SharedRecorder(Arc::new(Mutex::new(recorder)))
    }

    /// Locks it (the simulation is single-threaded: never contended).
    pub fn lock(&self) -> MutexGuard<'_, Recorder> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The [`NodeObserver`] every simulated member gets.
#[derive(Clone, Debug)]
pub struct SimObserver {
    /// Where observations go.
    pub recorder: SharedRecorder,
    /// The fsyncs the nemesis stretches.
    pub fsync_faults: FsyncFaults,
}

impl NodeObserver for SimObserver {
    fn on_ready(&self, observation: &ReadyObservation<'_>) {
        self.recorder.lock().on_ready(observation);
    }

    fn on_applied(&self, applied: &AppliedCommand<'_>) {
        self.recorder.lock().on_applied(applied);
    }

    fn on_send(&self, from: NodeId, to: NodeId, message: &PeerMessage) -> MessageFate {
        self.recorder.lock().on_send(from, to, message)
    }

    fn fsync_delay(&self, member: NodeId, entries: &[Entry]) -> Option<Duration> {
        self.fsync_faults.delay(member, entries)
    }

    fn on_recovered(&self, recovery: &RecoveryObservation<'_>) {
        self.recorder.lock().on_recovered(recovery);
    }
}
