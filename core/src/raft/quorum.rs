//! Majority quorums: the one rule every Raft decision reduces to. A commit
//! index, an election and a read-index round all succeed once a majority of
//! the voters agree, and any two majorities of one configuration intersect.
//! Membership changes are one voter at a time (see `membership.rs`), so a
//! majority of the old and of the new configuration also intersect.

use std::collections::BTreeSet;

use super::entry::{Index, NodeId};

/// How many voters make a majority of `voter_count`.
pub(crate) fn majority(voter_count: usize) -> usize {
    voter_count / 2 + 1
}

/// The highest index that a majority of `voters` has reached, given each
/// voter's acknowledged index. With no voters, `Index(0)`: an empty
/// configuration commits nothing.
pub(crate) fn committed_index(
    voters: &BTreeSet<NodeId>,
    acknowledged: impl Fn(NodeId) -> Index,
) -> Index {
    if voters.is_empty() {
        return Index(0);
    }
    let mut indexes: Vec<Index> = voters.iter().map(|&id| acknowledged(id)).collect();
    // Descending: the majority-th largest is reached by a majority.
    indexes.sort_unstable_by(|a, b| b.cmp(a));
    indexes[majority(voters.len()) - 1]
}

/// The outcome of counting votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VoteResult {
    /// A majority granted.
    Won,
    /// A majority refused (or can no longer grant).
    Lost,
    /// Neither yet.
    Pending,
}

/// Counts granted and refused votes among `voters`.
pub(crate) fn vote_result(
    voters: &BTreeSet<NodeId>,
    granted: &BTreeSet<NodeId>,
    refused: &BTreeSet<NodeId>,
) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Lost;
    }
    let needed = majority(voters.len());
    let yes = voters.iter().filter(|id| granted.contains(id)).count();
    let no = voters.iter().filter(|id| refused.contains(id)).count();
    if yes >= needed {
        VoteResult::Won
    } else if voters.len() - no < needed {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

#[cfg(test)]
mod tests {
    //! Guards the quorum arithmetic against a naive model: an index is
    //! committed iff strictly more than half of the voters have reached it.

    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        // Fixed seed: the suite must be deterministic.
        #![proptest_config(ProptestConfig {
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x5155_4f52_554d),
            ..ProptestConfig::with_cases(256)
        })]
        #[test]
        fn committed_index_matches_naive_count(
            acks in proptest::collection::btree_map(1u64..10, 0u64..20, 1..8)
        ) {
            let voters: BTreeSet<NodeId> = acks.keys().map(|&id| NodeId(id)).collect();
            let by_id: BTreeMap<NodeId, Index> =
                acks.iter().map(|(&id, &index)| (NodeId(id), Index(index))).collect();
            let fast = committed_index(&voters, |id| by_id[&id]);
            // Naive: the largest candidate index that more than half reached.
            let mut naive = Index(0);
            for candidate in 0..20u64 {
                let reached = by_id.values().filter(|index| index.0 >= candidate).count();
                if reached * 2 > voters.len() {
                    naive = Index(candidate);
                }
            }
            prop_assert_eq!(fast, naive);
        }

        #[test]
        fn vote_result_matches_naive_count(
            votes in proptest::collection::btree_map(1u64..10, 0u8..3, 1..8)
        ) {
            let voters: BTreeSet<NodeId> = votes.keys().map(|&id| NodeId(id)).collect();
            let granted: BTreeSet<NodeId> =
                votes.iter().filter(|(_, &v)| v == 1).map(|(&id, _)| NodeId(id)).collect();
            let refused: BTreeSet<NodeId> =
                votes.iter().filter(|(_, &v)| v == 2).map(|(&id, _)| NodeId(id)).collect();
            let result = vote_result(&voters, &granted, &refused);
            let n = voters.len();
            let expected = if granted.len() * 2 > n {
                VoteResult::Won
            } else if (n - refused.len()) * 2 <= n {
                VoteResult::Lost
            } else {
                VoteResult::Pending
            };
            prop_assert_eq!(result, expected);
        }
    }
}
