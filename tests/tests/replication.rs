//! Guards replication in a three-member cluster: a write accepted by any
//! member (leader or follower, put or txn) is readable from every member,
//! linearizably at once and serializably (local read) once applied, with
//! the same revision metadata everywhere.

use std::time::Duration;

use cairn_tests::{wait_until, Cluster};

/// Bound on a follower applying a committed write.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn writes_on_any_member_are_readable_on_all() {
    let cluster = Cluster::start(3);
    for writer in 0..cluster.size() {
        cluster
            .etcdctl_for(writer)
            .put(&format!("written-by/{writer}"), &format!("value-{writer}"));
    }
    cluster
        .etcdctl_for(1)
        .run_with_stdin(
            &["txn"],
            b"create(\"via-txn\") = \"0\"\n\nput via-txn from-follower\n\n\n",
        )
        .expect_success();

    let reference = cluster.etcdctl_for(0).get(&["", "--prefix"]);
    assert_eq!(reference.kvs.len(), 4, "{reference:?}");
    for reader in 0..cluster.size() {
        let etcdctl = cluster.etcdctl_for(reader);
        let linearizable = etcdctl.get(&["", "--prefix"]);
        assert_eq!(
            linearizable.kvs, reference.kvs,
            "linearizable read on member {reader}"
        );
        assert!(linearizable.revision >= reference.revision);
        let serializable = wait_until(
            &format!("member {reader} applies every write"),
            APPLY_TIMEOUT,
            || {
                let reply = etcdctl.get(&["", "--prefix", "--consistency=s"]);
                (reply.kvs == reference.kvs).then_some(reply)
            },
        );
        assert_eq!(
            serializable.revision, reference.revision,
            "member {reader}'s revision"
        );
    }
    let values: Vec<String> = reference.kvs.iter().map(|kv| kv.value.clone()).collect();
    assert_eq!(values, ["from-follower", "value-0", "value-1", "value-2"]);
}
