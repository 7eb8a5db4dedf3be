//! [`QuorumBudget`]: how many voters the nemesis may put down for good (a
//! bit-flipped member may never start again; a wiped voter is down until
//! the operator removed its old identity) or remove, so that healing can
//! always restore progress: the live voters must still form a quorum.
//!
//! A membership change that gave up may still take effect later (its entry
//! sits in some log and commits with a later leader; changes are effective
//! as soon as they are appended), so the cluster's real voter set is not
//! known until a later change is confirmed. The budget keeps those changes
//! [`Doubt`]ful and requires every rule to hold both without them and with
//! all of them applied.

use std::collections::{BTreeMap, BTreeSet};

use super::cluster::{Cluster, Membership};

/// `remove-member` leaves at least this many voters.
pub const VOTERS_MIN: usize = 3;

/// A membership change whose outcome is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Doubt {
    /// The member (or a wiped machine's old identity) may have been removed.
    Removal,
    /// The learner may have been promoted.
    Promotion,
}

/// What may be lost for good, and which changes are in doubt.
#[derive(Clone, Debug, Default)]
pub struct QuorumBudget {
    /// Machines whose disk had a bit flipped: possibly down for good.
    pub bit_flipped: BTreeSet<u32>,
    /// Machines with a membership change in doubt.
    pub in_doubt: BTreeMap<u32, Doubt>,
}

/// One voter of a possible configuration.
#[derive(Clone, Copy, Debug)]
struct Voter {
    number: u32,
    down_for_good: bool,
}

/// Whether voters with this many down for good can still form a quorum.
pub fn quorum_survives(voters: usize, down: usize) -> bool {
    voters >= 1 && down <= (voters - 1) / 2
}

impl QuorumBudget {
    /// The voter sets the cluster may have: the runner's view, and the
    /// view with every change in doubt applied.
    fn possible_voters(&self, cluster: &Cluster) -> [Vec<Voter>; 2] {
        let members = cluster.members();
        [false, true].map(|applied| {
            members
                .iter()
                .filter_map(|member| {
                    let membership = member.membership();
                    let is_voter = match (applied, self.in_doubt.get(&member.number)) {
                        (true, Some(Doubt::Removal)) => false,
                        (true, Some(Doubt::Promotion)) => {
                            membership == Membership::Learner || membership.is_voter()
                        }
                        _ => membership.is_voter(),
                    };
                    is_voter.then(|| Voter {
                        number: member.number,
                        down_for_good: !membership.may_run()
                            || self.bit_flipped.contains(&member.number),
                    })
                })
                .collect()
        })
    }

    /// Whether machine `number` may go down for good (be bit-flipped or
    /// wiped): in every possible configuration where it votes, the others
    /// still form a quorum without it.
    pub fn may_lose(&self, cluster: &Cluster, number: u32) -> bool {
        self.possible_voters(cluster).iter().all(|voters| {
            if !voters.iter().any(|voter| voter.number == number) {
                return true;
            }
            let down = voters
                .iter()
                .filter(|voter| voter.number != number && voter.down_for_good)
                .count();
            quorum_survives(voters.len(), down + 1)
        })
    }

    /// Why machine `number` may not be removed, if it may not: in some
    /// possible configuration where it votes, fewer than [`VOTERS_MIN`]
    /// voters would remain, or the live ones would not form a quorum.
    pub fn removal_refused(&self, cluster: &Cluster, number: u32) -> Option<String> {
        for voters in self.possible_voters(cluster) {
            if !voters.iter().any(|voter| voter.number == number) {
                continue;
            }
            let remaining = voters.len() - 1;
            let down = voters
                .iter()
                .filter(|voter| voter.number != number && voter.down_for_good)
                .count();
            if remaining < VOTERS_MIN || !quorum_survives(remaining, down) {
                return Some(format!(
                    "{remaining} voters would remain, {down} of them down for good"
                ));
            }
        }
        None
    }
}
