//! [`Raft`]: one node's consensus state machine and its public API.
//!
//! The node is driven from outside: [`Raft::tick`] advances logical time,
//! [`Raft::step`] takes a peer's message, [`Raft::propose`] and friends take
//! client requests, and every effect (disk writes, messages, entries to
//! apply, read answers) leaves through [`Raft::ready`] as a [`Ready`] that
//! the driver carries out and hands back with [`Raft::advance`].
//!
//! Role changes happen only in `become_follower`, `become_pre_candidate`,
//! `become_candidate` and `become_leader`. Replication lives in
//! `replication.rs`, elections in `election.rs`; this file holds the state,
//! the public API and message dispatch.

use std::collections::{BTreeMap, BTreeSet};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tracing::{debug, info, trace};

use super::config::Config;
use super::entry::{
    ConfChange, ConfState, Entry, EntryKind, HardState, Index, NodeId, Snapshot, SnapshotMetadata,
    Term,
};
use super::log::{entry_bytes, RaftLog};
use super::membership;
use super::message::{Message, MessageBody};
use super::progress::Progress;
use super::read_only::{ReadOnly, READS_PENDING_MAX};
use super::ready::{ReadState, Ready, Role, SoftState};

/// At most this many bytes of committed entries in one [`Ready`] (at least
/// one entry); the rest follow in later Readies.
pub const READY_COMMITTED_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// How a node starts.
#[derive(Clone, Debug)]
pub enum Start {
    /// A founding member of a new cluster, with the initial voters (itself included).
    New {
        /// The initial voters.
        voters: BTreeSet<NodeId>,
    },
    /// A member added to a running cluster: it waits, as a follower with an
    /// empty log, for the leader to contact it.
    Join,
    /// A restart from what an earlier run persisted. A node that never
    /// persisted anything (it crashed before its first Ready) should start
    /// with `New` or `Join` again instead: without the bootstrap snapshot it
    /// has no configuration and waits, like a joiner, for a leader.
    Restart(PersistedState),
}

/// What the driver persisted, handed back on restart.
#[derive(Clone, Debug, Default)]
pub struct PersistedState {
    /// The last hard state written.
    pub hard_state: HardState,
    /// The latest snapshot, if any (its data is needed to catch up followers).
    /// For a founding member that never compacted, this is the bootstrap
    /// snapshot at index 0 from its first Ready.
    pub snapshot: Option<Snapshot>,
    /// The log entries after the snapshot, in index order.
    pub entries: Vec<Entry>,
}

/// Why a proposal or read was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the leader and knows no leader to forward to.
    #[error("not leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader this node last heard of, if any.
        leader_hint: Option<NodeId>,
    },
    /// The leader is transferring leadership and refuses new proposals.
    #[error("leader transfer in progress")]
    TransferInProgress,
    /// Too many uncommitted bytes; retry after commit catches up.
    #[error("too many uncommitted bytes ({uncommitted_bytes} > {uncommitted_bytes_max})")]
    Overloaded {
        /// Uncommitted bytes now.
        uncommitted_bytes: u64,
        /// The configured bound.
        uncommitted_bytes_max: u64,
    },
    /// A membership change is still pending (one change at a time), or the
    /// leader has not yet committed an entry of its own term.
    #[error("a membership change is already pending")]
    ConfChangePending,
    /// The membership change does not fit the current configuration (adding
    /// a member twice, removing a non-member, leaving zero voters, ...).
    #[error("membership change refused: {reason}")]
    ConfChangeRefused {
        /// What is wrong with it.
        reason: String,
    },
    /// Too many reads are waiting for leadership confirmation.
    #[error("too many pending reads ({reads_pending} >= {reads_pending_max})")]
    ReadsOverloaded {
        /// Reads pending now.
        reads_pending: usize,
        /// The bound.
        reads_pending_max: usize,
    },
}

/// A snapshot of a node's state for observers (status RPCs, the simulator's checkers).
#[derive(Clone, Debug)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub commit: Index,
    /// Its applied index.
    pub applied: Index,
    /// Its last log index.
    pub last_index: Index,
    /// Its current configuration.
    pub conf_state: ConfState,
    /// On a leader, each member's match index.
    pub match_index: BTreeMap<NodeId, Index>,
    /// The candidate this node voted for in `term`.
    pub vote: Option<NodeId>,
    /// The first index still in the in-memory log.
    pub first_index: Index,
    /// On a leader, the member leadership is being transferred to.
    pub lead_transferee: Option<NodeId>,
}

