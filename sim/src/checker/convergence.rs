//! The convergence checker: replicas must converge. A member that silently
//! lost or skipped entries goes unnoticed by the other checkers as long as
//! the cluster does not need it for a quorum; this one looks at every
//! member, needed or not, in two ways:
//!
//! - **Match indexes are durable.** A leader counts a follower's match
//!   index towards commitment, so the follower must hold that entry on its
//!   disk: after every Ready of a leader of term `T`, for each follower `F`
//!   whose durable term is at most `T`, `F`'s durable log (as of its last
//!   persist, or as recovered after a restart) holds the entry at the match
//!   index with the term it has in the leader's log, or a snapshot covering
//!   it. A follower of a later term is exempt: a newer leader may have
//!   overwritten the entries a stale leader still counts. So is a follower
//!   whose disk the nemesis damaged (a flipped bit may cost it acknowledged
//!   entries), towards leaders whose term began before it recovered.
//! - **Replicas converge.** After healing and the liveness write, every
//!   live member of the configuration reaches the same commit index,
//!   applied index and state hash (`KvStore::hash`, a CRC-32C of the whole
//!   replicated state) within the liveness window; the runner polls
//!   [`converged`] until it holds.
//!
//! The durable logs are kept as runs of equal terms (a log's terms never
//! decrease), so a long run costs a few words per member and term.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use cairn_core::raft::{Index, NodeId, Term};

/// A member's log as its disk holds it: a snapshot and the entries after
/// it, by term.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DurableLog {
    /// The snapshot's index and term (index 0: none).
    snapshot: (Index, Term),
    /// Runs of equal terms: (first index, term), in index order.
    // Invariant: the first run starts at snapshot index + 1, runs start at
    // increasing indexes with increasing terms, and all end at `last`.
    runs: Vec<(Index, Term)>,
    /// The last index held (the snapshot's when there are no entries).
    last: Index,
}

impl DurableLog {
    /// The log recovered from `snapshot` (index and term) and the entries
    /// after it.
    pub fn recovered(
        snapshot: Option<(Index, Term)>,
        entries: impl IntoIterator<Item = (Index, Term)>,
    ) -> DurableLog {
        let mut log = DurableLog::default();
        if let Some((index, term)) = snapshot {
            log.install_snapshot(index, term);
        }
        log.append(entries);
        log
    }

    /// The last index held.
    pub fn last_index(&self) -> Index {
        self.last
    }

    /// A snapshot replaced the log up to `index` (and, as in Raft's
    /// restore, everything after it).
    pub fn install_snapshot(&mut self, index: Index, term: Term) {
        self.snapshot = (index, term);
        self.runs.clear();
        self.last = index;
    }

    /// Entries written in index order: they replace the entries at their
    /// indexes and everything after them. Entries at or below the
    /// snapshot are already covered by it and are skipped.
    pub fn append(&mut self, entries: impl IntoIterator<Item = (Index, Term)>) {
        for (index, term) in entries {
            if index <= self.snapshot.0 {
                continue;
            }
            assert!(
                index.0 <= self.last.0 + 1,
                "entry {index} written after last index {}: a gap in the log",
                self.last
            );
            // Truncate everything at and after `index`.
            let keep = self.runs.partition_point(|(first, _)| *first < index);
            self.runs.truncate(keep);
            match self.runs.last() {
                Some((_, last_term)) if *last_term == term => {}
                Some((_, last_term)) if *last_term > term => {
                    panic!("entry {index} of term {term} follows an entry of term {last_term}")
                }
                _ => self.runs.push((index, term)),
            }
            self.last = index;
        }
    }

