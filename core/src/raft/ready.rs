//! [`Ready`]: everything the core asks of its driver at one point in time.

use serde::{Deserialize, Serialize};

use super::entry::{Entry, HardState, Index, NodeId, Snapshot, Term};
use super::message::Message;

/// A node's role (the Raft paper's server states, plus pre-vote's PreCandidate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks peers whether an election could succeed, without bumping its term.
    PreCandidate,
    /// Has started an election in a new term.
    Candidate,
    /// Leads its term.
    Leader,
}

/// Volatile state the driver may want to observe (not persisted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    /// The leader this node knows of, if any.
    pub leader: Option<NodeId>,
    /// This node's role.
    pub role: Role,
}

/// The answer to a `read_index` request: once the state machine has applied
/// `index`, a read issued with `context` is linearizable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadState {
    /// The commit index at the time leadership was confirmed.
    pub index: Index,
    /// The caller's request context, returned unchanged.
    pub context: Vec<u8>,
}

/// Work for the driver. Obtain with `Raft::ready`, carry out the duties in the
/// order below, then hand it back with `Raft::advance`.
#[derive(Debug, Default)]
#[must_use = "a Ready must be carried out and handed back with advance()"]
pub struct Ready {
    /// Changed role or leader; informational, nothing to persist.
    pub soft_state: Option<SoftState>,
    /// Duty 1: persist before sending `messages`, if `Some`. Only a change
    /// of term or vote needs an fsync ([`Ready::must_sync`]); a hard state
    /// whose commit index alone moved may be written without one, as etcd
    /// does: a commit index lost in a crash is learned again from the leader.
    pub hard_state: Option<HardState>,
    /// The hard state's term or vote changed since the last Ready: it must
    /// be durable (fsynced) before any message goes out.
    pub term_or_vote_changed: bool,
    /// Duty 1: persist (fsync) a snapshot received from the leader, replacing
    /// the stored log; then restore the state machine from it before applying
    /// any entry after it. A snapshot at index 0 (empty data) is the
    /// bootstrap configuration of a founding or joining member: persist it
    /// all the same; restoring it means starting from an empty state machine.
    pub snapshot: Option<Snapshot>,
    /// Duty 1: append to stable storage (fsync) before sending `messages`.
    /// An entry at an index already stored replaces it and everything after.
    pub entries: Vec<Entry>,
    /// Duty 2: send to their `to` after duties 1 are durable — unless
    /// `from_leader`. Delivery may fail silently (Raft retries);
    /// `Raft::report_unreachable` speeds that up.
    pub messages: Vec<Message>,
    /// The Ready comes from a leader, whose messages may go out before (or
    /// while) duty 1 is made durable (Raft thesis §10.2.1: the leader writes
    /// its own log in parallel with replicating it). This is safe because a
    /// leader counts itself towards a quorum only for entries `advance`
    /// reported durable, and its messages (appends, heartbeats, snapshots,
    /// TimeoutNow) never vouch for its own durable state. A candidate's vote
    /// requests and a follower's responses do, so they wait.
    pub from_leader: bool,
    /// Duty 3: apply to the state machine, in order. They are committed and
    /// already durable on a quorum. `advance` records the last one as the
    /// applied index. At most `READY_COMMITTED_BYTES_MAX` bytes per Ready.
    pub committed_entries: Vec<Entry>,
    /// Duty 4: answer each read once the applied index reaches its index.
    pub read_states: Vec<ReadState>,
    /// The term this Ready was produced in (for logs and assertions).
    pub term: Term,
}

impl Ready {
    /// True when the Ready asks nothing of the driver.
    pub fn is_empty(&self) -> bool {
        self.soft_state.is_none()
            && self.hard_state.is_none()
            && self.snapshot.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
    }

    /// True when duty 1 needs a disk write.
    pub fn must_write(&self) -> bool {
        self.hard_state.is_some() || self.snapshot.is_some() || !self.entries.is_empty()
    }

    /// True when duty 1 must also be fsynced before messages go out or
    /// entries are applied: new entries, a snapshot, or a new term or vote.
    /// A hard state that differs only in its commit index need not be.
    pub fn must_sync(&self) -> bool {
        self.term_or_vote_changed || self.snapshot.is_some() || !self.entries.is_empty()
    }
}
