//! The persistent vocabulary of Raft: identifiers, log entries, hard state,
//! cluster configuration and snapshots. Everything here is what the driver
//! writes to disk and hands back on restart.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A Raft term (the Raft paper, §5.1). Terms never decrease on a node.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Term(pub u64);

/// A position in the replicated log, starting at 1. Index 0 is "before the log".
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Index(pub u64);

/// A member's identity in the cluster (etcd's member ID). Never 0.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct NodeId(pub u64);

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// What an entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// Application data for the state machine. An empty `data` is the
    /// no-op a new leader appends to commit entries of earlier terms.
    Normal,
    /// A bincode-encoded [`ConfChange`]. The core applies it to its own
    /// configuration; the driver sees it in `committed_entries` so it can
    /// update its member table (names, URLs) in the same order.
    ConfChange,
}

/// One record of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The leader's term when the entry was created.
    pub term: Term,
    /// The entry's position in the log.
    pub index: Index,
    /// How `data` is to be read.
    pub kind: EntryKind,
    /// Opaque to Raft for `Normal` entries.
    pub data: Vec<u8>,
}

/// The state that must be durable before a node answers a message that
/// depends on it (the Raft paper's "persistent state on all servers", plus
/// the commit index so a restart does not need to rediscover it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate this node voted for in `term`, if any.
    pub vote: Option<NodeId>,
    /// The highest index known to be committed.
    pub commit: Index,
}

/// The cluster configuration: who votes and who only learns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfState {
    /// Members whose acknowledgement counts toward a quorum.
    pub voters: BTreeSet<NodeId>,
    /// Members that receive the log but neither vote nor count.
    pub learners: BTreeSet<NodeId>,
}

/// A single membership change, carried by an [`EntryKind::ConfChange`] entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfChange {
    /// Add a voting member.
    AddVoter {
        /// The new member.
        id: NodeId,
        /// Opaque to Raft (the driver puts the member's name and URLs here).
        context: Vec<u8>,
    },
    /// Add a non-voting member.
    AddLearner {
        /// The new learner.
        id: NodeId,
        /// Opaque to Raft.
        context: Vec<u8>,
    },
    /// Turn a learner into a voter.
    PromoteLearner {
        /// The learner to promote.
        id: NodeId,
    },
    /// Remove a member (voter or learner).
    RemoveNode {
        /// The member to remove.
        id: NodeId,
    },
    /// Change a member's opaque context (etcd's MemberUpdate of peer URLs).
    UpdateNode {
        /// The member to update.
        id: NodeId,
        /// Its new context.
        context: Vec<u8>,
    },
}

impl ConfChange {
    /// The bytes an [`EntryKind::ConfChange`] entry carries.
    pub fn encode(&self) -> Vec<u8> {
        match bincode::serialize(self) {
            Ok(bytes) => bytes,
            Err(error) => panic!("conf change {self:?} does not encode: {error}"),
        }
    }

    /// Reads the change from an [`EntryKind::ConfChange`] entry's data.
    pub fn decode(data: &[u8]) -> Result<ConfChange, bincode::Error> {
        bincode::deserialize(data)
    }
}

impl fmt::Display for ConfChange {
    /// A short form for logs and test output: `add-voter 4`, `remove 2`, ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfChange::AddVoter { id, .. } => write!(f, "add-voter {id}"),
            ConfChange::AddLearner { id, .. } => write!(f, "add-learner {id}"),
            ConfChange::PromoteLearner { id } => write!(f, "promote {id}"),
            ConfChange::RemoveNode { id } => write!(f, "remove {id}"),
            ConfChange::UpdateNode { id, .. } => write!(f, "update {id}"),
        }
    }
}

/// Describes the state a snapshot captures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMetadata {
    /// The last log index the snapshot includes.
    pub index: Index,
    /// The term of the entry at `index`.
    pub term: Term,
    /// The configuration as of `index`.
    pub conf_state: ConfState,
}

/// A point-in-time image of the application state machine at `metadata.index`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// What the snapshot covers.
    pub metadata: SnapshotMetadata,
    /// The application's serialized state; opaque to Raft.
    pub data: Vec<u8>,
}

impl Snapshot {
    /// True for the bootstrap snapshot at index 0: it carries only the
    /// founding configuration, and its (empty) data stands for an empty
    /// state machine.
    pub fn is_bootstrap(&self) -> bool {
        self.metadata.index == Index(0)
    }
}
