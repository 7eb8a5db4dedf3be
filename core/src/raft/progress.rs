//! [`Progress`]: the leader's view of one follower's log, and the flow
//! control that follows from it (etcd-io/raft's tracker.Progress).
//!
//! - `Probe`: the leader does not know where the follower's log matches; it
//!   sends one append at a time and waits for the answer (or a heartbeat
//!   answer) before sending the next.
//! - `Replicate`: the logs match up to `match_index`; appends are pipelined,
//!   `next_index` advances optimistically, bounded by the inflight window.
//! - `Snapshot`: the follower needs entries the leader has compacted; the
//!   leader streams its snapshot in chunks, one chunk in flight at a time.

use super::entry::Index;
use super::inflights::Inflights;

/// Where a follower stands in the replication protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProgressState {
    Probe,
    Replicate,
    Snapshot {
        /// The index of the snapshot being sent.
        index: Index,
        /// The byte offset of the next chunk to send.
        offset: u64,
    },
}

/// The leader's record of one follower.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    /// The highest index known to match the leader's log.
    // Invariant: match_index < next_index.
    pub(crate) match_index: Index,
    /// The next index to send.
    pub(crate) next_index: Index,
    pub(crate) state: ProgressState,
    /// In `Probe`: an append is outstanding. In `Snapshot`: a chunk is.
    pub(crate) message_outstanding: bool,
    pub(crate) inflights: Inflights,
    /// Heard from since the last check-quorum round.
    pub(crate) recent_active: bool,
    /// The last index sent when the latest heartbeat went out. Messages
    /// between two peers mostly arrive in order, so if the heartbeat's
    /// answer comes back while `match_index` is still below this, an append
    /// sent before it was lost.
    pub(crate) sent_at_heartbeat: Index,
}

impl Progress {
    pub(crate) fn new(next_index: Index, inflight_messages_max: usize) -> Progress {
        assert!(next_index.0 >= 1, "next index {next_index} must be >= 1");
        Progress {
            match_index: Index(0),
            next_index,
            state: ProgressState::Probe,
            message_outstanding: false,
            inflights: Inflights::new(inflight_messages_max),
            recent_active: false,
            sent_at_heartbeat: Index(0),
        }
    }

    pub(crate) fn become_probe(&mut self) {
        // After a snapshot, probe from just past it.
        let floor = match self.state {
            ProgressState::Snapshot { index, .. } => self.match_index.max(index),
            _ => self.match_index,
        };
        self.state = ProgressState::Probe;
        self.next_index = Index(floor.0 + 1);
        self.message_outstanding = false;
        self.inflights.reset();
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = Index(self.match_index.0 + 1);
        self.message_outstanding = false;
        self.inflights.reset();
    }

    pub(crate) fn become_snapshot(&mut self, index: Index) {
        self.state = ProgressState::Snapshot { index, offset: 0 };
        self.message_outstanding = false;
        self.inflights.reset();
    }

    /// Records that the follower's log matches up to `index`. Returns true
    /// when this is news.
    pub(crate) fn maybe_update(&mut self, index: Index) -> bool {
        let updated = index > self.match_index;
        if updated {
            self.match_index = index;
            self.message_outstanding = false;
        }
        if self.next_index.0 < index.0 + 1 {
            self.next_index = Index(index.0 + 1);
        }
        self.inflights.free_to(index);
        updated
    }

    /// Handles a rejection of the append whose previous index was
    /// `rejected`, with the follower's hint that its log may match up to
    /// `match_hint`. Returns false when the rejection is stale.
    pub(crate) fn maybe_decrease_to(&mut self, rejected: Index, match_hint: Index) -> bool {
        if self.state == ProgressState::Replicate {
            // Pipelined: any rejection at or below the match is stale.
            if rejected <= self.match_index {
                return false;
            }
            self.next_index = Index(self.match_index.0 + 1);
            return true;
        }
        // Probing: only the answer to the outstanding probe counts.
        if self.next_index.0 != rejected.0 + 1 {
            return false;
        }
        let candidate = rejected.min(Index(match_hint.0 + 1));
        self.next_index = candidate.max(Index(self.match_index.0 + 1));
        self.message_outstanding = false;
        true
    }

    /// True when no append may be sent now.
    pub(crate) fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.message_outstanding,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot { .. } => true,
        }
    }
}
