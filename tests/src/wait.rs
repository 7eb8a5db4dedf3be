//! Bounded polling: the only way the harness waits for a condition.
//!
//! Servers and clients run at the speed of a shared, busy machine, so a
//! fixed sleep is either too short (flaky) or too long (slow). Polling a
//! predicate up to a deadline is neither.

use std::thread;
use std::time::{Duration, Instant};

/// How long to pause between two probes of a condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Calls `probe` until it returns `Some`, at most until `timeout` has
/// passed; panics naming `description` if the deadline passes first.
pub fn wait_until<T>(
    description: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {description}");
        }
        thread::sleep(POLL_INTERVAL);
    }
}
