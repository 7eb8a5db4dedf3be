//! The result of one run: throughput, the latency summary and errors by
//! gRPC code, printed like etcd's benchmark ("Summary:", "Latency
//! distribution:") or as one JSON line for the orchestrator.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::latency::{LatencyHistogram, LatencySummary};

/// Failed requests counted by gRPC code name (`Unavailable`, ...).
pub type ErrorCounts = BTreeMap<String, u64>;

/// The outcome of one workload.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Workload name (`put`, `range`, `txn-put`, `watch`, ...).
    pub workload: String,
    /// Endpoints the run used.
    pub endpoints: Vec<String>,
    /// Connections.
    pub conns: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Requests asked for.
    pub total_requested: u64,
    /// Requests that succeeded.
    pub successes: u64,
    /// Requests that failed.
    pub error_count: u64,
    /// Failed requests by gRPC code.
    pub errors: ErrorCounts,
    /// Wall time from the first request sent to the last answer.
    pub duration_secs: f64,
    /// Successful requests per second of wall time.
    pub requests_per_sec: f64,
    /// Latencies of the successful requests.
    pub latency: LatencySummary,
    /// Workload-specific numbers (watch fan-out, failover timings).
    pub extra: BTreeMap<String, f64>,
}

/// What a workload measured, before it is turned into a [`Report`].
#[derive(Debug, Clone, Default)]
pub struct Measurement {
    /// Latencies of successes.
    pub latencies: LatencyHistogram,
    /// Failures by gRPC code.
    pub errors: ErrorCounts,
}

impl Measurement {
    /// Counts one failure.
    pub fn record_error(&mut self, code: tonic::Code) {
        *self.errors.entry(format!("{code:?}")).or_insert(0) += 1;
    }

    /// Adds `other`'s samples and errors.
    pub fn merge(&mut self, other: &Measurement) {
        self.latencies.merge(&other.latencies);
        for (code, count) in &other.errors {
            *self.errors.entry(code.clone()).or_insert(0) += count;
        }
    }

    /// Total failures.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The run's identity: what was asked for.
#[derive(Debug, Clone)]
pub struct RunShape {
    /// Workload name.
    pub workload: String,
    /// Endpoints.
    pub endpoints: Vec<String>,
    /// Connections.
    pub conns: usize,
    /// Clients.
    pub clients: usize,
    /// Requests asked for.
    pub total_requested: u64,
}

impl Report {
    /// Builds the report of a run of `shape` that measured `measurement`
    /// over `elapsed`.
    pub fn new(shape: RunShape, measurement: &Measurement, elapsed: Duration) -> Report {
        let successes = measurement.latencies.count();
        let duration_secs = elapsed.as_secs_f64();
        let requests_per_sec = if duration_secs > 0.0 {
            successes as f64 / duration_secs
        } else {
            0.0
        };
        Report {
            workload: shape.workload,
            endpoints: shape.endpoints,
            conns: shape.conns,
            clients: shape.clients,
            total_requested: shape.total_requested,
            successes,
            error_count: measurement.error_count(),
            errors: measurement.errors.clone(),
            duration_secs,
            requests_per_sec,
            latency: measurement.latencies.summary(),
            extra: BTreeMap::new(),
        }
    }

    /// One JSON line.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a report of numbers and strings serializes")
    }

    /// etcd benchmark's text layout, latencies in seconds.
    pub fn to_text(&self) -> String {
        let seconds = |millis: f64| millis / 1_000.0;
        let latency = &self.latency;
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{}: {} clients over {} connections, {} requests",
            self.workload, self.clients, self.conns, self.total_requested
        );
        let _ = writeln!(text, "\nSummary:");
        let _ = writeln!(text, "  Total:\t{:.4} secs.", self.duration_secs);
        let _ = writeln!(text, "  Slowest:\t{:.4} secs.", seconds(latency.max_ms));
        let _ = writeln!(text, "  Fastest:\t{:.4} secs.", seconds(latency.min_ms));
        let _ = writeln!(text, "  Average:\t{:.4} secs.", seconds(latency.average_ms));
        let _ = writeln!(text, "  Stddev:\t{:.4} secs.", seconds(latency.stddev_ms));
        let _ = writeln!(text, "  Requests/sec:\t{:.4}", self.requests_per_sec);
        let _ = writeln!(text, "\nLatency distribution:");
        for (label, millis) in [
            ("50%", latency.p50_ms),
            ("90%", latency.p90_ms),
            ("99%", latency.p99_ms),
            ("99.9%", latency.p999_ms),
        ] {
            let _ = writeln!(text, "  {label} in {:.4} secs.", seconds(millis));
        }
        let _ = writeln!(
            text,
            "\nSuccesses: {}  Errors: {}",
            self.successes, self.error_count
        );
        for (code, count) in &self.errors {
            let _ = writeln!(text, "  {code}: {count}");
        }
        for (name, value) in &self.extra {
            let _ = writeln!(text, "  {name}: {value:.3}");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    //! Guards the report's arithmetic (rate from successes only) and that
    //! the JSON line carries what the orchestrator reads.
    use super::*;

    #[test]
    fn rate_counts_successes_and_json_has_the_fields() {
        let mut measurement = Measurement::default();
        for _ in 0..300 {
            measurement.latencies.record(Duration::from_millis(2));
        }
        measurement.record_error(tonic::Code::Unavailable);
        measurement.record_error(tonic::Code::Unavailable);
        measurement.record_error(tonic::Code::DeadlineExceeded);
        let shape = RunShape {
            workload: "put".to_string(),
            endpoints: vec!["127.0.0.1:2379".to_string()],
            conns: 1,
            clients: 4,
            total_requested: 303,
        };
        let report = Report::new(shape, &measurement, Duration::from_secs(3));
        assert_eq!(report.successes, 300);
        assert_eq!(report.error_count, 3);
        assert!((report.requests_per_sec - 100.0).abs() < 1e-9);
        let parsed: serde_json::Value =
            serde_json::from_str(&report.to_json_line()).expect("valid JSON");
        assert_eq!(parsed["errors"]["Unavailable"], 2);
        assert_eq!(parsed["latency"]["count"], 300);
        assert!(!report.to_json_line().contains('\n'));
        let text = report.to_text();
        assert!(text.contains("Requests/sec:\t100.0000"), "{text}");
        assert!(text.contains("DeadlineExceeded: 1"), "{text}");
    }
}
