//! [`Metrics`]: the node's Prometheus metrics, named and typed as etcd's so
//! that dashboards and `etcdctl check datascale` (which scrapes
//! `process_resident_memory_bytes`) work unchanged. The node driver updates
//! the atomics; `/metrics` renders them in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// etcd's buckets for `etcd_disk_wal_fsync_duration_seconds`: 1 ms doubling
/// up to 8.192 s (prometheus.ExponentialBuckets(0.001, 2, 14)).
pub const WAL_FSYNC_BUCKETS_SECONDS: [f64; 14] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192,
];

/// Where the kernel reports this process's resident set.
const PROC_STATUS_PATH: &str = "/proc/self/status";
/// The resident-set line of [`PROC_STATUS_PATH`], in kB.
const RESIDENT_SET_FIELD: &str = "VmRSS:";
const BYTES_PER_KIB: u64 = 1024;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn increment(&self) {
        self.add(1);
    }
    /// Adds `amount`.
    pub fn add(&self, amount: u64) {
        self.0.fetch_add(amount, Ordering::Relaxed);
    }
    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }
    /// Adds `delta` (negative to subtract).
    pub fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A distribution of durations over fixed buckets (cumulative on render).
#[derive(Debug)]
pub struct Histogram {
    bounds_seconds: &'static [f64],
    /// Observations per bucket, not cumulative; the last slot is +Inf.
    bucket_counts: Vec<AtomicU64>,
    sum_nanoseconds: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// An empty histogram over ascending `bounds_seconds`.
    pub fn new(bounds_seconds: &'static [f64]) -> Histogram {
        assert!(
            bounds_seconds.windows(2).all(|pair| pair[0] < pair[1]),
            "histogram bounds {bounds_seconds:?} must ascend"
        );
        Histogram {
            bounds_seconds,
            bucket_counts: (0..=bounds_seconds.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum_nanoseconds: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one duration.
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = self
            .bounds_seconds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds_seconds.len());
        self.bucket_counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanoseconds = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanoseconds
            .fetch_add(nanoseconds, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        header(out, name, help, "histogram");
        let mut cumulative = 0;
        for (index, bound) in self.bounds_seconds.iter().enumerate() {
            cumulative += self.bucket_counts[index].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.bucket_counts[self.bounds_seconds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum_seconds = self.sum_nanoseconds.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum_seconds}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Every metric a node exports. Shared as `Arc<Metrics>` between the node
/// driver (which updates it) and the HTTP endpoint (which renders it).
#[derive(Debug)]
pub struct Metrics {
    /// Raft entries committed (etcd exports it as a gauge).
    pub proposals_committed: Gauge,
    /// Raft entries applied (etcd exports it as a gauge).
    pub proposals_applied: Gauge,
    /// Proposals waiting to commit.
    pub proposals_pending: Gauge,
    /// Proposals that failed.
    pub proposals_failed: Counter,
    /// Leader changes seen by this member.
    pub leader_changes_seen: Counter,
    /// 1 when a leader is known, else 0.
    pub has_leader: Gauge,
    /// WAL fsync latency.
    pub wal_fsync_duration: Histogram,
    /// Bytes the stored state occupies.
    pub db_total_size_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            proposals_committed: Gauge::default(),
            proposals_applied: Gauge::default(),
            proposals_pending: Gauge::default(),
            proposals_failed: Counter::default(),
            leader_changes_seen: Counter::default(),
            has_leader: Gauge::default(),
            wal_fsync_duration: Histogram::new(&WAL_FSYNC_BUCKETS_SECONDS),
            db_total_size_bytes: Gauge::default(),
        }
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, help: &str, kind: &str, value: impl std::fmt::Display) {
    header(out, name, help, kind);
    let _ = writeln!(out, "{name} {value}");
}

impl Metrics {
    /// The Prometheus text exposition of every metric, with the process's
    /// resident memory read now.
    pub fn render(&self) -> String {
        self.render_with_resident_memory(resident_memory_bytes())
    }

    /// [`Metrics::render`] with a given resident memory (None: not exported).
    pub fn render_with_resident_memory(&self, resident_memory_bytes: Option<u64>) -> String {
        let mut out = String::new();
        self.wal_fsync_duration.render(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
            &mut out,
        );
        sample(
            &mut out,
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            "gauge",
            self.db_total_size_bytes.get(),
        );
        sample(
            &mut out,
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            "gauge",
            self.has_leader.get(),
        );
        sample(
            &mut out,
            "etcd_server_leader_changes_seen_total",
            "The number of leader changes seen.",
            "counter",
            self.leader_changes_seen.get(),
        );
        sample(
            &mut out,
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            "gauge",
            self.proposals_applied.get(),
        );
        sample(
            &mut out,
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            "gauge",
            self.proposals_committed.get(),
        );
        sample(
            &mut out,
            "etcd_server_proposals_failed_total",
            "The total number of failed proposals seen.",
            "counter",
            self.proposals_failed.get(),
        );
        sample(
            &mut out,
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
            "gauge",
            self.proposals_pending.get(),
        );
        if let Some(bytes) = resident_memory_bytes {
            sample(
                &mut out,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                "gauge",
                bytes,
            );
        }
        out
    }
}

/// This process's resident set in bytes, from the kernel; None where
/// /proc is unavailable.
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string(PROC_STATUS_PATH).ok()?;
    parse_resident_set(&status)
}

/// The `VmRSS:` line of /proc/self/status (in kB), in bytes.
fn parse_resident_set(status: &str) -> Option<u64> {
    let line = status
        .lines()
        .find(|line| line.starts_with(RESIDENT_SET_FIELD))?;
    let kib: u64 = line[RESIDENT_SET_FIELD.len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * BYTES_PER_KIB)
}

#[cfg(test)]
mod tests {
    //! Guards the exposition format scrapers parse, and etcd's metric names.

    use super::*;

    #[test]
    fn histogram_renders_cumulative_buckets_sum_and_count() {
        let metrics = Metrics::default();
        metrics
            .wal_fsync_duration
            .observe(Duration::from_micros(500));
        metrics.wal_fsync_duration.observe(Duration::from_millis(3));
        metrics.wal_fsync_duration.observe(Duration::from_secs(10));
        let text = metrics.render_with_resident_memory(None);
        let name = "etcd_disk_wal_fsync_duration_seconds";
        assert!(
            text.contains(&format!("# TYPE {name} histogram\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{name}_bucket{{le=\"0.001\"}} 1\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{name}_bucket{{le=\"0.002\"}} 1\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{name}_bucket{{le=\"0.004\"}} 2\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{name}_bucket{{le=\"8.192\"}} 2\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{name}_bucket{{le=\"+Inf\"}} 3\n")),
            "{text}"
        );
        assert!(text.contains(&format!("{name}_sum 10.0035\n")), "{text}");
        assert!(text.contains(&format!("{name}_count 3\n")), "{text}");
    }

    #[test]
    fn counters_and_gauges_render_with_etcd_names_and_types() {
        let metrics = Metrics::default();
        metrics.proposals_committed.set(12);
        metrics.proposals_applied.set(11);
        metrics.proposals_pending.add(2);
        metrics.proposals_pending.add(-1);
        metrics.proposals_failed.increment();
        metrics.leader_changes_seen.add(3);
        metrics.has_leader.set(1);
        metrics.db_total_size_bytes.set(4096);
        let text = metrics.render_with_resident_memory(Some(1 << 20));
        for expected in [
            "# TYPE etcd_server_proposals_committed_total gauge\netcd_server_proposals_committed_total 12\n",
            "# TYPE etcd_server_proposals_applied_total gauge\netcd_server_proposals_applied_total 11\n",
            "# TYPE etcd_server_proposals_pending gauge\netcd_server_proposals_pending 1\n",
            "# TYPE etcd_server_proposals_failed_total counter\netcd_server_proposals_failed_total 1\n",
            "# TYPE etcd_server_leader_changes_seen_total counter\netcd_server_leader_changes_seen_total 3\n",
            "# TYPE etcd_server_has_leader gauge\netcd_server_has_leader 1\n",
            "# TYPE etcd_mvcc_db_total_size_in_bytes gauge\netcd_mvcc_db_total_size_in_bytes 4096\n",
            "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 1048576\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn resident_set_is_parsed_from_proc_status() {
        let status = "Name:\tcairn\nVmPeak:\t  9999 kB\nVmRSS:\t   2048 kB\nThreads:\t4\n";
        assert_eq!(parse_resident_set(status), Some(2048 * 1024));
        assert_eq!(parse_resident_set("Name:\tcairn\n"), None);
    }

    #[test]
    fn this_process_has_a_resident_set() {
        let bytes = resident_memory_bytes().expect("/proc/self/status on Linux");
        assert!(bytes > 0, "resident set {bytes}");
    }
}
