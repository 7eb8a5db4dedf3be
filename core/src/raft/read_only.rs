//! [`ReadOnly`]: linearizable reads without a log write (the Raft paper's
//! ReadIndex, §6.4 of Ongaro's dissertation).
//!
//! A read asked of the leader records the commit index at that moment and
//! waits for a *round*: a heartbeat broadcast sent after the request. Once a
//! majority of voters has answered a heartbeat of that round or a later one,
//! no other leader can have committed anything newer, so reading the state
//! machine at the recorded index is linearizable. Rounds are numbered; an
//! answer to round r confirms every round <= r, so plain heartbeats (which
//! carry the latest round) double as retries. A new leader serves no read
//! until it has committed an entry of its own term.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::entry::{Index, NodeId};
use super::quorum;

/// At most this many reads wait at once on a leader; more are refused.
pub const READS_PENDING_MAX: usize = 4096;

/// A read waiting for its round to be confirmed.
#[derive(Clone, Debug)]
pub(crate) struct PendingRead {
    pub(crate) round: u64,
    pub(crate) index: Index,
    pub(crate) context: Vec<u8>,
    /// Who asked: the leader itself, or a follower that forwarded it.
    pub(crate) requester: NodeId,
}

/// The leader's pending reads.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReadOnly {
    /// Reads waiting for the leader's first commit in its term.
    waiting_for_commit: VecDeque<(Vec<u8>, NodeId)>,
    // Invariant: rounds non-decreasing from front to back.
    pending: VecDeque<PendingRead>,
    /// The last round broadcast.
    round_sent: u64,
    /// Reads were added to round `round_sent + 1`, not yet broadcast.
    round_unsent: bool,
    /// The highest round each voter has answered.
    acknowledged: BTreeMap<NodeId, u64>,
}

impl ReadOnly {
    pub(crate) fn pending_count(&self) -> usize {
        self.waiting_for_commit.len() + self.pending.len()
    }

    pub(crate) fn wait_for_commit(&mut self, context: Vec<u8>, requester: NodeId) {
        assert!(
            self.pending_count() < READS_PENDING_MAX,
            "read queue over its bound"
        );
        self.waiting_for_commit.push_back((context, requester));
    }

    pub(crate) fn take_waiting(&mut self) -> Vec<(Vec<u8>, NodeId)> {
        self.waiting_for_commit.drain(..).collect()
    }

    /// Queues a read at `index` for the next round.
    pub(crate) fn add(&mut self, context: Vec<u8>, requester: NodeId, index: Index) {
        assert!(
            self.pending.len() < READS_PENDING_MAX,
            "read queue over its bound"
        );
        self.pending.push_back(PendingRead {
            round: self.round_sent + 1,
            index,
            context,
            requester,
        });
        self.round_unsent = true;
    }

    /// Starts the next round if reads wait for one and no round is in
    /// flight; returns its number. One round at a time: the reads that
    /// arrive while a round is out (the leader's own and every follower's)
    /// all share the next, so under load one heartbeat exchange confirms
    /// many reads. A lost round is retried by the next plain heartbeat,
    /// which carries it.
    pub(crate) fn start_round(&mut self) -> Option<u64> {
        if !self.round_unsent {
            return None;
        }
        if self
            .pending
            .front()
            .is_some_and(|read| read.round <= self.round_sent)
        {
            return None;
        }
        self.round_unsent = false;
        self.round_sent += 1;
        Some(self.round_sent)
    }

    /// The round plain heartbeats carry: the latest sent, while reads wait.
    pub(crate) fn heartbeat_context(&self) -> Vec<u8> {
        if self
            .pending
            .iter()
            .any(|read| read.round <= self.round_sent)
        {
            self.round_sent.to_be_bytes().to_vec()
        } else {
            Vec::new()
        }
    }

    /// Records a heartbeat answer carrying `context`.
    pub(crate) fn acknowledge(&mut self, from: NodeId, context: &[u8]) {
        let Ok(bytes) = <[u8; 8]>::try_from(context) else {
            return;
        };
        let round = u64::from_be_bytes(bytes).min(self.round_sent);
        let entry = self.acknowledged.entry(from).or_insert(0);
        *entry = (*entry).max(round);
    }

    /// Removes and returns every read whose round a majority of `voters`
    /// has confirmed. `leader` acknowledges every round it sent.
    pub(crate) fn release(
        &mut self,
        voters: &BTreeSet<NodeId>,
        leader: NodeId,
    ) -> Vec<PendingRead> {
        let confirmed = quorum::committed_index(voters, |id| {
            if id == leader {
                Index(self.round_sent)
            } else {
                Index(self.acknowledged.get(&id).copied().unwrap_or(0))
            }
        })
        .0;
        let mut released = Vec::new();
        while self
            .pending
            .front()
            .is_some_and(|read| read.round <= confirmed)
        {
            if let Some(read) = self.pending.pop_front() {
                released.push(read);
            }
        }
        released
    }

    pub(crate) fn check_invariants(&self) {
        assert!(
            self.pending_count() <= READS_PENDING_MAX,
            "{} reads pending > {READS_PENDING_MAX}",
            self.pending_count()
        );
        let mut previous = 0;
        for read in &self.pending {
            assert!(read.round >= previous, "read rounds out of order");
            assert!(
                read.round <= self.round_sent + 1,
                "read round {} not yet due",
                read.round
            );
            previous = read.round;
        }
    }
}
