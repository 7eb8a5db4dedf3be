//! Simulated time as the checkers see it: an instant on the simulation's
//! clock, in nanoseconds since the run started. The checkers never read a
//! clock; every instant is handed to them by the simulator, so a seed gives
//! the same verdicts every time.

use std::fmt;
use std::time::Duration;

/// An instant of simulated time, nanoseconds since the start of the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimTime(pub u64);

impl SimTime {
    /// The start of the run.
    pub const ZERO: SimTime = SimTime(0);

    /// The instant `duration` after the start of the run.
    pub fn from_duration(duration: Duration) -> SimTime {
        SimTime(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX))
    }

    /// The time elapsed since the start of the run.
    pub fn as_duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// This instant plus `duration`, saturating at the end of time.
    pub fn saturating_add(self, duration: Duration) -> SimTime {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        SimTime(self.0.saturating_add(nanos))
    }
}

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0 / 1_000_000_000;
        let micros = (self.0 % 1_000_000_000) / 1_000;
        write!(f, "{seconds}.{micros:06}s")
    }
}
