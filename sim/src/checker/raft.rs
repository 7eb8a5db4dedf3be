//! The Raft invariant checker. After every simulation step the runner hands
//! it one [`NodeObservation`] per live member (filled from
//! `Raft::status()`, the log accessors and the KV state hash); the checker
//! keeps what it has learned across steps and checks:
//!
//! - election safety: at most one leader per term, ever (counting both
//!   members in the leader role and the leader followers name for their
//!   current term);
//! - log matching: two entries at the same index and term carry the same
//!   data and follow entries of the same term. By induction this is the
//!   paper's "identical prefixes", checked as a hash chain one link at a
//!   time, so the runner may pass only the part of a log that changed;
//! - committed entries are never lost or changed: once any member reports
//!   index `i` committed with (term, data), every member whose commit index
//!   covers `i` holds the same entry there, and every leader of a later
//!   term than the one the commit was first seen in holds it too (a stale
//!   leader of an earlier term, cut off with a minority, need not);
//! - `applied <= commit <= last_index` on every member, and within one
//!   incarnation (between restarts) term, commit and applied never decrease;
//! - state machine safety: members at the same applied index have the same
//!   KV state hash.
//!
//! Observations are plain structs so the checker needs nothing from the
//! node at runtime beyond what the runner copies into them.

use std::collections::BTreeMap;
use std::fmt;

use cairn_core::raft::{Entry, EntryKind, Index, NodeId, Role, Term};

use crate::time::SimTime;

/// An entry reduced to what the checks compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryDigest {
    /// Its index.
    pub index: Index,
    /// Its term.
    pub term: Term,
    /// A hash of its kind and data ([`EntryDigest::of`]).
    pub data_hash: u64,
}

impl EntryDigest {
    /// The digest of a log entry: FNV-1a over its kind and data, so it is
    /// the same on every platform and every run.
    pub fn of(entry: &Entry) -> EntryDigest {
        let kind: u8 = match entry.kind {
            EntryKind::Normal => 0,
            EntryKind::ConfChange => 1,
        };
        EntryDigest {
            index: entry.index,
            term: entry.term,
            data_hash: fnv1a(std::iter::once(kind).chain(entry.data.iter().copied())),
        }
    }
}

/// FNV-1a, 64 bits: a fixed, portable hash for digests.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.into_iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// What one live member exposes after a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeObservation {
    /// The member.
    pub node: NodeId,
    /// Bumped by the runner at every restart: volatile monotonicity is
    /// only required within one incarnation.
    pub incarnation: u64,
    /// Current term.
    pub term: Term,
    /// Current role.
    pub role: Role,
    /// The leader it believes in.
    pub leader: Option<NodeId>,
    /// Commit index.
    pub commit: Index,
    /// Applied index.
    pub applied: Index,
    /// Last log index.
    pub last_index: Index,
    /// A contiguous window of its log (any part of it: the runner may pass
    /// only what changed since the last observation, plus the entry before).
    pub entries: Vec<EntryDigest>,
    /// The KV state hash at `applied`, when the runner computed it.
    pub state_hash: Option<u64>,
}

/// A broken Raft invariant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RaftViolation {
    /// Two leaders in one term.
    #[error("term {term} has two leaders: {first} and {second}")]
    TwoLeaders {
        /// The term.
        term: Term,
        /// The first leader seen.
        first: NodeId,
        /// The second.
        second: NodeId,
    },
    /// Same index and term, different entries.
    #[error(
        "log mismatch at index {index} term {term}: member {node} has {detail}, member {first_node} had {first_detail}"
    )]
    LogMismatch {
        /// The index.
        index: Index,
        /// The term.
        term: Term,
        /// The member that disagrees.
        node: NodeId,
        /// What it has.
        detail: String,
        /// The member first seen with this entry.
        first_node: NodeId,
        /// What that one had.
        first_detail: String,
    },
    /// A committed entry is missing or different.
    #[error("committed entry at index {index} lost or changed on member {node}: {detail}")]
    CommittedEntryChanged {
        /// The index.
        index: Index,
        /// The member.
        node: NodeId,
        /// What happened.
        detail: String,
    },
    /// An index order or monotonicity rule failed.
    #[error("member {node}: {detail}")]
    IndexOrder {
        /// The member.
        node: NodeId,
        /// What failed.
        detail: String,
    },
    /// Two members applied up to the same index and reached different states.
    #[error(
        "state hash differs at applied index {applied}: member {node} has {hash:#x}, member {first_node} had {first_hash:#x}"
    )]
    StateDiverged {
        /// The applied index.
        applied: Index,
        /// The member that disagrees.
        node: NodeId,
        /// Its hash.
        hash: u64,
        /// The member first seen at this index.
        first_node: NodeId,
        /// Its hash.
        first_hash: u64,
    },
}

