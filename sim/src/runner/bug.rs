//! [`Bug`]: the deliberate bugs `cairn-sim --bug NAME` plants, to prove the
//! checkers catch them. Driver bugs are switched on through
//! `NodeConfig::planted_bug`; the fsync bug is a disk whose syncs do nothing.

use std::fmt;

use cairn_server::node::PlantedBug;

/// A deliberate bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bug {
    /// A driver bug.
    Driver(PlantedBug),
    /// WAL syncs return success without making anything durable.
    SkipWalFsync,
}

impl Bug {
    /// Every plantable bug.
    pub fn all() -> Vec<Bug> {
        let mut bugs: Vec<Bug> = PlantedBug::ALL.iter().copied().map(Bug::Driver).collect();
        bugs.push(Bug::SkipWalFsync);
        bugs
    }

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Bug::Driver(bug) => bug.name(),
            Bug::SkipWalFsync => "skip-wal-fsync",
        }
    }

    /// The bug named `name`.
    pub fn parse(name: &str) -> Option<Bug> {
        Bug::all().into_iter().find(|bug| bug.name() == name)
    }

    /// The driver switch, for driver bugs.
    pub fn driver_bug(self) -> Option<PlantedBug> {
        match self {
            Bug::Driver(bug) => Some(bug),
            Bug::SkipWalFsync => None,
        }
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