    /// The term of the entry at `index`, when the log holds it (the
    /// snapshot's term at its own index; unknown below it).
    pub fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.snapshot.0 {
            return Some(self.snapshot.1);
        }
        if index < self.snapshot.0 || index > self.last {
            return None;
        }
        let run = self.runs.partition_point(|(first, _)| *first <= index);
        Some(self.runs[run - 1].1)
    }

    /// Whether the log holds the entry at `index` (with `term`, when
    /// known). Everything up to the snapshot's index is held: a snapshot
    /// is taken only of committed entries.
    pub fn holds(&self, index: Index, term: Option<Term>) -> bool {
        if index <= self.snapshot.0 {
            return true;
        }
        match (self.term_at(index), term) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(held), Some(term)) => held == term,
        }
    }
}

impl fmt::Display for DurableLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "snapshot {}/{}, last index {}",
            self.snapshot.0, self.snapshot.1, self.last
        )?;
        if let Some((_, term)) = self.runs.last() {
            write!(f, " (term {term})")?;
        }
        Ok(())
    }
}

/// A leader counted an entry its follower does not hold durably.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "leader {leader} of term {term} holds match index {match_index} (term {entry_term}) for \
     member {follower} (durable term {follower_term}), whose durable log has {follower_log}"
)]
pub struct MatchViolation {
    /// The leader.
    pub leader: NodeId,
    /// Its term.
    pub term: Term,
    /// The follower.
    pub follower: NodeId,
    /// The follower's durable term.
    pub follower_term: Term,
    /// The leader's match index for it.
    pub match_index: Index,
    /// The term of that entry in the leader's log, or `?` when compacted.
    pub entry_term: String,
    /// What the follower's durable log holds.
    pub follower_log: String,
}

/// Keeps every member's durable log and checks leaders' match indexes
/// against it; fed by the recorder.
#[derive(Clone, Debug, Default)]
pub struct MatchChecker {
    logs: BTreeMap<NodeId, DurableLog>,
    durable_terms: BTreeMap<NodeId, Term>,
    /// Members whose disk the nemesis damaged; they have not recovered yet.
    damaged: BTreeSet<NodeId>,
    /// A damaged member recovered while this was the highest term seen:
    /// leaders up to it may still count entries it lost.
    exempt_through: BTreeMap<NodeId, Term>,
    highest_term: Term,
    /// Match indexes checked.
    pub matches_checked: u64,
}

impl MatchChecker {
    /// A checker that has seen nothing.
    pub fn new() -> MatchChecker {
        MatchChecker::default()
    }

    /// `member` persisted a Ready: its term, the snapshot it installed and
    /// the entries it appended are durable.
    pub fn persisted(
        &mut self,
        member: NodeId,
        term: Term,
        snapshot: Option<(Index, Term)>,
        entries: impl IntoIterator<Item = (Index, Term)>,
    ) {
        self.set_term(member, term);
        let log = self.logs.entry(member).or_default();
        if let Some((index, term)) = snapshot {
            log.install_snapshot(index, term);
        }
        log.append(entries);
    }

    /// `member` restarted on what its disk recovered.
    pub fn recovered(
        &mut self,
        member: NodeId,
        term: Term,
        snapshot: Option<(Index, Term)>,
        entries: impl IntoIterator<Item = (Index, Term)>,
    ) {
        self.durable_terms.insert(member, term);
        self.highest_term = self.highest_term.max(term);
        self.logs
            .insert(member, DurableLog::recovered(snapshot, entries));
        if self.damaged.remove(&member) {
            self.exempt_through.insert(member, self.highest_term);
        }
    }

    /// The nemesis damaged `member`'s durable data (it recovers what is left
    /// at its next start).
    pub fn disk_damaged(&mut self, member: NodeId) {
        self.damaged.insert(member);
    }

    fn set_term(&mut self, member: NodeId, term: Term) {
        self.durable_terms.insert(member, term);
        self.highest_term = self.highest_term.max(term);
    }

