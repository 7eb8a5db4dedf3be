//! Per-request latencies in an HDR histogram of microseconds: constant
//! memory whatever `--total` is, three significant digits, and mergeable, so
//! each client keeps its own and the run merges them at the end.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Smallest recorded latency, in microseconds.
pub const LATENCY_MICROS_MIN: u64 = 1;
/// Largest latency tracked exactly, in microseconds (ten minutes, beyond
/// any request deadline); longer samples are clamped to it.
pub const LATENCY_MICROS_MAX: u64 = 600_000_000;
/// Significant decimal digits kept.
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

/// A histogram of latencies.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    histogram: Histogram<u64>,
}

/// The latency summary printed and serialized, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Mean.
    pub average_ms: f64,
    /// Standard deviation.
    pub stddev_ms: f64,
    /// Fastest.
    pub min_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// Microseconds to milliseconds.
fn to_ms(micros: u64) -> f64 {
    micros as f64 / 1_000.0
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> LatencyHistogram {
        let histogram = Histogram::new_with_bounds(
            LATENCY_MICROS_MIN,
            LATENCY_MICROS_MAX,
            LATENCY_SIGNIFICANT_DIGITS,
        )
        .expect("constant histogram bounds are valid");
        LatencyHistogram { histogram }
    }

    /// Records one latency (clamped to the tracked range).
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let clamped = micros.clamp(LATENCY_MICROS_MIN, LATENCY_MICROS_MAX);
        self.histogram
            .record(clamped)
            .expect("a clamped latency is within the histogram's bounds");
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms with equal bounds merge");
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The latency at `quantile` (0.0–1.0), in milliseconds.
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        to_ms(self.histogram.value_at_quantile(quantile))
    }

    /// The summary; all zero when empty.
    pub fn summary(&self) -> LatencySummary {
        if self.histogram.is_empty() {
            return LatencySummary {
                count: 0,
                average_ms: 0.0,
                stddev_ms: 0.0,
                min_ms: 0.0,
                p50_ms: 0.0,
                p90_ms: 0.0,
                p99_ms: 0.0,
                p999_ms: 0.0,
                max_ms: 0.0,
            };
        }
        LatencySummary {
            count: self.histogram.len(),
            average_ms: self.histogram.mean() / 1_000.0,
            stddev_ms: self.histogram.stdev() / 1_000.0,
            min_ms: to_ms(self.histogram.min()),
            p50_ms: self.quantile_ms(0.50),
            p90_ms: self.quantile_ms(0.90),
            p99_ms: self.quantile_ms(0.99),
            p999_ms: self.quantile_ms(0.999),
            max_ms: to_ms(self.histogram.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Guards the summary against unit mistakes (µs vs ms) and lost samples
    //! when client histograms are merged.
    use super::*;

    #[test]
    fn summary_of_one_to_a_thousand_ms() {
        let mut first = LatencyHistogram::new();
        let mut second = LatencyHistogram::new();
        for millis in 1..=1_000u64 {
            let target = if millis % 2 == 0 {
                &mut first
            } else {
                &mut second
            };
            target.record(Duration::from_millis(millis));
        }
        first.merge(&second);
        let summary = first.summary();
        assert_eq!(summary.count, 1_000);
        let close = |actual: f64, expected: f64| (actual - expected).abs() <= expected * 0.002;
        assert!(close(summary.min_ms, 1.0), "{summary:?}");
        assert!(close(summary.p50_ms, 500.0), "{summary:?}");
        assert!(close(summary.p90_ms, 900.0), "{summary:?}");
        assert!(close(summary.p99_ms, 990.0), "{summary:?}");
        assert!(close(summary.p999_ms, 999.0), "{summary:?}");
        assert!(close(summary.max_ms, 1_000.0), "{summary:?}");
        assert!(close(summary.average_ms, 500.5), "{summary:?}");
    }

    #[test]
    fn empty_and_out_of_range_samples() {
        let mut histogram = LatencyHistogram::new();
        assert_eq!(histogram.summary().count, 0);
        histogram.record(Duration::ZERO);
        histogram.record(Duration::from_secs(10_000));
        let summary = histogram.summary();
        assert_eq!(summary.count, 2);
        assert!(summary.min_ms <= 0.001 + f64::EPSILON, "{summary:?}");
        assert!(summary.max_ms >= 599_000.0, "{summary:?}");
    }
}
