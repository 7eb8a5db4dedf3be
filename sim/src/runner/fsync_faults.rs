//! [`FsyncFaults`]: the fsyncs the nemesis stretches over simulated time,
//! through the driver's `NodeObserver::fsync_delay` seam.
//!
//! A stretched fsync is written but not yet durable for its whole delay,
//! while the member's other tasks (the transport, the client API) run on,
//! so a crash inside it lands where a process killed inside fdatasync
//! would: after a leader's messages left, before a follower's could.
//!
//! - `fsync-stall` sets a delay for every fsync of a member while it lasts;
//!   any kill in the window loses the unsynced batch.
//! - `crash-in-fsync` arms one member: its next fsync is stretched, and
//!   the nemesis, told by a oneshot, kills the member inside it.
//!
//! Keyed by Raft ID, not machine number: the observer only knows the ID,
//! and a wiped machine's new identity starts without the old one's faults.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cairn_core::raft::{Entry, Index, NodeId};
use tokio::sync::oneshot;

/// The entries an armed crash caught in flight (first and last index), or
/// `None` for an fsync of a hard state alone.
pub type CaughtEntries = Option<(Index, Index)>;

/// A crash armed for a member's next fsync.
#[derive(Debug)]
struct ArmedCrash {
    /// How long the caught fsync takes.
    delay: Duration,
    /// Told when the fsync starts.
    fired: oneshot::Sender<CaughtEntries>,
}

#[derive(Debug, Default)]
struct MemberFsync {
    /// `fsync-stall`'s delay of every fsync.
    stall: Option<Duration>,
    crash: Option<ArmedCrash>,
}

/// The stretched fsyncs of every member. Cloning shares them.
#[derive(Clone, Debug, Default)]
pub struct FsyncFaults(Arc<Mutex<BTreeMap<NodeId, MemberFsync>>>);

impl FsyncFaults {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<NodeId, MemberFsync>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every fsync of `member` takes `delay` before it is durable
    /// (`None`: at once again).
    pub fn set_stall(&self, member: NodeId, delay: Option<Duration>) {
        self.lock().entry(member).or_default().stall = delay;
    }

    /// Stretches the next fsync of `member` to `delay` and says so through
    /// the returned receiver (dropped unsent when disarmed). Replaces a
    /// crash armed before.
    pub fn arm_crash(&self, member: NodeId, delay: Duration) -> oneshot::Receiver<CaughtEntries> {
        let (fired, receiver) = oneshot::channel();
        self.lock().entry(member).or_default().crash = Some(ArmedCrash { delay, fired });
        receiver
    }

    /// Clears every fault of `member`: stalls end, an armed crash is off.
    pub fn clear(&self, member: NodeId) {
        self.lock().remove(&member);
    }

    /// The delay of `member`'s fsync of `entries` that starts now: an armed
    /// crash fires (and is used up), else the stall in force.
    pub fn delay(&self, member: NodeId, entries: &[Entry]) -> Option<Duration> {
        let mut faults = self.lock();
        let faults = faults.get_mut(&member)?;
        if let Some(crash) = faults.crash.take() {
            let caught = entries.first().zip(entries.last());
            let caught = caught.map(|(first, last)| (first.index, last.index));
            // A nemesis task that gave up dropped its receiver: no crash.
            if crash.fired.send(caught).is_ok() {
                return Some(crash.delay.max(faults.stall.unwrap_or_default()));
            }
        }
        faults.stall
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_armed_crash_fires_once_and_stalls_last_until_cleared() {
        let faults = FsyncFaults::default();
        let member = NodeId(7);
        assert_eq!(faults.delay(member, &[]), None);
        faults.set_stall(member, Some(Duration::from_millis(5)));
        let mut fired = faults.arm_crash(member, Duration::from_millis(50));
        assert!(fired.try_recv().is_err(), "not fired before an fsync");
        assert_eq!(faults.delay(member, &[]), Some(Duration::from_millis(50)));
        assert_eq!(fired.try_recv(), Ok(None));
        assert_eq!(faults.delay(member, &[]), Some(Duration::from_millis(5)));
        assert_eq!(faults.delay(NodeId(8), &[]), None);
        // A crash whose nemesis task gave up does not stretch the fsync.
        drop(faults.arm_crash(member, Duration::from_millis(50)));
        assert_eq!(faults.delay(member, &[]), Some(Duration::from_millis(5)));
        faults.clear(member);
        assert_eq!(faults.delay(member, &[]), None);
    }
}
