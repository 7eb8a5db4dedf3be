//! [`PlantedBug`]: deliberate bugs the simulator can switch on in the driver
//! to prove that its checkers catch them. Compiled only in the simulator
//! build (`--cfg madsim`): the production binary cannot enable one.

use std::fmt;

/// A deliberate driver bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PlantedBug {
    /// Serve linearizable reads from local state, without ReadIndex.
    ReadWithoutReadIndex,
    /// Persist the hard state without the vote, so a restarted member may
    /// vote twice in one term.
    ForgetVote,
    /// After a restart, apply the first replayed command twice.
    ApplyTwiceAfterRestart,
    /// Answer ReadIndex reads as soon as the read index is known, before the
    /// member applied up to it.
    ReadBeforeApply,
}

impl PlantedBug {
    /// Every driver bug.
    pub const ALL: [PlantedBug; 4] = [
        PlantedBug::ReadWithoutReadIndex,
        PlantedBug::ForgetVote,
        PlantedBug::ApplyTwiceAfterRestart,
        PlantedBug::ReadBeforeApply,
    ];

    /// The name `cairn-sim --bug` takes.
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::ReadWithoutReadIndex => "read-without-read-index",
            PlantedBug::ForgetVote => "forget-vote",
            PlantedBug::ApplyTwiceAfterRestart => "apply-twice-after-restart",
            PlantedBug::ReadBeforeApply => "read-before-apply",
        }
    }
}

impl fmt::Display for PlantedBug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