/// What the checker remembers of an (index, term) log position.
#[derive(Clone, Copy, Debug)]
struct Position {
    data_hash: u64,
    /// The term of the entry before it, when seen.
    previous_term: Option<Term>,
    node: NodeId,
}

/// What the checker remembers of a member between observations.
#[derive(Clone, Copy, Debug)]
struct Volatile {
    incarnation: u64,
    term: Term,
    commit: Index,
    applied: Index,
}

/// Counts for the run summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RaftSummary {
    /// Observations checked.
    pub observations: u64,
    /// Highest term seen.
    pub highest_term: Term,
    /// Distinct terms that had a leader.
    pub terms_with_leader: usize,
    /// Highest committed index seen.
    pub highest_commit: Index,
    /// Entries recorded as committed.
    pub committed_entries: usize,
}

impl fmt::Display for RaftSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "raft: {} observations, highest term {}, {} terms with a leader, commit {} ({} entries verified committed)",
            self.observations,
            self.highest_term,
            self.terms_with_leader,
            self.highest_commit,
            self.committed_entries
        )
    }
}

/// Checks Raft invariants across a run; feed it with [`RaftChecker::observe`].
#[derive(Clone, Debug, Default)]
pub struct RaftChecker {
    leaders: BTreeMap<Term, NodeId>,
    positions: BTreeMap<(Index, Term), Position>,
    /// Committed entries: index to (term, data hash, the member that showed it).
    committed: BTreeMap<Index, (Term, u64, NodeId)>,
    /// The highest index first seen committed by a member in each term. The
    /// commit happened in that term or earlier, so every leader of a later
    /// term must hold it (a stale leader of an earlier term need not).
    committed_by_term: BTreeMap<Term, Index>,
    state_hashes: BTreeMap<Index, (u64, NodeId)>,
    members: BTreeMap<NodeId, Volatile>,
    summary: RaftSummary,
}

impl RaftChecker {
    /// A checker that has seen nothing.
    pub fn new() -> RaftChecker {
        RaftChecker::default()
    }

    /// Counts so far.
    pub fn summary(&self) -> RaftSummary {
        RaftSummary {
            terms_with_leader: self.leaders.len(),
            committed_entries: self.committed.len(),
            ..self.summary
        }
    }

    /// Checks one member's state after a step. On `Err` the run has broken
    /// safety; the runner stops and prints the replay command.
    pub fn observe(&mut self, at: SimTime, node: &NodeObservation) -> Result<(), RaftViolation> {
        self.summary.observations += 1;
        self.summary.highest_term = self.summary.highest_term.max(node.term);
        self.summary.highest_commit = self.summary.highest_commit.max(node.commit);
        let result = self.check(node);
        if let Err(violation) = &result {
            tracing::error!(%at, node = %node.node, %violation, "raft invariant broken");
        }
        result
    }

    fn check(&mut self, node: &NodeObservation) -> Result<(), RaftViolation> {
        self.check_indexes(node)?;
        self.check_leader(node)?;
        self.check_entries(node)?;
        self.check_state_hash(node)?;
        Ok(())
    }

    fn check_indexes(&mut self, node: &NodeObservation) -> Result<(), RaftViolation> {
        let order = |detail: String| RaftViolation::IndexOrder {
            node: node.node,
            detail,
        };
        if node.applied > node.commit {
            return Err(order(format!(
                "applied {} > commit {}",
                node.applied, node.commit
            )));
        }
        if node.commit > node.last_index {
            return Err(order(format!(
                "commit {} > last index {}",
                node.commit, node.last_index
            )));
        }
        let current = Volatile {
            incarnation: node.incarnation,
            term: node.term,
            commit: node.commit,
            applied: node.applied,
        };
        if let Some(previous) = self.members.insert(node.node, current) {
            if previous.incarnation == node.incarnation {
                if node.term < previous.term {
                    return Err(order(format!(
                        "term went from {} to {}",
                        previous.term, node.term
                    )));
                }
                if node.commit < previous.commit {
                    return Err(order(format!(
                        "commit went from {} to {}",
                        previous.commit, node.commit
                    )));
                }
                if node.applied < previous.applied {
                    return Err(order(format!(
                        "applied went from {} to {}",
                        previous.applied, node.applied
                    )));
                }
            }
        }
        Ok(())
    }

