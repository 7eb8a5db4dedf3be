//! Automatic compaction (etcd's --auto-compaction-mode), counted in driver
//! ticks so it follows the driver's clock (simulated under madsim).
//!
//! Every member keeps the bookkeeping, but only the leader proposes
//! compactions (etcd pauses the compactor on followers), through the log
//! like a client's KV.Compact, so they are replicated and logged.
//!
//! - periodic (retention R): every min(R, 1h) / 10 the current revision is
//!   sampled, keeping the last R / that interval + 1 samples; the first
//!   compaction comes R after start, later ones every min(R, 1h), each to
//!   the oldest sample, i.e. the revision of about R ago (etcd's
//!   compactor/periodic.go).
//! - revision (retention N): every check interval (5 minutes in etcd), if
//!   current − N is positive and new, compact to it (compactor/revision.go).

use std::collections::VecDeque;
use std::time::Duration;

use cairn_core::kv::{Command, CompactionRequest, Revision};
use tracing::{debug, info};

use super::Driver;
use crate::node::config::AutoCompaction;

/// Periodic mode compacts at most this often, however long the retention.
pub const PERIODIC_COMPACT_INTERVAL_MAX: Duration = Duration::from_secs(3600);
/// Periodic mode samples the revision this many times per compact interval.
pub const PERIODIC_SAMPLES_PER_INTERVAL: u32 = 10;

/// The compactor's state.
#[derive(Debug)]
pub(super) enum AutoCompactor {
    /// Off.
    Off,
    /// etcd's "periodic" mode.
    Periodic {
        /// The retention, for the log.
        retention: Duration,
        /// Ticks between revision samples.
        sample_ticks: u64,
        /// Ticks between compactions after the first.
        compact_ticks: u64,
        /// Ticks before the next compaction may run (the retention at first).
        wait_ticks: u64,
        /// Samples kept.
        samples_max: usize,
        /// Revisions sampled, oldest first.
        samples: VecDeque<Revision>,
        /// Ticks since the last sample.
        ticks_since_sample: u64,
        /// Ticks since the last compaction (or the start).
        ticks_since_compaction: u64,
    },
    /// etcd's "revision" mode.
    Revision {
        /// Revisions to keep.
        retention: i64,
        /// Ticks between checks.
        check_ticks: u64,
        /// Ticks since the last check.
        ticks_since_check: u64,
        /// The revision last compacted to by this compactor.
        last_revision: Revision,
    },
}

impl AutoCompactor {
    /// A compactor for `mode`; `ticks_in` converts a duration to ticks (at least 1).
    pub(super) fn new(
        mode: Option<AutoCompaction>,
        revision_interval: Duration,
        ticks_in: impl Fn(Duration) -> u64,
    ) -> AutoCompactor {
        match mode {
            None => AutoCompactor::Off,
            Some(AutoCompaction::Periodic(retention)) => {
                let compact_interval = retention.min(PERIODIC_COMPACT_INTERVAL_MAX);
                let sample_ticks = ticks_in(compact_interval / PERIODIC_SAMPLES_PER_INTERVAL);
                let retention_ticks = ticks_in(retention);
                let samples_max = usize::try_from(retention_ticks / sample_ticks)
                    .unwrap_or(usize::MAX)
                    .saturating_add(1);
                AutoCompactor::Periodic {
                    retention,
                    sample_ticks,
                    compact_ticks: ticks_in(compact_interval),
                    wait_ticks: retention_ticks,
                    samples_max,
                    samples: VecDeque::new(),
                    ticks_since_sample: 0,
                    ticks_since_compaction: 0,
                }
            }
            Some(AutoCompaction::Revision(retention)) => {
                assert!(
                    retention > 0,
                    "revision retention {retention} is not positive"
                );
                AutoCompactor::Revision {
                    retention,
                    check_ticks: ticks_in(revision_interval),
                    ticks_since_check: 0,
                    last_revision: 0,
                }
            }
        }
    }

    /// One tick: the revision to compact to now, if any. `revision` is the
    /// store's current revision; only a leader compacts.
    fn on_tick(&mut self, revision: Revision, is_leader: bool) -> Option<Revision> {
        match self {
            AutoCompactor::Off => None,
            AutoCompactor::Periodic {
                retention,
                sample_ticks,
                compact_ticks,
                wait_ticks,
                samples_max,
                samples,
                ticks_since_sample,
                ticks_since_compaction,
            } => {
                if samples.is_empty() {
                    samples.push_back(revision);
                }
                *ticks_since_sample += 1;
                *ticks_since_compaction += 1;
                if *ticks_since_sample < *sample_ticks {
                    return None;
                }
                *ticks_since_sample = 0;
                let mut target = None;
                if is_leader && *ticks_since_compaction >= *wait_ticks {
                    *wait_ticks = *compact_ticks;
                    *ticks_since_compaction = 0;
                    target = samples.front().copied();
                    if let Some(target) = target {
                        info!(
                            revision = target,
                            retention_ms = retention.as_millis() as u64,
                            "starting auto compaction at revision {target}"
                        );
                    }
                }
                samples.push_back(revision);
                while samples.len() > *samples_max {
                    samples.pop_front();
                }
                target
            }
            AutoCompactor::Revision {
                retention,
                check_ticks,
                ticks_since_check,
                last_revision,
            } => {
                *ticks_since_check += 1;
                if *ticks_since_check < *check_ticks {
                    return None;
                }
                *ticks_since_check = 0;
                let target = revision - *retention;
                if !is_leader || target <= 0 || target == *last_revision {
                    return None;
                }
                *last_revision = target;
                info!(
                    revision = target,
                    retention = *retention,
                    "starting auto compaction at revision {target}"
                );
                Some(target)
            }
        }
    }
}

impl Driver {
    /// Runs the compactor for one tick, proposing a compaction when due.
    pub(super) fn auto_compact(&mut self) {
        let revision = self.store.revision();
        let is_leader = self.is_leader();
        let Some(target) = self.compactor.on_tick(revision, is_leader) else {
            return;
        };
        let compacted = self.store.compact_revision();
        if target <= compacted {
            debug!(
                revision = target,
                compact_revision = compacted,
                "auto compaction skipped: already compacted"
            );
            return;
        }
        let command = Command::Compact(CompactionRequest {
            revision: target,
            physical: false,
        });
        if self.propose_internal(command) {
            info!(revision = target, "auto compaction proposed");
        }
    }
}