/// A snapshot being received chunk by chunk.
#[derive(Clone, Debug)]
pub(crate) struct IncomingSnapshot {
    pub(crate) metadata: SnapshotMetadata,
    pub(crate) data: Vec<u8>,
}

/// One node's Raft state machine. Pure: time enters only through [`Raft::tick`],
/// randomness only from `Config::seed`, I/O only through [`Ready`].
#[derive(Debug)]
pub struct Raft {
    pub(crate) id: NodeId,
    pub(crate) config: Config,
    /// Invariant: never decreases.
    pub(crate) term: Term,
    /// Invariant: set at most once per term.
    pub(crate) vote: Option<NodeId>,
    pub(crate) role: Role,
    pub(crate) leader: Option<NodeId>,
    pub(crate) log: RaftLog,
    /// The latest configuration in the log (effective on append).
    pub(crate) conf_state: ConfState,
    /// The index of the entry that set `conf_state` (or the snapshot index).
    pub(crate) conf_index: Index,
    /// On a leader: every member but itself, plus members being removed
    /// until their removal commits.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    pub(crate) votes_granted: BTreeSet<NodeId>,
    pub(crate) votes_refused: BTreeSet<NodeId>,
    pub(crate) election_elapsed: u64,
    pub(crate) heartbeat_elapsed: u64,
    /// Drawn from [election, 2 × election) at every reset.
    pub(crate) randomized_election_timeout: u64,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) lead_transferee: Option<NodeId>,
    /// On a leader, the index of the latest configuration entry it may not
    /// yet build upon: no new change until it commits.
    pub(crate) pending_conf_index: Index,
    /// On a leader, bytes of its own entries not yet committed.
    pub(crate) uncommitted_bytes: u64,
    pub(crate) read_only: ReadOnly,
    pub(crate) read_states: Vec<ReadState>,
    pub(crate) messages: Vec<Message>,
    /// On a leader, new entries or a new commit index await a broadcast,
    /// done once per Ready so that many proposals share one append.
    pub(crate) broadcast_pending: bool,
    pub(crate) incoming_snapshot: Option<IncomingSnapshot>,
    soft_state_reported: SoftState,
    hard_state_reported: HardState,
    /// A Ready was handed out and not yet advanced.
    ready_outstanding: bool,
}

impl Raft {
    /// Creates a node.
    ///
    /// `Start::New` founds a cluster with an empty log; its configuration is
    /// a bootstrap snapshot at index 0 (empty data) that the first Ready asks
    /// the driver to persist. `Start::Join` waits, with no configuration, for
    /// the leader's snapshot and entries. `Start::Restart` recovers the
    /// configuration from the snapshot and the configuration entries after it.
    pub fn new(config: Config, start: Start) -> Raft {
        assert!(config.id.0 != 0, "node id 0 is reserved");
        assert!(
            config.heartbeat_interval_ticks > 0,
            "heartbeat interval must be positive"
        );
        assert!(
            config.election_timeout_ticks > config.heartbeat_interval_ticks,
            "election timeout {} must exceed heartbeat interval {}",
            config.election_timeout_ticks,
            config.heartbeat_interval_ticks
        );
        assert!(
            config.inflight_messages_max > 0,
            "inflight_messages_max must be positive"
        );
        assert!(
            config.message_bytes_max > 0,
            "message_bytes_max must be positive"
        );
        assert!(
            config.snapshot_chunk_bytes_max > 0,
            "snapshot_chunk_bytes_max must be positive"
        );
        let id = config.id;
        let (log, hard_state, bootstrap) = match start {
            Start::New { voters } => {
                assert!(
                    voters.contains(&id),
                    "founding voters {voters:?} must include {id}"
                );
                let snapshot = Snapshot {
                    metadata: SnapshotMetadata {
                        index: Index(0),
                        term: Term(0),
                        conf_state: ConfState {
                            voters,
                            learners: BTreeSet::new(),
                        },
                    },
                    data: Vec::new(),
                };
                (
                    RaftLog::new(Some(snapshot), Vec::new(), Index(0)),
                    HardState::default(),
                    true,
                )
            }
            Start::Join => (
                RaftLog::new(None, Vec::new(), Index(0)),
                HardState::default(),
                false,
            ),
            Start::Restart(persisted) => {
                // Entries the snapshot already covers may linger in storage.
                let base = persisted
                    .snapshot
                    .as_ref()
                    .map_or(Index(0), |s| s.metadata.index);
                let entries: Vec<Entry> = persisted
                    .entries
                    .into_iter()
                    .filter(|e| e.index > base)
                    .collect();
                let log = RaftLog::new(persisted.snapshot, entries, persisted.hard_state.commit);
                (log, persisted.hard_state, false)
            }
        };
        let mut log = log;
        if bootstrap {
            log.mark_snapshot_unstable();
        }
        let rng = ChaCha8Rng::seed_from_u64(config.seed ^ id.0);
        let mut raft = Raft {
            id,
            config,
            term: hard_state.term,
            vote: hard_state.vote,
            role: Role::Follower,
            leader: None,
            log,
            conf_state: ConfState::default(),
            conf_index: Index(0),
            progress: BTreeMap::new(),
            votes_granted: BTreeSet::new(),
            votes_refused: BTreeSet::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: 0,
            rng,
            lead_transferee: None,
            pending_conf_index: Index(0),
            uncommitted_bytes: 0,
            read_only: ReadOnly::default(),
            read_states: Vec::new(),
            messages: Vec::new(),
            broadcast_pending: false,
            incoming_snapshot: None,
            soft_state_reported: SoftState {
                leader: None,
                role: Role::Follower,
            },
            hard_state_reported: hard_state,
            ready_outstanding: false,
        };
        raft.refresh_configuration();
        raft.reset_timers();
        debug!(
            id = %raft.id,
            term = raft.term.0,
            commit = raft.log.committed().0,
            last_index = raft.log.last_index().0,
            voters = ?raft.conf_state.voters,
            "raft node created"
        );
        raft.check_invariants();
        raft
    }

