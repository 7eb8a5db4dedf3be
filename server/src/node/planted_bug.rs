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
    /// The Raft core grants votes without the log up-to-date check.
    VoteIgnoringLog,
    /// The Raft leader commits without a quorum.
    CommitWithoutQuorum,
    /// The KV state machine evaluates a txn compare `LESS` on VERSION,
    /// CREATE or MOD as `<=`.
    CompareLessInclusive,
}

/// [`PlantedBug::DropWatchEvents`] loses the responses of revisions divisible by this.
pub const DROPPED_WATCH_REVISION_DIVISOR: i64 = 17;

impl PlantedBug {
    /// Every driver bug.
    pub const ALL: [PlantedBug; 7] = [
        PlantedBug::ReadWithoutReadIndex,
        PlantedBug::ForgetVote,
        PlantedBug::ApplyTwiceAfterRestart,
        PlantedBug::DropWatchEvents,
        PlantedBug::VoteIgnoringLog,
        PlantedBug::CommitWithoutQuorum,
        PlantedBug::CompareLessInclusive,
    ];

    /// The name `cairn-sim --bug` takes.
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::ReadWithoutReadIndex => "read-without-read-index",
            PlantedBug::ForgetVote => "forget-vote",
            PlantedBug::ApplyTwiceAfterRestart => "apply-twice-after-restart",
            PlantedBug::DropWatchEvents => "drop-watch-events",
            PlantedBug::VoteIgnoringLog => "vote-ignoring-log",
            PlantedBug::CommitWithoutQuorum => "commit-without-quorum",
            PlantedBug::CompareLessInclusive => "compare-less-inclusive",
        }
    }
}

impl fmt::Display for PlantedBug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
