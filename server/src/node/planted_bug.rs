//! [`PlantedBug`]: deliberate bugs the simulator can switch on in the driver
//! to prove that its checkers catch them. Compiled only in the simulator
//! build (`--cfg madsim`): the production binary cannot enable one.

use std::fmt;

/// A deliberate bug in the driver (or in the Raft core or the KV state
/// machine, through their configurations).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PlantedBug {
    /// Serve linearizable reads from local state, without ReadIndex.
    ReadWithoutReadIndex,
    /// Persist the hard state without the vote, so a restarted member may
    /// vote twice in one term.
    ForgetVote,
    /// After a restart, apply the first replayed command twice.
    ApplyTwiceAfterRestart,
    /// Lose, on its way to the stream, every watch response whose first
    /// event's revision is divisible by [`DROPPED_WATCH_REVISION_DIVISOR`].
    DropWatchEvents,
    /// On a restart, drop the recovered log entries above the persisted
    /// commit index before the Raft core sees them, as if the leader would
    /// send them again. But the member acknowledged them: a leader counted
    /// them towards a quorum, and its match index for the member now
    /// exceeds the member's log. The member catches up later, so unless it
    /// was needed for that quorum nothing else goes wrong.
    DropUncommittedTailOnRestart,
    /// The Raft core grants votes without the log up-to-date check.
    VoteIgnoringLog,
    /// The Raft leader commits without a quorum.
    CommitWithoutQuorum,
    /// A follower or candidate sends its Ready's messages (append
    /// responses, votes) before persisting, as only a leader may.
    FollowerAcksBeforeFsync,
    /// A Raft follower accepts an append on any entry at the prev index,
    /// whatever its term.
    AppendIgnoringPrevTerm,
    /// The KV state machine evaluates a txn compare `LESS` on VERSION,
    /// CREATE or MOD as `<=`.
    CompareLessInclusive,
    /// A keep-alive is answered at once although its lease carries a
    /// checkpointed remaining TTL, and the checkpoint of 0 that would clear
    /// it is never proposed (Cairn before the fix of swarm-quick seed
    /// 176016817): a new leader restarts the lease from the stale remainder.
    KeepAliveBeforeCheckpoint,
}

/// [`PlantedBug::DropWatchEvents`] loses the responses of revisions divisible by this.
pub const DROPPED_WATCH_REVISION_DIVISOR: i64 = 17;

impl PlantedBug {
    /// Every driver bug.
    pub const ALL: [PlantedBug; 11] = [
        PlantedBug::ReadWithoutReadIndex,
        PlantedBug::ForgetVote,
        PlantedBug::ApplyTwiceAfterRestart,
        PlantedBug::DropWatchEvents,
        PlantedBug::DropUncommittedTailOnRestart,
        PlantedBug::VoteIgnoringLog,
        PlantedBug::CommitWithoutQuorum,
        PlantedBug::FollowerAcksBeforeFsync,
        PlantedBug::AppendIgnoringPrevTerm,
        PlantedBug::CompareLessInclusive,
        PlantedBug::KeepAliveBeforeCheckpoint,
    ];

    /// The name `cairn-sim --bug` takes.
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::ReadWithoutReadIndex => "read-without-read-index",
            PlantedBug::ForgetVote => "forget-vote",
            PlantedBug::ApplyTwiceAfterRestart => "apply-twice-after-restart",
            PlantedBug::DropWatchEvents => "drop-watch-events",
            PlantedBug::DropUncommittedTailOnRestart => "drop-uncommitted-tail-on-restart",
            PlantedBug::VoteIgnoringLog => "vote-ignoring-log",
            PlantedBug::CommitWithoutQuorum => "commit-without-quorum",
            PlantedBug::FollowerAcksBeforeFsync => "follower-acks-before-fsync",
            PlantedBug::AppendIgnoringPrevTerm => "append-ignoring-prev-term",
            PlantedBug::CompareLessInclusive => "compare-less-inclusive",
            PlantedBug::KeepAliveBeforeCheckpoint => "keep-alive-before-checkpoint",
        }
    }
}

impl fmt::Display for PlantedBug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