    /// Advances logical time by one tick (heartbeats, election timeouts).
    pub fn tick(&mut self) {
        match self.role {
            Role::Leader => self.tick_leader(),
            Role::Follower | Role::PreCandidate | Role::Candidate => self.tick_election(),
        }
        self.check_invariants();
    }

    /// Takes a message from a peer.
    pub fn step(&mut self, message: Message) {
        assert!(
            message.to == self.id,
            "message for {} stepped into {}",
            message.to,
            self.id
        );
        trace!(id = %self.id, term = self.term.0, ?message, "step");
        self.step_message(message);
        self.check_invariants();
    }

    /// Proposes application data. On a follower it is forwarded to the
    /// leader (fire and forget); with no known leader it is refused.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(), ProposeError> {
        let result = self.propose_entry(EntryKind::Normal, data);
        self.check_invariants();
        result
    }

    /// Proposes a membership change: one at a time, effective on every node
    /// when appended to its log (see `membership.rs` for why this is safe).
    /// The driver also sees the entry in `committed_entries`.
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<(), ProposeError> {
        let result = self.propose_entry(EntryKind::ConfChange, change.encode());
        self.check_invariants();
        result
    }

    /// Requests a linearizable read point; answered by a `ReadState` in a later Ready.
    pub fn read_index(&mut self, context: Vec<u8>) -> Result<(), ProposeError> {
        let result = match self.role {
            Role::Leader => self.leader_read(context, self.id),
            _ => match self.leader {
                Some(leader) => {
                    self.send(leader, MessageBody::ReadIndex { context });
                    Ok(())
                }
                None => Err(ProposeError::NotLeader { leader_hint: None }),
            },
        };
        self.check_invariants();
        result
    }

    /// Asks the leader to hand leadership to `to`. On the leader, this
    /// starts the transfer; on a follower asking for itself, the request is
    /// forwarded to the leader. New proposals are refused while a transfer
    /// runs; it is abandoned after an election timeout.
    pub fn transfer_leader(&mut self, to: NodeId) {
        match self.role {
            Role::Leader => self.start_transfer(to),
            _ if to == self.id => match self.leader {
                Some(leader) => self.send(leader, MessageBody::TransferLeader),
                None => debug!(id = %self.id, "no leader to ask for a transfer"),
            },
            _ => debug!(id = %self.id, to = %to, "only the leader or the transferee can transfer"),
        }
        self.check_invariants();
    }

    /// Starts an election now (with pre-vote first when configured).
    pub fn campaign(&mut self) {
        self.hup(false);
        self.check_invariants();
    }

    /// Hands the core a snapshot of the state machine at `index` (≤ applied);
    /// the log before it is compacted. The driver persists the snapshot
    /// itself; it does not come back in a Ready. A stale index is ignored.
    pub fn compact(&mut self, index: Index, data: Vec<u8>) {
        if index <= self.log.snapshot_index() {
            debug!(id = %self.id, index = index.0, "compaction at or below the snapshot ignored");
            return;
        }
        assert!(
            index <= self.log.applied(),
            "compaction at {index} beyond applied {}",
            self.log.applied()
        );
        let term = match self.log.term_of(index) {
            Some(term) => term,
            None => panic!(
                "compaction at {index}: no term (last {})",
                self.log.last_index()
            ),
        };
        let conf_state = self.configuration_at(index);
        debug!(id = %self.id, index = index.0, term = term.0, "log compacted");
        self.log.compact(Snapshot {
            metadata: SnapshotMetadata {
                index,
                term,
                conf_state,
            },
            data,
        });
        // The configuration is unchanged; its entry may now lie inside the snapshot.
        self.conf_index = self.conf_index.max(index);
        self.check_invariants();
    }

    /// Tells the core a peer is unreachable (its progress falls back to probing).
    pub fn report_unreachable(&mut self, id: NodeId) {
        if self.role != Role::Leader {
            return;
        }
        if let Some(progress) = self.progress.get_mut(&id) {
            if progress.state == super::progress::ProgressState::Replicate {
                progress.become_probe();
            }
        }
        self.check_invariants();
    }

    /// Tells the core that `id`'s process is gone: its peer port refuses
    /// connections, which the transport learns within a heartbeat of a
    /// crash, long before an election timeout. A follower whose leader that
    /// is forgets it — so its leader lease no longer holds back (pre-)votes —
    /// and campaigns after `1 + rank` ticks, its rank being the number of
    /// other surviving voters with a smaller ID, so that followers who all
    /// learn it at once take turns instead of splitting the vote. Elections
    /// are safe whenever they start; this only moves when. A live leader's
    /// port never refuses connections, and a paused or partitioned one keeps
    /// the usual election timeout.
    pub fn report_leader_down(&mut self, id: NodeId) {
        if self.role != Role::Follower || self.leader != Some(id) {
            return;
        }
        info!(id = %self.id, term = self.term.0, leader = %id, "leader is down: forgetting it");
        self.leader = None;
        if self.promotable() {
            let rank = self
                .conf_state
                .voters
                .iter()
                .filter(|&&voter| voter != id && voter < self.id)
                .count() as u64;
            let ticks_left = (1 + rank).min(self.randomized_election_timeout);
            self.election_elapsed = self.randomized_election_timeout - ticks_left;
        }
        self.check_invariants();
    }

    /// Work for the driver, if any. Call [`Raft::advance`] with it before
    /// asking for the next one.
    pub fn ready(&mut self) -> Option<Ready> {
        assert!(
            !self.ready_outstanding,
            "ready() called again before advance()"
        );
        if self.role == Role::Leader {
            self.flush_leader();
        }
        let soft_state = SoftState {
            leader: self.leader,
            role: self.role,
        };
        let soft_state = (soft_state != self.soft_state_reported).then_some(soft_state);
        let hard_state = self.hard_state();
        let term_or_vote_changed = hard_state.term != self.hard_state_reported.term
            || hard_state.vote != self.hard_state_reported.vote;
        let hard_state = (hard_state != self.hard_state_reported).then_some(hard_state);
        let ready = Ready {
            soft_state,
            hard_state,
            term_or_vote_changed,
            from_leader: self.role == Role::Leader && !term_or_vote_changed,
            snapshot: self.log.take_unstable_snapshot(),
            entries: self.log.unstable_entries().to_vec(),
            messages: std::mem::take(&mut self.messages),
            committed_entries: self.log.next_committed_entries(READY_COMMITTED_BYTES_MAX),
            read_states: std::mem::take(&mut self.read_states),
            term: self.term,
        };
        if let Some(soft_state) = ready.soft_state {
            self.soft_state_reported = soft_state;
        }
        if let Some(hard_state) = ready.hard_state {
            self.hard_state_reported = hard_state;
        }
        if ready.is_empty() {
            return None;
        }
        self.ready_outstanding = true;
        self.check_invariants();
        Some(ready)
    }

    /// Hands back a Ready whose duties are done: its entries and snapshot are
    /// durable and its committed entries applied.
    pub fn advance(&mut self, ready: Ready) {
        assert!(
            self.ready_outstanding,
            "advance() without an outstanding ready()"
        );
        self.ready_outstanding = false;
        if let Some(snapshot) = &ready.snapshot {
            self.log.applied_to(snapshot.metadata.index);
        }
        if let Some(last) = ready.entries.last() {
            self.log.persisted_to(last.index, last.term);
            if self.role == Role::Leader {
                self.maybe_commit();
            }
        }
        if let Some(last) = ready.committed_entries.last() {
            self.log.applied_to(last.index);
        }
        self.check_invariants();
    }

    /// The node's observable state.
    pub fn status(&self) -> Status {
        let mut match_index = BTreeMap::new();
        if self.role == Role::Leader {
            for (&id, progress) in &self.progress {
                match_index.insert(id, progress.match_index);
            }
            match_index.insert(self.id, self.log.persisted());
        }
        Status {
            id: self.id,
            role: self.role,
            term: self.term,
            leader: self.leader,
            commit: self.log.committed(),
            applied: self.log.applied(),
            last_index: self.log.last_index(),
            conf_state: self.conf_state.clone(),
            match_index,
            vote: self.vote,
            first_index: self.log.first_index(),
            lead_transferee: self.lead_transferee,
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// This node's current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The configuration in force (the latest one in the log).
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The commit index.
    pub fn commit_index(&self) -> Index {
        self.log.committed()
    }

    /// The applied index (the last committed entry handed out and advanced).
    pub fn applied_index(&self) -> Index {
        self.log.applied()
    }

    /// The first index of the in-memory log (the snapshot index + 1).
    pub fn first_index(&self) -> Index {
        self.log.first_index()
    }

    /// The last index of the log.
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }

    /// The term of the entry at `index`, if it is the snapshot index or in
    /// the in-memory log.
    pub fn term_of(&self, index: Index) -> Option<Term> {
        self.log.term_of(index)
    }

    /// The in-memory entries in `[low, high)` (clipped to the log).
    pub fn entries(&self, low: Index, high: Index) -> Vec<Entry> {
        self.log.entries_between(low, high).to_vec()
    }

    /// The latest snapshot (the log's base), if any.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.log.snapshot()
    }

    /// The state that must be durable: term, vote and commit index.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed(),
        }
    }

    /// On a leader, the voter best placed to take over (the most up to
    /// date), for a graceful shutdown.
    pub fn transfer_target(&self) -> Option<NodeId> {
        if self.role != Role::Leader {
            return None;
        }
        self.conf_state
            .voters
            .iter()
            .filter(|&&id| id != self.id)
            .filter_map(|id| self.progress.get(id).map(|p| (p.match_index, *id)))
            .max()
            .map(|(_, id)| id)
    }

    // ---- Proposals and reads ----

    fn propose_entry(&mut self, kind: EntryKind, data: Vec<u8>) -> Result<(), ProposeError> {
        match self.role {
            Role::Leader => self.leader_append(kind, data),
            _ => match self.leader {
                Some(leader) => {
                    let entry = Entry {
                        term: Term(0),
                        index: Index(0),
                        kind,
                        data,
                    };
                    self.send(
                        leader,
                        MessageBody::Propose {
                            entries: vec![entry],
                        },
                    );
                    Ok(())
                }
                None => Err(ProposeError::NotLeader { leader_hint: None }),
            },
        }
    }

    /// Appends a new entry to the leader's log; it goes out with the next
    /// Ready's broadcast, batched with every other proposal before it.
    pub(crate) fn leader_append(
        &mut self,
        kind: EntryKind,
        data: Vec<u8>,
    ) -> Result<(), ProposeError> {
        assert!(
            self.role == Role::Leader,
            "leader_append on a {:?}",
            self.role
        );
        if self.lead_transferee.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        let bytes = data.len() as u64;
        if self.uncommitted_bytes > 0
            && self.uncommitted_bytes + bytes > self.config.uncommitted_bytes_max
        {
            return Err(ProposeError::Overloaded {
                uncommitted_bytes: self.uncommitted_bytes + bytes,
                uncommitted_bytes_max: self.config.uncommitted_bytes_max,
            });
        }
        if kind == EntryKind::ConfChange {
            let change =
                ConfChange::decode(&data).map_err(|error| ProposeError::ConfChangeRefused {
                    reason: format!("does not decode: {error}"),
                })?;
            membership::validate(&self.conf_state, &change)
                .map_err(|reason| ProposeError::ConfChangeRefused { reason })?;
            if self.pending_conf_index > self.log.committed() {
                return Err(ProposeError::ConfChangePending);
            }
        }
        let entry = Entry {
            term: self.term,
            index: Index(self.log.last_index().0 + 1),
            kind,
            data,
        };
        let index = entry.index;
        self.append_to_log(&[entry]);
        if self.role != Role::Leader {
            // The new configuration made an earlier removal of this node
            // commit, and it stepped down; the entry stays in its log.
            return Ok(());
        }
        if kind == EntryKind::ConfChange {
            self.pending_conf_index = index;
        }
        self.uncommitted_bytes += bytes;
        self.broadcast_pending = true;
        Ok(())
    }

    pub(crate) fn leader_read(
        &mut self,
        context: Vec<u8>,
        requester: NodeId,
    ) -> Result<(), ProposeError> {
        let reads_pending = self.read_only.pending_count();
        if reads_pending >= READS_PENDING_MAX {
            return Err(ProposeError::ReadsOverloaded {
                reads_pending,
                reads_pending_max: READS_PENDING_MAX,
            });
        }
        if self.committed_in_current_term() {
            self.read_only.add(context, requester, self.log.committed());
        } else {
            self.read_only.wait_for_commit(context, requester);
        }
        Ok(())
    }

    pub(crate) fn committed_in_current_term(&self) -> bool {
        self.log.term_of(self.log.committed()) == Some(self.term)
    }

    /// Hands every confirmed read to its requester.
    pub(crate) fn release_reads(&mut self) {
        for read in self.read_only.release(&self.conf_state.voters, self.id) {
            if read.requester == self.id {
                self.read_states.push(ReadState {
                    index: read.index,
                    context: read.context,
                });
            } else {
                self.send(
                    read.requester,
                    MessageBody::ReadIndexResponse {
                        index: read.index,
                        context: read.context,
                    },
                );
            }
        }
    }

    // ---- Messages ----

    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody) {
        self.send_with_term(to, self.term, body);
    }

    pub(crate) fn send_with_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        assert!(to != self.id, "{} sending to itself: {body:?}", self.id);
        self.messages.push(Message {
            from: self.id,
            to,
            term,
            body,
        });
    }

    fn step_message(&mut self, message: Message) {
        let Message {
            from, term, body, ..
        } = message;
        let is_request = matches!(
            body,
            MessageBody::Propose { .. }
                | MessageBody::ReadIndex { .. }
                | MessageBody::ReadIndexResponse { .. }
                | MessageBody::TransferLeader
        );
        // Client requests relayed between peers are not part of the
        // protocol's term logic: any node may relay them.
        if !is_request {
            if term > self.term {
                let vote_request = match &body {
                    MessageBody::PreVote { .. } => Some(false),
                    MessageBody::Vote { transfer, .. } => Some(*transfer),
                    _ => None,
                };
                if let Some(transfer) = vote_request {
                    if !transfer && self.in_leader_lease() {
                        debug!(
                            id = %self.id,
                            from = %from,
                            term = term.0,
                            "vote request ignored: leader lease"
                        );
                        return;
                    }
                }
                match &body {
                    MessageBody::PreVote { .. }
                    | MessageBody::PreVoteResponse { reject: false } => {}
                    MessageBody::Append { .. }
                    | MessageBody::Heartbeat { .. }
                    | MessageBody::Snapshot { .. } => self.become_follower(term, Some(from)),
                    _ => self.become_follower(term, None),
                }
            } else if term < self.term {
                match &body {
                    MessageBody::Append { .. } | MessageBody::Heartbeat { .. }
                        if self.config.check_quorum || self.config.pre_vote =>
                    {
                        // Tell a stale leader of the newer term, so that a
                        // node that was partitioned away does not stay
                        // stuck on a leader that can no longer win.
                        self.send(
                            from,
                            MessageBody::AppendResponse {
                                reject: false,
                                index: Index(0),
                                reject_hint: Index(0),
                                reject_hint_term: Term(0),
                            },
                        );
                    }
                    MessageBody::PreVote { .. } => {
                        self.send(from, MessageBody::PreVoteResponse { reject: true });
                    }
                    _ => {}
                }
                trace!(id = %self.id, from = %from, term = term.0, "stale message ignored");
                return;
            }
        }
        match body {
            MessageBody::PreVote {
                last_log_index,
                last_log_term,
            } => {
                self.handle_vote_request(from, term, last_log_index, last_log_term, true);
            }
            MessageBody::Vote {
                last_log_index,
                last_log_term,
                ..
            } => {
                self.handle_vote_request(from, term, last_log_index, last_log_term, false);
            }
            MessageBody::PreVoteResponse { reject } => {
                if self.role == Role::PreCandidate
                    && (reject && term == self.term || !reject && term.0 == self.term.0 + 1)
                {
                    self.handle_vote_response(from, reject);
                }
            }
            MessageBody::VoteResponse { reject } => {
                if self.role == Role::Candidate && term == self.term {
                    self.handle_vote_response(from, reject);
                }
            }
            MessageBody::Append {
                prev_log_index,
                prev_log_term,
                entries,
                commit,
            } => {
                self.follow(from);
                self.handle_append(from, prev_log_index, prev_log_term, entries, commit);
            }
            MessageBody::Heartbeat { commit, context } => {
                self.follow(from);
                self.handle_heartbeat(from, commit, context);
            }
            MessageBody::Snapshot {
                metadata,
                offset,
                total_bytes,
                data,
                done,
            } => {
                self.follow(from);
                self.handle_snapshot(from, metadata, offset, total_bytes, data, done);
            }
            MessageBody::AppendResponse {
                reject,
                index,
                reject_hint,
                reject_hint_term,
            } => {
                if self.role == Role::Leader {
                    self.handle_append_response(from, reject, index, reject_hint, reject_hint_term);
                }
            }
            MessageBody::HeartbeatResponse { context } => {
                if self.role == Role::Leader {
                    self.handle_heartbeat_response(from, context);
                }
            }
            MessageBody::SnapshotResponse {
                index,
                next_offset,
                reject,
            } => {
                if self.role == Role::Leader {
                    self.handle_snapshot_response(from, index, next_offset, reject);
                }
            }
            MessageBody::Propose { entries } => {
                if self.role != Role::Leader {
                    debug!(id = %self.id, from = %from, "forwarded proposal dropped: not leader");
                    return;
                }
                for entry in entries {
                    if let Err(error) = self.leader_append(entry.kind, entry.data) {
                        debug!(id = %self.id, from = %from, %error, "forwarded proposal refused");
                    }
                }
            }
            MessageBody::ReadIndex { context } => {
                if self.role != Role::Leader {
                    debug!(id = %self.id, from = %from, "forwarded read dropped: not leader");
                    return;
                }
                if let Err(error) = self.leader_read(context, from) {
                    debug!(id = %self.id, from = %from, %error, "forwarded read refused");
                }
            }
            MessageBody::ReadIndexResponse { index, context } => {
                self.read_states.push(ReadState { index, context });
            }
            MessageBody::TimeoutNow => {
                if self.role == Role::Follower && term == self.term {
                    debug!(id = %self.id, from = %from, "timeout now: campaigning for transfer");
                    self.hup(true);
                }
            }
            MessageBody::TransferLeader => {
                if self.role == Role::Leader {
                    self.start_transfer(from);
                } else {
                    debug!(id = %self.id, from = %from, "transfer request dropped: not leader");
                }
            }
        }
    }

    /// Called on a message from the leader of our term.
    fn follow(&mut self, leader: NodeId) {
        match self.role {
            Role::Leader => panic!(
                "two leaders in term {}: {} and {leader}",
                self.term, self.id
            ),
            Role::PreCandidate | Role::Candidate => self.become_follower(self.term, Some(leader)),
            Role::Follower => {
                if self.leader != Some(leader) {
                    self.leader = Some(leader);
                    debug!(id = %self.id, term = self.term.0, leader = %leader, "following");
                }
            }
        }
        self.election_elapsed = 0;
    }

    // ---- Configuration ----

    /// Recomputes the configuration from the log's base and every
    /// configuration entry after it.
    pub(crate) fn refresh_configuration(&mut self) {
        let last = self.log.last_index();
        let (conf_state, conf_index) = self.configuration_through(last);
        if conf_state != self.conf_state {
            debug!(
                id = %self.id,
                voters = ?conf_state.voters,
                learners = ?conf_state.learners,
                index = conf_index.0,
                "configuration changed"
            );
        }
        self.conf_state = conf_state;
        self.conf_index = conf_index;
        self.on_configuration_changed();
    }

    fn configuration_at(&self, index: Index) -> ConfState {
        self.configuration_through(index).0
    }

    fn configuration_through(&self, index: Index) -> (ConfState, Index) {
        let mut conf_state = self
            .log
            .snapshot()
            .map(|s| s.metadata.conf_state.clone())
            .unwrap_or_default();
        let mut conf_index = self.log.snapshot_index();
        for entry in self
            .log
            .entries_between(self.log.first_index(), Index(index.0 + 1))
        {
            if entry.kind == EntryKind::ConfChange {
                membership::apply(&mut conf_state, &membership::decode(entry));
                conf_index = entry.index;
            }
        }
        (conf_state, conf_index)
    }

    fn on_configuration_changed(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let next_index = Index(self.log.last_index().0 + 1);
        let members: Vec<NodeId> = self
            .conf_state
            .voters
            .iter()
            .chain(&self.conf_state.learners)
            .copied()
            .collect();
        for id in members {
            if id != self.id && !self.progress.contains_key(&id) {
                let mut progress = Progress::new(next_index, self.config.inflight_messages_max);
                progress.recent_active = true;
                self.progress.insert(id, progress);
            }
        }
        if let Some(transferee) = self.lead_transferee {
            if !self.conf_state.voters.contains(&transferee) {
                self.lead_transferee = None;
            }
        }
        self.maybe_commit();
        self.release_reads();
        self.broadcast_pending = true;
    }

    /// Appends entries to the log, and follows any configuration change
    /// among them or undone by the truncation they cause.
    pub(crate) fn append_to_log(&mut self, entries: &[Entry]) {
        let truncated = self.log.append(entries);
        self.after_log_change(truncated, entries);
    }

    pub(crate) fn after_log_change(&mut self, truncated: Option<Index>, entries: &[Entry]) {
        let undone = truncated.is_some_and(|index| index <= self.conf_index);
        let added = entries.iter().any(|e| e.kind == EntryKind::ConfChange);
        if undone || added {
            self.refresh_configuration();
        }
    }

    /// True when this node may campaign: it has a log base and is a voter,
    /// either in its latest configuration or in the one its commit index
    /// has reached. The second case is a node whose own removal is still
    /// uncommitted: its log may be the only up-to-date one holding the
    /// removal (say, a leader deposed right after appending it), and if it
    /// could not campaign the others could never be elected over it.
    /// Votes are always counted in the latest configuration, so this
    /// changes liveness only, never safety.
    pub(crate) fn promotable(&self) -> bool {
        if !self.log.has_base() {
            return false;
        }
        if self.conf_state.voters.contains(&self.id) {
            return true;
        }
        self.conf_index > self.log.committed()
            && self
                .configuration_at(self.log.committed())
                .voters
                .contains(&self.id)
    }

    /// A follower that heard from its leader within the election timeout
    /// ignores vote requests (with check-quorum), so that a node rejoining
    /// from a partition cannot depose a healthy leader.
    fn in_leader_lease(&self) -> bool {
        self.config.check_quorum
            && self.leader.is_some()
            && self.election_elapsed < self.config.election_timeout_ticks
    }

    // ---- Invariants ----

    /// O(n) consistency checks, run at the end of every entry point in
    /// debug builds (the simulator runs with them on).
    pub(crate) fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        self.log.check_invariants();
        self.read_only.check_invariants();
        let (conf_state, conf_index) = self.configuration_through(self.log.last_index());
        assert_eq!(
            conf_state, self.conf_state,
            "configuration drifted from the log"
        );
        assert_eq!(
            conf_index, self.conf_index,
            "configuration index drifted from the log"
        );
        match self.role {
            Role::Leader => {
                assert_eq!(self.leader, Some(self.id), "leader does not lead itself");
                assert_eq!(self.vote, Some(self.id), "leader did not vote for itself");
                for id in self
                    .conf_state
                    .voters
                    .iter()
                    .chain(&self.conf_state.learners)
                {
                    assert!(
                        *id == self.id || self.progress.contains_key(id),
                        "leader has no progress for member {id}"
                    );
                }
                for (id, progress) in &self.progress {
                    assert!(
                        progress.match_index < progress.next_index,
                        "progress of {id}: match {} >= next {}",
                        progress.match_index,
                        progress.next_index
                    );
                    assert!(
                        progress.match_index <= self.log.last_index(),
                        "progress of {id}: match {} beyond last {}",
                        progress.match_index,
                        self.log.last_index()
                    );
                    assert!(
                        progress.inflights.count() <= self.config.inflight_messages_max,
                        "inflights of {id} over bound"
                    );
                }
            }
            Role::Candidate => {
                assert_eq!(
                    self.vote,
                    Some(self.id),
                    "candidate did not vote for itself"
                );
                assert!(self.leader.is_none(), "candidate with a leader");
            }
            Role::PreCandidate => assert!(self.leader.is_none(), "pre-candidate with a leader"),
            Role::Follower => assert!(self.progress.is_empty(), "follower tracks progress"),
        }
        if let Some(leader) = self.leader {
            assert!(
                leader != self.id || self.role == Role::Leader,
                "{} names itself leader as {:?}",
                self.id,
                self.role
            );
        }
        let mut log_bytes = 0u64;
        for entry in self
            .log
            .entries_between(Index(self.log.committed().0 + 1), Index(u64::MAX))
        {
            if entry.term == self.term {
                log_bytes += entry_bytes(entry);
            }
        }
        if self.role == Role::Leader {
            assert!(
                self.uncommitted_bytes <= log_bytes,
                "uncommitted bytes {} exceed the uncommitted entries' {log_bytes}",
                self.uncommitted_bytes
            );
        }
    }

    /// Resets the timers and draws a new randomized election timeout.
    pub(crate) fn reset_timers(&mut self) {
        use rand::Rng;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        let base = self.config.election_timeout_ticks;
        self.randomized_election_timeout = self.rng.gen_range(base..2 * base);
    }
}
