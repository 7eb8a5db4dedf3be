//! [`NodeMetrics`]: what the node driver observes, as atomics any thread may
//! read (the `/metrics` endpoint renders them in Prometheus text; the names
//! in each field's doc are the etcd metric it backs). The driver is the only
//! writer.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds, in seconds, of the fsync histogram's buckets (etcd's
/// `etcd_disk_wal_fsync_duration_seconds`: 1 ms doubling to about 8 s).
pub const FSYNC_BUCKET_BOUNDS_SECONDS: [f64; 14] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192,
];

/// A duration histogram with fixed buckets, lock-free.
#[derive(Debug, Default)]
pub struct DurationHistogram {
    /// Count of observations at or below each bound (not cumulative; the
    /// renderer accumulates). The last slot counts those above every bound.
    buckets: [AtomicU64; FSYNC_BUCKET_BOUNDS_SECONDS.len() + 1],
    count: AtomicU64,
    sum_nanoseconds: AtomicU64,
}

/// A point-in-time copy of a [`DurationHistogram`].
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, cumulative count) per bucket, ascending;
    /// the `+Inf` bucket is `count`.
    pub cumulative_buckets: Vec<(f64, u64)>,
    /// Number of observations.
    pub count: u64,
    /// Sum of observations in seconds.
    pub sum_seconds: f64,
}

impl DurationHistogram {
    /// Records one observation.
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let slot = FSYNC_BUCKET_BOUNDS_SECONDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(FSYNC_BUCKET_BOUNDS_SECONDS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanoseconds = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanoseconds
            .fetch_add(nanoseconds, Ordering::Relaxed);
    }

    /// The histogram as Prometheus wants it.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let cumulative_buckets = FSYNC_BUCKET_BOUNDS_SECONDS
            .iter()
            .zip(&self.buckets)
            .map(|(&bound, bucket)| {
                cumulative += bucket.load(Ordering::Relaxed);
                (bound, cumulative)
            })
            .collect();
        HistogramSnapshot {
            cumulative_buckets,
            count: self.count.load(Ordering::Relaxed),
            sum_seconds: self.sum_nanoseconds.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// Everything the node driver reports. Read with `Ordering::Relaxed`
/// through the accessor methods; each value is individually current, not a
/// consistent cut.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    /// `etcd_server_proposals_committed_total` (a gauge: the commit index).
    pub proposals_committed: AtomicU64,
    /// `etcd_server_proposals_applied_total` (a gauge: the applied index).
    pub proposals_applied: AtomicU64,
    /// `etcd_server_proposals_pending`: client proposals awaiting apply.
    pub proposals_pending: AtomicU64,
    /// `etcd_server_proposals_failed_total`: proposals refused or timed out.
    pub proposals_failed: AtomicU64,
    /// `etcd_server_leader_changes_seen_total`.
    pub leader_changes: AtomicU64,
    /// `etcd_server_has_leader` (1 or 0).
    pub has_leader: AtomicBool,
    /// `etcd_server_is_leader` (1 or 0).
    pub is_leader: AtomicBool,
    /// `etcd_server_is_learner` (1 or 0).
    pub is_learner: AtomicBool,
    /// The current Raft term (the ResponseHeader's raft_term).
    pub term: AtomicU64,
    /// `etcd_debugging_mvcc_current_revision` (the ResponseHeader's revision).
    pub revision: AtomicI64,
    /// `etcd_mvcc_db_total_size_in_bytes`: the KV state's size estimate.
    pub db_size_bytes: AtomicU64,
    /// Bytes the write-ahead log and snapshots take on disk.
    pub wal_size_bytes: AtomicU64,
    /// `etcd_disk_wal_fsync_duration_seconds`: one observation per Ready
    /// persisted (one write and one fsync).
    pub fsync_durations: DurationHistogram,
    /// `etcd_server_snapshot_apply_in_progress_total`-like: snapshots taken
    /// or installed by this member.
    pub snapshots: AtomicU64,
    /// Peer messages dropped by the transport (queue full, peer down).
    pub peer_messages_dropped: AtomicU64,
    /// `etcd_debugging_mvcc_watch_stream_total`: open watch streams.
    pub watch_streams: AtomicU64,
    /// `etcd_debugging_mvcc_watcher_total`: watches across all streams.
    pub watchers: AtomicU64,
}

impl NodeMetrics {
    /// See the field.
    pub fn proposals_committed(&self) -> u64 {
        self.proposals_committed.load(Ordering::Relaxed)
    }
    /// See the field.
    pub fn proposals_applied(&self) -> u64 {
        self.proposals_applied.load(Ordering::Relaxed)
    }
    /// See the field.
    pub fn proposals_pending(&self) -> u64 {
        self.proposals_pending.load(Ordering::Relaxed)
    }
    /// See the field.
    pub fn proposals_failed(&self) -> u64 {
        self.proposals_failed.load(Ordering::Relaxed)
    }
    /// See the field.
    pub fn leader_changes(&self) -> u64 {
        self.leader_changes.load(Ordering::Relaxed)
    }
    /// See the field.
    pub fn has_leader(&self) -> bool {
        self.has_leader.load(Ordering::Relaxed)
    }
    /// See the field.
    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::Relaxed)
    }
    /// See the field.
    pub fn is_learner(&self) -> bool {
        self.is_learner.load(Ordering::Relaxed)
    }
    /// See the field.
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Relaxed)
    }
    /// See the field.
    pub fn revision(&self) -> i64 {
        self.revision.load(Ordering::Relaxed)
    }
    /// See the field.
    pub fn db_size_bytes(&self) -> u64 {
        self.db_size_bytes.load(Ordering::Relaxed)
    }
    /// See the field.
    pub fn wal_size_bytes(&self) -> u64 {
        self.wal_size_bytes.load(Ordering::Relaxed)
    }
    /// See the field.
    pub fn snapshots(&self) -> u64 {
        self.snapshots.load(Ordering::Relaxed)
    }
    /// See the field.
    pub fn peer_messages_dropped(&self) -> u64 {
        self.peer_messages_dropped.load(Ordering::Relaxed)
    }
    /// See the field.
    pub fn watch_streams(&self) -> u64 {
        self.watch_streams.load(Ordering::Relaxed)
    }
    /// See the field.
    pub fn watchers(&self) -> u64 {
        self.watchers.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_buckets_cumulate() {
        let histogram = DurationHistogram::default();
        histogram.observe(Duration::from_micros(500));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(60));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 3);
        assert_eq!(snapshot.cumulative_buckets[0], (0.001, 1));
        assert_eq!(snapshot.cumulative_buckets[2], (0.004, 2));
        assert_eq!(snapshot.cumulative_buckets.last().unwrap().1, 2);
        assert!(
            (snapshot.sum_seconds - 60.0035).abs() < 1e-9,
            "{}",
            snapshot.sum_seconds
        );
    }
}
