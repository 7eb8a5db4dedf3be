//! The `/metrics` exposition: the node's [`NodeMetrics`] rendered in the
//! Prometheus text format, named and typed as etcd's so that dashboards and
//! `etcdctl check datascale` (which scrapes `process_resident_memory_bytes`)
//! work unchanged. The node driver is the only writer of the atomics; this
//! module only reads them.

use std::fmt::Write as _;

use crate::node::{HistogramSnapshot, NodeMetrics};

/// The registry `/metrics` renders: the node driver's own.
pub type Metrics = NodeMetrics;

/// Where the kernel reports this process's resident set.
const PROC_STATUS_PATH: &str = "/proc/self/status";
/// The resident-set line of [`PROC_STATUS_PATH`], in kB.
const RESIDENT_SET_FIELD: &str = "VmRSS:";
const BYTES_PER_KIB: u64 = 1024;

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, help: &str, kind: &str, value: impl std::fmt::Display) {
    header(out, name, help, kind);
    let _ = writeln!(out, "{name} {value}");
}

fn histogram(out: &mut String, name: &str, help: &str, snapshot: &HistogramSnapshot) {
    header(out, name, help, "histogram");
    for (bound, cumulative) in &snapshot.cumulative_buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", snapshot.count);
    let _ = writeln!(out, "{name}_sum {}", snapshot.sum_seconds);
    let _ = writeln!(out, "{name}_count {}", snapshot.count);
}

/// The Prometheus text exposition of every metric, with the process's
/// resident memory read now.
pub fn render(metrics: &NodeMetrics) -> String {
    render_with_resident_memory(metrics, resident_memory_bytes())
}

/// [`render`] with a given resident memory (None: not exported).
pub fn render_with_resident_memory(
    metrics: &NodeMetrics,
    resident_memory_bytes: Option<u64>,
) -> String {
    let mut out = String::new();
    histogram(
        &mut out,
        "etcd_disk_wal_fsync_duration_seconds",
        "The latency distributions of fsync called by WAL.",
        &metrics.fsync_durations.snapshot(),
    );
    sample(
        &mut out,
        "etcd_mvcc_db_total_size_in_bytes",
        "Total size of the underlying database physically allocated in bytes.",
        "gauge",
        metrics.db_size_bytes(),
    );
    sample(
        &mut out,
        "etcd_debugging_mvcc_current_revision",
        "The current revision of store.",
        "gauge",
        metrics.revision(),
    );
    sample(
        &mut out,
        "etcd_debugging_mvcc_watch_stream_total",
        "Total number of watch streams.",
        "gauge",
        metrics.watch_streams(),
    );
    sample(
        &mut out,
        "etcd_debugging_mvcc_watcher_total",
        "Total number of watchers.",
        "gauge",
        metrics.watchers(),
    );
    sample(
        &mut out,
        "etcd_server_has_leader",
        "Whether or not a leader exists. 1 is existence, 0 is not.",
        "gauge",
        u8::from(metrics.has_leader()),
    );
    sample(
        &mut out,
        "etcd_server_is_leader",
        "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        "gauge",
        u8::from(metrics.is_leader()),
    );
    sample(
        &mut out,
        "etcd_server_is_learner",
        "Whether or not this member is a learner. 1 if is, 0 otherwise.",
        "gauge",
        u8::from(metrics.is_learner()),
    );
    sample(
        &mut out,
        "etcd_server_leader_changes_seen_total",
        "The number of leader changes seen.",
        "counter",
        metrics.leader_changes(),
    );
    sample(
        &mut out,
        "etcd_server_proposals_applied_total",
        "The total number of consensus proposals applied.",
        "gauge",
        metrics.proposals_applied(),
    );
    sample(
        &mut out,
        "etcd_server_proposals_committed_total",
        "The total number of consensus proposals committed.",
        "gauge",
        metrics.proposals_committed(),
    );
    sample(
        &mut out,
        "etcd_server_proposals_failed_total",
        "The total number of failed proposals seen.",
        "counter",
        metrics.proposals_failed(),
    );
    sample(
        &mut out,
        "etcd_server_proposals_pending",
        "The current number of pending proposals to commit.",
        "gauge",
        metrics.proposals_pending(),
    );
    sample(
        &mut out,
        "cairn_server_snapshots_total",
        "Snapshots taken or installed by this member.",
        "counter",
        metrics.snapshots(),
    );
    sample(
        &mut out,
        "cairn_network_peer_messages_dropped_total",
        "Peer messages dropped by the transport (queue full or peer down).",
        "counter",
        metrics.peer_messages_dropped(),
    );
    sample(
        &mut out,
        "cairn_disk_wal_size_bytes",
        "Bytes the write-ahead log and snapshots take on disk.",
        "gauge",
        metrics.wal_size_bytes(),
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

    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::*;

    #[test]
    fn histogram_renders_cumulative_buckets_sum_and_count() {
        let metrics = NodeMetrics::default();
        metrics.fsync_durations.observe(Duration::from_micros(500));
        metrics.fsync_durations.observe(Duration::from_millis(3));
        metrics.fsync_durations.observe(Duration::from_secs(10));
        let text = render_with_resident_memory(&metrics, None);
        let name = "etcd_disk_wal_fsync_duration_seconds";
        for expected in [
            format!("# TYPE {name} histogram\n"),
            format!("{name}_bucket{{le=\"0.001\"}} 1\n"),
            format!("{name}_bucket{{le=\"0.002\"}} 1\n"),
            format!("{name}_bucket{{le=\"0.004\"}} 2\n"),
            format!("{name}_bucket{{le=\"8.192\"}} 2\n"),
            format!("{name}_bucket{{le=\"+Inf\"}} 3\n"),
            format!("{name}_sum 10.0035\n"),
            format!("{name}_count 3\n"),
        ] {
            assert!(text.contains(&expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn counters_and_gauges_render_with_etcd_names_and_types() {
        let metrics = NodeMetrics::default();
        metrics.proposals_committed.store(12, Ordering::Relaxed);
        metrics.proposals_applied.store(11, Ordering::Relaxed);
        metrics.proposals_pending.store(1, Ordering::Relaxed);
        metrics.proposals_failed.store(1, Ordering::Relaxed);
        metrics.leader_changes.store(3, Ordering::Relaxed);
        metrics.has_leader.store(true, Ordering::Relaxed);
        metrics.db_size_bytes.store(4096, Ordering::Relaxed);
        let text = render_with_resident_memory(&metrics, Some(1 << 20));
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
