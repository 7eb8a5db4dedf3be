//! [`RaftLog`]: the in-memory replicated log of one node: the latest
//! snapshot (its base), the entries after it, and the commit, applied and
//! persisted marks. The driver keeps the durable copy; this copy lets the
//! core answer followers and check appends without any I/O.
//!
//! A node that joined a running cluster has no base until the leader sends
//! it one (possibly the bootstrap snapshot at index 0): until then it cannot
//! vouch for any entry, not even "before the log", and rejects every append.

use super::entry::{Entry, Index, Snapshot, Term};

/// Bytes an entry costs in flow-control accounting.
pub(crate) fn entry_bytes(entry: &Entry) -> u64 {
    entry.data.len() as u64
}

/// The log of one node.
#[derive(Clone, Debug)]
pub(crate) struct RaftLog {
    /// The base of the log. `None` until a joining node receives one.
    snapshot: Option<Snapshot>,
    // Invariant: entries[i].index == snapshot_index + 1 + i, terms non-decreasing.
    entries: Vec<Entry>,
    /// The highest index known to be committed.
    // Invariant: snapshot_index <= committed <= last_index.
    committed: Index,
    /// The highest index handed to the driver to apply and acknowledged.
    // Invariant: applied <= committed.
    applied: Index,
    /// The highest index the driver has made durable.
    // Invariant: persisted <= last_index.
    persisted: Index,
    /// The snapshot was received from the leader and the driver has not yet
    /// been asked to persist it.
    snapshot_unstable: bool,
}

impl RaftLog {
    /// A log with a base (possibly the bootstrap snapshot at index 0) and
    /// durable entries after it.
    pub(crate) fn new(
        snapshot: Option<Snapshot>,
        entries: Vec<Entry>,
        committed: Index,
    ) -> RaftLog {
        let base = snapshot.as_ref().map_or(Index(0), |s| s.metadata.index);
        assert!(
            snapshot.is_some() || entries.is_empty(),
            "{} entries persisted without a base snapshot",
            entries.len()
        );
        for (offset, entry) in entries.iter().enumerate() {
            let expected = base.0 + 1 + offset as u64;
            assert!(
                entry.index.0 == expected,
                "entry {} where {expected} expected",
                entry.index
            );
        }
        let mut log = RaftLog {
            snapshot,
            entries,
            committed: base,
            applied: base,
            persisted: Index(0),
            snapshot_unstable: false,
        };
        log.persisted = log.last_index();
        assert!(
            committed <= log.last_index(),
            "persisted commit {committed} beyond last index {}",
            log.last_index()
        );
        log.committed = committed.max(base);
        log
    }

    pub(crate) fn has_base(&self) -> bool {
        self.snapshot.is_some()
    }

    pub(crate) fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    pub(crate) fn snapshot_index(&self) -> Index {
        self.snapshot
            .as_ref()
            .map_or(Index(0), |s| s.metadata.index)
    }

    pub(crate) fn first_index(&self) -> Index {
        Index(self.snapshot_index().0 + 1)
    }

    pub(crate) fn last_index(&self) -> Index {
        Index(self.snapshot_index().0 + self.entries.len() as u64)
    }

    pub(crate) fn last_term(&self) -> Term {
        self.term_of(self.last_index()).unwrap_or(Term(0))
    }

    pub(crate) fn committed(&self) -> Index {
        self.committed
    }

    pub(crate) fn applied(&self) -> Index {
        self.applied
    }

    pub(crate) fn persisted(&self) -> Index {
        self.persisted
    }

    /// The term of the entry at `index`, if this log can tell.
    pub(crate) fn term_of(&self, index: Index) -> Option<Term> {
        let snapshot = self.snapshot.as_ref()?;
        if index == snapshot.metadata.index {
            return Some(snapshot.metadata.term);
        }
        self.entry(index).map(|e| e.term)
    }

    pub(crate) fn entry(&self, index: Index) -> Option<&Entry> {
        let first = self.first_index().0;
        if index.0 < first {
            return None;
        }
        self.entries.get((index.0 - first) as usize)
    }

