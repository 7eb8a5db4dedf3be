//! Guards the request size limit: a 2 MB value (2,000,000 bytes, under the
//! client's 2 MiB send limit but over the server's 1.5 MiB
//! max-request-bytes) is refused by the server with etcd's exact
//! "etcdserver: request is too large", and nothing is written, while a
//! 1 MiB value is accepted intact. Values travel on stdin: argv cannot hold
//! them.

use cairn_tests::Cluster;

/// 2 MB, decimal: over the server limit, under etcdctl's 2 MiB send limit
/// (a 2 MiB value is refused by the client itself, never reaching the
/// server).
const TOO_LARGE_BYTES: usize = 2_000_000;
/// 1 MiB: comfortably under the 1.5 MiB server limit.
const ACCEPTED_BYTES: usize = 1 << 20;

#[test]
fn a_two_megabyte_value_is_rejected() {
    let cluster = Cluster::start(1);
    let etcdctl = cluster.etcdctl();
    let before = etcdctl.get(&["big"]).revision;

    let value = vec![b'x'; TOO_LARGE_BYTES];
    etcdctl
        .run_with_stdin(&["put", "big"], &value)
        .expect_failure()
        .expect_stderr_contains("Error: etcdserver: request is too large");
    assert_eq!(etcdctl.value("big"), None, "a refused put writes nothing");
    assert_eq!(
        etcdctl.get(&["big"]).revision,
        before,
        "a refused put is no revision"
    );

    let value = vec![b'y'; ACCEPTED_BYTES];
    etcdctl
        .run_with_stdin(&["put", "big"], &value)
        .expect_success();
    let stored = etcdctl.value("big").expect("the 1 MiB value is stored");
    assert_eq!(stored.len(), ACCEPTED_BYTES);
    assert!(stored.bytes().all(|byte| byte == b'y'));
}
