//! etcd's "require leader" contract: a request whose gRPC metadata carries
//! `hasleader: true` (clientv3's `WithRequireLeader`, used by etcdctl for
//! watches and by the lease keep-alive stream) fails with
//! Unavailable "etcdserver: no leader" when the member knows no leader,
//! instead of waiting for one.

use tonic::metadata::MetadataMap;
use tonic::Status;

use super::backend::KvBackend;
use crate::node::NodeError;

/// The metadata key clientv3 sets to require a leader.
pub const REQUIRE_LEADER_KEY: &str = "hasleader";
/// The metadata value that turns the requirement on.
pub const REQUIRE_LEADER_VALUE: &str = "true";

/// Whether the request asks to fail fast without a leader.
pub fn requires_leader(metadata: &MetadataMap) -> bool {
    metadata
        .get(REQUIRE_LEADER_KEY)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value == REQUIRE_LEADER_VALUE)
}

/// Fails with etcd's "no leader" status when the request requires a leader
/// and the node has none.
pub async fn ensure_leader<B: KvBackend>(node: &B, metadata: &MetadataMap) -> Result<(), Status> {
    if !requires_leader(metadata) {
        return Ok(());
    }
    if !node.has_leader().await? {
        return Err(NodeError::NoLeader.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Guards the metadata contract clientv3 relies on.

    use super::*;

    #[test]
    fn only_hasleader_true_requires_a_leader() {
        let mut metadata = MetadataMap::new();
        assert!(!requires_leader(&metadata));
        metadata.insert(REQUIRE_LEADER_KEY, "false".parse().expect("ascii"));
        assert!(!requires_leader(&metadata));
        metadata.insert(REQUIRE_LEADER_KEY, "true".parse().expect("ascii"));
        assert!(requires_leader(&metadata));
    }
}