    /// Entries in `[low, high)` that are in memory.
    pub(crate) fn entries_between(&self, low: Index, high: Index) -> &[Entry] {
        let first = self.first_index().0;
        let low = low.0.max(first);
        let high = high.0.min(self.last_index().0 + 1);
        if low >= high {
            return &[];
        }
        &self.entries[(low - first) as usize..(high - first) as usize]
    }

    /// Entries from `low` on, at most `bytes_max` bytes of them but at least one.
    pub(crate) fn entries_from(&self, low: Index, bytes_max: u64) -> Vec<Entry> {
        let mut bytes = 0u64;
        let mut out = Vec::new();
        for entry in self.entries_between(low, Index(u64::MAX)) {
            bytes += entry_bytes(entry);
            if !out.is_empty() && bytes > bytes_max {
                break;
            }
            out.push(entry.clone());
        }
        out
    }

    /// True when this log holds an entry at `index` with `term`.
    pub(crate) fn matches(&self, index: Index, term: Term) -> bool {
        self.term_of(index) == Some(term)
    }

    /// True when a log ending at (`last_index`, `last_term`) is at least as
    /// up to date as this one (the Raft paper, §5.4.1).
    pub(crate) fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Appends entries, replacing any entry at the same index and everything
    /// after it. Returns the first index removed, if any.
    pub(crate) fn append(&mut self, new_entries: &[Entry]) -> Option<Index> {
        let first_new = new_entries.first()?;
        let first_new_index = first_new.index;
        assert!(
            first_new_index > self.committed,
            "append at {first_new_index} would overwrite committed {}",
            self.committed
        );
        assert!(
            first_new_index.0 <= self.last_index().0 + 1,
            "append at {first_new_index} leaves a gap after {}",
            self.last_index()
        );
        let mut truncated = None;
        if first_new_index <= self.last_index() {
            let keep = (first_new_index.0 - self.first_index().0) as usize;
            self.entries.truncate(keep);
            truncated = Some(first_new_index);
            if self.persisted >= first_new_index {
                self.persisted = Index(first_new_index.0 - 1);
            }
        }
        for entry in new_entries {
            if let Some(last) = self.entries.last() {
                assert!(
                    entry.term >= last.term,
                    "term {} after {}",
                    entry.term,
                    last.term
                );
            }
            assert!(
                entry.index.0 == self.last_index().0 + 1,
                "entry {} after {}",
                entry.index,
                self.last_index()
            );
            self.entries.push(entry.clone());
        }
        truncated
    }

    /// The first entry of `new_entries` that this log does not already hold.
    fn find_conflict(&self, new_entries: &[Entry]) -> Option<usize> {
        new_entries
            .iter()
            .position(|e| !self.matches(e.index, e.term))
    }

    /// The follower's side of AppendEntries: if the log matches at
    /// (`prev_index`, `prev_term`), append what is new and return the last
    /// index the leader's message vouches for, plus the first index
    /// truncated, if any.
    pub(crate) fn maybe_append(
        &mut self,
        prev_index: Index,
        prev_term: Term,
        new_entries: &[Entry],
    ) -> Option<(Index, Option<Index>)> {
        if !self.matches(prev_index, prev_term) {
            return None;
        }
        let last_new = Index(prev_index.0 + new_entries.len() as u64);
        let truncated = match self.find_conflict(new_entries) {
            Some(position) => self.append(&new_entries[position..]),
            None => None,
        };
        Some((last_new, truncated))
    }

    /// The largest index <= `index` whose term is <= `term` (fast
    /// backtracking), and that entry's term.
    pub(crate) fn find_conflict_by_term(&self, index: Index, term: Term) -> (Index, Term) {
        let mut index = index.min(self.last_index());
        loop {
            match self.term_of(index) {
                Some(found) if found > term => index = Index(index.0 - 1),
                Some(found) => return (index, found),
                None => return (index, Term(0)),
            }
        }
    }

    pub(crate) fn commit_to(&mut self, index: Index) {
        assert!(
            index <= self.last_index(),
            "commit {index} beyond last index {}",
            self.last_index()
        );
        if index > self.committed {
            self.committed = index;
        }
    }

