//! [`SnapshotData`]: what a Raft snapshot of a Cairn member holds — the KV
//! state and the member table, which together are the whole replicated
//! state machine — and [`NodeMetadata`], the small identity record kept
//! beside the log.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::member::MemberTable;

/// The application state at a snapshot's index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotData {
    /// `KvStore::snapshot()`.
    pub kv: Vec<u8>,
    /// The member table as of the snapshot.
    pub members: MemberTable,
    /// Members removed so far, whose connections stay refused.
    pub removed_members: BTreeSet<u64>,
}

impl SnapshotData {
    /// The bytes a Raft snapshot carries.
    pub fn encode(&self) -> Vec<u8> {
        match bincode::serialize(self) {
            Ok(bytes) => bytes,
            Err(error) => panic!("snapshot data does not encode: {error}"),
        }
    }

    /// Reads a Raft snapshot's bytes.
    pub fn decode(bytes: &[u8]) -> Result<SnapshotData, bincode::Error> {
        bincode::deserialize(bytes)
    }
}

/// Who this data dir belongs to, and how many times it has started (so
/// request IDs of one run never collide with those of an earlier run still
/// in the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMetadata {
    /// The member the data dir belongs to.
    pub member_id: u64,
    /// The cluster it belongs to.
    pub cluster_id: u64,
    /// Starts so far, this one included.
    pub boots: u64,
}

impl NodeMetadata {
    /// The metadata blob's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match bincode::serialize(self) {
            Ok(bytes) => bytes,
            Err(error) => panic!("node metadata does not encode: {error}"),
        }
    }

    /// Reads a metadata blob.
    pub fn decode(bytes: &[u8]) -> Result<NodeMetadata, bincode::Error> {
        bincode::deserialize(bytes)
    }
}