    /// Checks a leader's match indexes (its own entry is skipped).
    pub fn check_leader(
        &mut self,
        leader: NodeId,
        term: Term,
        match_index: &BTreeMap<NodeId, Index>,
    ) -> Result<(), MatchViolation> {
        for (&follower, &index) in match_index {
            if follower == leader || index == Index(0) {
                continue;
            }
            self.matches_checked += 1;
            let follower_term = self
                .durable_terms
                .get(&follower)
                .copied()
                .unwrap_or(Term(0));
            if follower_term > term {
                continue;
            }
            if self
                .exempt_through
                .get(&follower)
                .is_some_and(|through| term <= *through)
            {
                continue;
            }
            let entry_term = self.logs.get(&leader).and_then(|log| log.term_at(index));
            let follower_log = self.logs.get(&follower);
            if follower_log.is_some_and(|log| log.holds(index, entry_term)) {
                continue;
            }
            return Err(MatchViolation {
                leader,
                term,
                follower,
                follower_term,
                match_index: index,
                entry_term: entry_term.map_or("?".to_string(), |term| term.to_string()),
                follower_log: follower_log
                    .map_or("nothing (never persisted)".to_string(), ToString::to_string),
            });
        }
        Ok(())
    }
}

/// One live member as of its latest Ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberProbe {
    /// The member.
    pub member: NodeId,
    /// Its commit index.
    pub commit: Index,
    /// Its applied index.
    pub applied: Index,
    /// `KvStore::hash` at `applied`, once the runner asked for hashes.
    pub state_hash: Option<u32>,
}

impl fmt::Display for MemberProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "member {} commit {} applied {} hash ",
            self.member, self.commit, self.applied
        )?;
        match self.state_hash {
            Some(hash) => write!(f, "{hash:08x}"),
            None => f.write_str("unknown"),
        }
    }
}

/// Whether every probed member has the same commit index, applied index
/// and state hash; `Err` describes every member when not.
pub fn converged(probes: &[MemberProbe]) -> Result<(), String> {
    let first = probes.first();
    let same = probes.iter().all(|probe| {
        probe.state_hash.is_some()
            && first.is_some_and(|first| {
                (probe.commit, probe.applied, probe.state_hash)
                    == (first.commit, first.applied, first.state_hash)
            })
    });
    if same {
        return Ok(());
    }
    let members: Vec<String> = probes.iter().map(ToString::to_string).collect();
    Err(members.join("; "))
}

/// What the convergence checker concluded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConvergenceReport {
    /// Match indexes checked against followers' durable logs.
    pub matches_checked: u64,
    /// The first match index a follower did not hold.
    pub match_violation: Option<MatchViolation>,
    /// Members that converged, or why they did not.
    pub converged: Option<Result<usize, String>>,
}

impl ConvergenceReport {
    /// No violation, and the members converged.
    pub fn is_ok(&self) -> bool {
        self.match_violation.is_none() && matches!(self.converged, Some(Ok(_)))
    }
}