    /// Commits `index` if it holds an entry of `term` (the leader's rule:
    /// only entries of its own term commit by counting).
    pub(crate) fn maybe_commit(&mut self, index: Index, term: Term) -> bool {
        if index > self.committed && self.matches(index, term) {
            self.commit_to(index);
            true
        } else {
            false
        }
    }

    pub(crate) fn applied_to(&mut self, index: Index) {
        assert!(
            index <= self.committed,
            "applied {index} beyond commit {}",
            self.committed
        );
        if index > self.applied {
            self.applied = index;
        }
    }

    pub(crate) fn persisted_to(&mut self, index: Index, term: Term) {
        // Entries replaced since the Ready was taken stay unpersisted.
        if self.matches(index, term) && index > self.persisted {
            self.persisted = index;
        }
    }

    /// Entries not yet handed to the driver to persist.
    pub(crate) fn unstable_entries(&self) -> &[Entry] {
        self.entries_between(Index(self.persisted.0 + 1), Index(u64::MAX))
    }

    /// Asks the driver to persist the base snapshot (the bootstrap
    /// configuration of a founding member).
    pub(crate) fn mark_snapshot_unstable(&mut self) {
        assert!(self.snapshot.is_some(), "no snapshot to persist");
        self.snapshot_unstable = true;
    }

    /// The snapshot the driver has not yet been asked to persist, once.
    pub(crate) fn take_unstable_snapshot(&mut self) -> Option<Snapshot> {
        if self.snapshot_unstable {
            self.snapshot_unstable = false;
            self.snapshot.clone()
        } else {
            None
        }
    }

    /// Replaces the whole log with a snapshot received from the leader.
    pub(crate) fn restore(&mut self, snapshot: Snapshot) {
        let index = snapshot.metadata.index;
        assert!(
            !self.has_base() || index > self.committed,
            "restore of snapshot {index} at or below commit {}",
            self.committed
        );
        self.entries.clear();
        self.snapshot = Some(snapshot);
        self.committed = index;
        self.applied = self.applied.max(index);
        self.persisted = index;
        self.snapshot_unstable = true;
    }

    /// Replaces the base with a snapshot the driver took at `index` and
    /// drops the entries it covers.
    pub(crate) fn compact(&mut self, snapshot: Snapshot) {
        let index = snapshot.metadata.index;
        assert!(
            index <= self.applied,
            "compaction at {index} beyond applied {}",
            self.applied
        );
        assert!(
            index > self.snapshot_index(),
            "compaction at {index} not after snapshot {}",
            self.snapshot_index()
        );
        let drop = (index.0 - self.snapshot_index().0) as usize;
        self.entries.drain(..drop);
        self.snapshot = Some(snapshot);
    }

    /// Entries to apply next: committed, not yet applied, at most
    /// `bytes_max` bytes but at least one.
    pub(crate) fn next_committed_entries(&self, bytes_max: u64) -> Vec<Entry> {
        let low = Index(self.applied.max(self.snapshot_index()).0 + 1);
        let high = Index(self.committed.0 + 1);
        let mut bytes = 0u64;
        let mut out = Vec::new();
        for entry in self.entries_between(low, high) {
            bytes += entry_bytes(entry);
            if !out.is_empty() && bytes > bytes_max {
                break;
            }
            out.push(entry.clone());
        }
        out
    }

    /// O(n) structural checks.
    pub(crate) fn check_invariants(&self) {
        let base = self.snapshot_index();
        for (offset, entry) in self.entries.iter().enumerate() {
            assert_eq!(
                entry.index.0,
                base.0 + 1 + offset as u64,
                "log indexes not contiguous"
            );
        }
        for pair in self.entries.windows(2) {
            assert!(
                pair[0].term <= pair[1].term,
                "log terms decrease at {}",
                pair[1].index
            );
        }
        if let (Some(snapshot), Some(first)) = (&self.snapshot, self.entries.first()) {
            assert!(
                first.term >= snapshot.metadata.term,
                "entry term {} below snapshot term {}",
                first.term,
                snapshot.metadata.term
            );
        }
        assert!(
            self.committed >= base,
            "commit {} below snapshot {base}",
            self.committed
        );
        assert!(
            self.committed <= self.last_index(),
            "commit {} > last {}",
            self.committed,
            self.last_index()
        );
        assert!(
            self.applied <= self.committed,
            "applied {} > commit {}",
            self.applied,
            self.committed
        );
        assert!(
            self.persisted <= self.last_index(),
            "persisted {} > last {}",
            self.persisted,
            self.last_index()
        );
    }
}