    fn check_leader(&mut self, node: &NodeObservation) -> Result<(), RaftViolation> {
        // A member acting as leader, or a follower naming the leader of its
        // current term (it learned it from that leader's messages): either
        // way, that is the one leader of the term.
        let leader = if node.role == Role::Leader {
            Some(node.node)
        } else {
            node.leader
        };
        let Some(leader) = leader else { return Ok(()) };
        match self.leaders.get(&node.term) {
            Some(first) if *first != leader => {
                return Err(RaftViolation::TwoLeaders {
                    term: node.term,
                    first: *first,
                    second: leader,
                })
            }
            Some(_) => {}
            None => {
                self.leaders.insert(node.term, leader);
            }
        }
        if node.role != Role::Leader {
            return Ok(());
        }
        // Leader completeness: a leader holds every entry committed before
        // its term.
        if let Some(highest) = self.committed_before(node.term) {
            if node.last_index < highest {
                return Err(RaftViolation::CommittedEntryChanged {
                    index: highest,
                    node: node.node,
                    detail: format!(
                        "leader of term {} has last index {} below committed index {highest}",
                        node.term, node.last_index
                    ),
                });
            }
        }
        Ok(())
    }

    fn check_entries(&mut self, node: &NodeObservation) -> Result<(), RaftViolation> {
        let mut previous: Option<&EntryDigest> = None;
        for entry in &node.entries {
            if let Some(previous) = previous {
                assert!(
                    entry.index.0 == previous.index.0 + 1,
                    "member {}: observed entries not contiguous: {} after {}",
                    node.node,
                    entry.index,
                    previous.index
                );
            }
            let previous_term = previous.map(|previous| previous.term);
            self.check_position(node.node, entry, previous_term)?;
            self.check_committed(node, entry)?;
            previous = Some(entry);
        }
        Ok(())
    }

    fn check_position(
        &mut self,
        node: NodeId,
        entry: &EntryDigest,
        previous_term: Option<Term>,
    ) -> Result<(), RaftViolation> {
        let key = (entry.index, entry.term);
        let Some(known) = self.positions.get_mut(&key) else {
            self.positions.insert(
                key,
                Position {
                    data_hash: entry.data_hash,
                    previous_term,
                    node,
                },
            );
            return Ok(());
        };
        if known.data_hash != entry.data_hash {
            return Err(RaftViolation::LogMismatch {
                index: entry.index,
                term: entry.term,
                node,
                detail: format!("data hash {:#x}", entry.data_hash),
                first_node: known.node,
                first_detail: format!("data hash {:#x}", known.data_hash),
            });
        }
        match (known.previous_term, previous_term) {
            (Some(first), Some(observed)) if first != observed => Err(RaftViolation::LogMismatch {
                index: entry.index,
                term: entry.term,
                node,
                detail: format!("previous entry of term {observed}"),
                first_node: known.node,
                first_detail: format!("previous entry of term {first}"),
            }),
            (None, Some(observed)) => {
                known.previous_term = Some(observed);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The highest index known committed in a term before `term`.
    fn committed_before(&self, term: Term) -> Option<Index> {
        self.committed_by_term
            .range(..term)
            .map(|(_, index)| *index)
            .max()
    }

    fn check_committed(
        &mut self,
        node: &NodeObservation,
        entry: &EntryDigest,
    ) -> Result<(), RaftViolation> {
        let covered_by_commit = entry.index <= node.commit;
        // Only a leader of a later term than the commit must agree with it.
        let is_leader = node.role == Role::Leader
            && self
                .committed_before(node.term)
                .is_some_and(|highest| entry.index <= highest);
        match self.committed.get(&entry.index) {
            Some((term, hash, first)) => {
                if (covered_by_commit || is_leader)
                    && (*term != entry.term || *hash != entry.data_hash)
                {
                    return Err(RaftViolation::CommittedEntryChanged {
                        index: entry.index,
                        node: node.node,
                        detail: format!(
                            "has term {} hash {:#x}; member {first} showed it committed with term {term} hash {hash:#x}",
                            entry.term, entry.data_hash
                        ),
                    });
                }
            }
            None => {
                if covered_by_commit {
                    self.committed
                        .insert(entry.index, (entry.term, entry.data_hash, node.node));
                    let highest = self
                        .committed_by_term
                        .entry(node.term)
                        .or_insert(entry.index);
                    *highest = (*highest).max(entry.index);
                }
            }
        }
        Ok(())
    }

    fn check_state_hash(&mut self, node: &NodeObservation) -> Result<(), RaftViolation> {
        let Some(hash) = node.state_hash else {
            return Ok(());
        };
        match self.state_hashes.get(&node.applied) {
            Some((first_hash, first_node)) if *first_hash != hash => {
                Err(RaftViolation::StateDiverged {
                    applied: node.applied,
                    node: node.node,
                    hash,
                    first_node: *first_node,
                    first_hash: *first_hash,
                })
            }
            Some(_) => Ok(()),
            None => {
                self.state_hashes.insert(node.applied, (hash, node.node));
                Ok(())
            }
        }
    }
}
