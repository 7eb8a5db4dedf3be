//! Guards etcd's own acceptance benchmark: `etcdctl check perf --load=s`
//! (50 clients putting 256 B keys with 1 KiB values for 60 s against all
//! three members) must report PASS for throughput, slowest request and
//! standard deviation. It runs a minute by design, so it is the only test
//! in this file.

use std::time::Duration;

use cairn_tests::Cluster;

/// The benchmark's own 60 s, plus its setup, compaction and cleanup.
const CHECK_PERF_TIMEOUT: Duration = Duration::from_secs(150);

#[test]
fn check_perf_small_load_passes_on_three_members() {
    let cluster = Cluster::start(3);
    let output = cluster
        .etcdctl()
        .run_for_at_most(&["check", "perf", "--load=s"], CHECK_PERF_TIMEOUT)
        .expect_success();
    let lines = output.stdout_lines();
    for criterion in [
        "PASS: Throughput is ",
        "PASS: Slowest request took ",
        "PASS: Stddev is ",
    ] {
        assert!(
            lines.iter().any(|line| line.starts_with(criterion)),
            "no {criterion:?}:\n{output}"
        );
    }
    assert_eq!(lines.last(), Some(&"PASS"), "overall verdict:\n{output}");
}