impl fmt::Display for ConvergenceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "convergence: {} match indexes checked",
            self.matches_checked
        )?;
        match &self.converged {
            Some(Ok(members)) => writeln!(f, ", {members} members converged")?,
            Some(Err(reason)) => writeln!(f, "\n  FAILED to converge: {reason}")?,
            None => writeln!(f, "\n  FAILED: not run")?,
        }
        if let Some(violation) = &self.match_violation {
            writeln!(f, "  {violation}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(from: u64, terms: &[u64]) -> Vec<(Index, Term)> {
        terms
            .iter()
            .enumerate()
            .map(|(offset, term)| (Index(from + offset as u64), Term(*term)))
            .collect()
    }

    #[test]
    fn a_log_tracks_appends_truncations_and_snapshots() {
        let mut log = DurableLog::recovered(None, entries(1, &[1, 1, 2, 2]));
        assert_eq!(log.term_at(Index(2)), Some(Term(1)));
        assert_eq!(log.term_at(Index(4)), Some(Term(2)));
        assert_eq!(log.term_at(Index(5)), None);
        // A new leader overwrites index 3 onwards.
        log.append(entries(3, &[3]));
        assert_eq!(log.last_index(), Index(3));
        assert!(log.holds(Index(3), Some(Term(3))));
        assert!(!log.holds(Index(3), Some(Term(2))));
        assert!(!log.holds(Index(4), None));
        log.install_snapshot(Index(10), Term(4));
        assert!(log.holds(Index(7), Some(Term(2))));
        assert!(log.holds(Index(10), Some(Term(4))));
        assert!(!log.holds(Index(11), None));
        // Entries 9 and 10 are covered by the snapshot.
        log.append(entries(9, &[4, 4, 5]));
        assert_eq!(log.last_index(), Index(11));
        assert_eq!(log.term_at(Index(11)), Some(Term(5)));
        assert_eq!(log.term_at(Index(9)), None);
    }

    fn matches(pairs: &[(u64, u64)]) -> BTreeMap<NodeId, Index> {
        pairs
            .iter()
            .map(|(id, index)| (NodeId(*id), Index(*index)))
            .collect()
    }

    #[test]
    fn a_match_index_beyond_a_followers_durable_log_is_caught() {
        let mut checker = MatchChecker::new();
        checker.persisted(NodeId(1), Term(2), None, entries(1, &[1, 2, 2, 2]));
        checker.persisted(NodeId(2), Term(2), None, entries(1, &[1, 2, 2, 2]));
        assert!(checker
            .check_leader(NodeId(1), Term(2), &matches(&[(1, 4), (2, 4)]))
            .is_ok());
        // Member 2 restarts having lost entries 3 and 4.
        checker.recovered(NodeId(2), Term(2), None, entries(1, &[1, 2]));
        let violation = checker
            .check_leader(NodeId(1), Term(2), &matches(&[(1, 4), (2, 4)]))
            .unwrap_err();
        assert_eq!(violation.follower, NodeId(2));
        assert_eq!(violation.match_index, Index(4));
    }

    #[test]
    fn a_stale_leader_may_count_entries_a_newer_leader_overwrote() {
        let mut checker = MatchChecker::new();
        checker.persisted(NodeId(1), Term(2), None, entries(1, &[1, 2, 2]));
        checker.persisted(NodeId(2), Term(2), None, entries(1, &[1, 2, 2]));
        // Leader 3 of term 3 overwrote member 2's entries 2 and 3.
        checker.persisted(NodeId(2), Term(3), None, entries(2, &[3]));
        assert!(checker
            .check_leader(NodeId(1), Term(2), &matches(&[(2, 3)]))
            .is_ok());
    }

    #[test]
    fn a_damaged_disk_exempts_only_the_leaders_before_its_recovery() {
        let mut checker = MatchChecker::new();
        checker.persisted(NodeId(1), Term(2), None, entries(1, &[2, 2, 2]));
        checker.persisted(NodeId(2), Term(2), None, entries(1, &[2, 2, 2]));
        checker.disk_damaged(NodeId(2));
        checker.recovered(NodeId(2), Term(2), None, entries(1, &[2]));
        assert!(checker
            .check_leader(NodeId(1), Term(2), &matches(&[(2, 3)]))
            .is_ok());
        checker.persisted(NodeId(1), Term(3), None, entries(4, &[3]));
        assert!(checker
            .check_leader(NodeId(1), Term(3), &matches(&[(2, 4)]))
            .is_err());
    }

    #[test]
    fn members_converge_only_with_equal_indexes_and_hashes() {
        let probe = |member, applied, state_hash| MemberProbe {
            member: NodeId(member),
            commit: Index(9),
            applied: Index(applied),
            state_hash,
        };
        assert!(converged(&[probe(1, 9, Some(7)), probe(2, 9, Some(7))]).is_ok());
        let failure = converged(&[probe(1, 9, Some(7)), probe(2, 9, Some(8))]).unwrap_err();
        assert!(failure.contains("member 2 commit 9 applied 9 hash 00000008"));
        assert!(converged(&[probe(1, 9, Some(7)), probe(2, 8, Some(7))]).is_err());
        assert!(converged(&[probe(1, 9, None)]).is_err());
    }
}
