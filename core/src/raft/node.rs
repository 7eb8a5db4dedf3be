//! [`Raft`]: one node's consensus state machine and its public API.
//!
//! NB: API skeleton; the implementation lands with the Raft core issue.

use std::collections::{BTreeMap, BTreeSet};

use super::config::Config;
use super::entry::{ConfState, Entry, HardState, Index, NodeId, Snapshot, Term};
use super::message::Message;
use super::ready::{Ready, Role};

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
    /// A restart from what an earlier run persisted.
    Restart(PersistedState),
}

/// What the driver persisted, handed back on restart.
#[derive(Clone, Debug, Default)]
pub struct PersistedState {
    /// The last hard state written.
    pub hard_state: HardState,
    /// The latest snapshot, if any (its data is needed to catch up followers).
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
    /// A membership change is still pending (one change at a time).
    #[error("a membership change is already pending")]
    ConfChangePending,
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
}

/// One node's Raft state machine. Pure: time enters only through [`Raft::tick`],
/// randomness only from `Config::seed`, I/O only through [`Ready`].
#[derive(Debug)]
pub struct Raft {
    _private: (),
}

#[allow(unused_variables, clippy::todo, missing_docs)]
impl Raft {
    /// Creates a node.
    pub fn new(config: Config, start: Start) -> Raft {
        todo!()
    }
    /// Advances logical time by one tick (heartbeats, election timeouts).
    pub fn tick(&mut self) {
        todo!()
    }
    /// Takes a message from a peer.
    pub fn step(&mut self, message: Message) {
        todo!()
    }
    /// Proposes application data. On a follower it is forwarded to the leader.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(), ProposeError> {
        todo!()
    }
    /// Proposes a membership change.
    pub fn propose_conf_change(
        &mut self,
        change: super::entry::ConfChange,
    ) -> Result<(), ProposeError> {
        todo!()
    }
    /// Requests a linearizable read point; answered by a `ReadState` in a later Ready.
    pub fn read_index(&mut self, context: Vec<u8>) -> Result<(), ProposeError> {
        todo!()
    }
    /// Asks the leader to hand leadership to `to`.
    pub fn transfer_leader(&mut self, to: NodeId) {
        todo!()
    }
    /// Starts an election now.
    pub fn campaign(&mut self) {
        todo!()
    }
    /// Hands the core a snapshot of the state machine at `index` (≤ applied);
    /// the log before it is compacted.
    pub fn compact(&mut self, index: Index, data: Vec<u8>) {
        todo!()
    }
    /// Tells the core a peer is unreachable (its progress falls back to probing).
    pub fn report_unreachable(&mut self, id: NodeId) {
        todo!()
    }
    /// Work for the driver, if any.
    pub fn ready(&mut self) -> Option<Ready> {
        todo!()
    }
    /// Hands back a Ready whose duties are done.
    pub fn advance(&mut self, ready: Ready) {
        todo!()
    }
    /// The node's observable state.
    pub fn status(&self) -> Status {
        todo!()
    }
}