#[cfg(test)]
mod tests {
    //! Guards append/truncate against a plain Vec model: after any sequence
    //! of appends (each replacing a suffix), the log holds exactly what the
    //! Vec does, and term lookups agree.

    use super::*;
    use crate::raft::entry::{ConfState, EntryKind, SnapshotMetadata};
    use proptest::prelude::*;

    fn base() -> Snapshot {
        Snapshot {
            metadata: SnapshotMetadata {
                index: Index(0),
                term: Term(0),
                conf_state: ConfState::default(),
            },
            data: Vec::new(),
        }
    }

    proptest! {
        // Fixed seed: the suite must be deterministic.
        #![proptest_config(ProptestConfig {
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x004c_4f47),
            ..ProptestConfig::with_cases(256)
        })]
        #[test]
        fn append_and_truncate_match_vec_model(
            operations in proptest::collection::vec((0u64..12, 1usize..4, 0u64..3), 1..20)
        ) {
            let mut log = RaftLog::new(Some(base()), Vec::new(), Index(0));
            let mut model: Vec<Term> = Vec::new();
            let mut term = 1u64;
            for (at, count, term_step) in operations {
                term += term_step;
                // Append at a position within or just past the model.
                let start = (at as usize).min(model.len());
                let new_entries: Vec<Entry> = (0..count)
                    .map(|offset| Entry {
                        term: Term(term),
                        index: Index((start + offset + 1) as u64),
                        kind: EntryKind::Normal,
                        data: vec![offset as u8],
                    })
                    .collect();
                let truncated = log.append(&new_entries);
                let expected_truncation = (start < model.len()).then_some(Index(start as u64 + 1));
                prop_assert_eq!(truncated, expected_truncation);
                model.truncate(start);
                model.extend(std::iter::repeat_n(Term(term), count));
                prop_assert_eq!(log.last_index(), Index(model.len() as u64));
                for (position, expected) in model.iter().enumerate() {
                    prop_assert_eq!(log.term_of(Index(position as u64 + 1)), Some(*expected));
                }
                prop_assert_eq!(log.term_of(Index(model.len() as u64 + 1)), None);
                log.check_invariants();
            }
        }

        #[test]
        fn maybe_append_keeps_matching_prefix(
            existing in 1usize..8, prev in 0u64..10, count in 0usize..5, same_term in any::<bool>()
        ) {
            let mut log = RaftLog::new(Some(base()), Vec::new(), Index(0));
            let old: Vec<Entry> = (1..=existing as u64)
                .map(|i| Entry { term: Term(1), index: Index(i), kind: EntryKind::Normal, data: vec![] })
                .collect();
            log.append(&old);
            let new_term = if same_term { Term(1) } else { Term(2) };
            let new_entries: Vec<Entry> = (0..count as u64)
                .map(|o| Entry { term: new_term, index: Index(prev + 1 + o), kind: EntryKind::Normal, data: vec![] })
                .collect();
            let prev_term = if prev == 0 { Term(0) } else { Term(1) };
            let result = log.maybe_append(Index(prev), prev_term, &new_entries);
            if prev as usize <= existing {
                let (last_new, _) = result.expect("prefix matches");
                prop_assert_eq!(last_new, Index(prev + count as u64));
                if same_term {
                    prop_assert_eq!(log.last_index(), Index((existing as u64).max(prev + count as u64)));
                } else if count > 0 {
                    prop_assert_eq!(log.last_index(), Index(prev + count as u64));
                }
            } else {
                prop_assert!(result.is_none());
            }
            log.check_invariants();
        }
    }
}
