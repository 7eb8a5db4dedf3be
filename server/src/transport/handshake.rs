//! [`Handshake`]: the first frame on every peer connection. It names the
//! cluster and both ends, so a member of another cluster (a reused address,
//! a mistyped `--initial-cluster`) or a connection meant for another member
//! is refused before a single Raft message is read.

use cairn_core::raft::NodeId;
use serde::{Deserialize, Serialize};

/// Identifies Cairn's peer protocol ("CAIR").
pub const HANDSHAKE_MAGIC: u32 = 0x4341_4952;

/// The version of the peer protocol; both ends must speak the same one.
pub const PROTOCOL_VERSION: u32 = 1;

/// Sent by the connecting member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handshake {
    /// [`HANDSHAKE_MAGIC`].
    pub magic: u32,
    /// [`PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// The cluster ID (derived from the cluster token).
    pub cluster_id: u64,
    /// The connecting member.
    pub from: NodeId,
    /// The member it means to reach.
    pub to: NodeId,
}

/// The accepting member's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandshakeReply {
    /// Frames may follow.
    Accepted,
    /// The connection will be closed; the reason is for the sender's log.
    Refused {
        /// Why, with the values that did not match.
        reason: String,
    },
    /// The sender was removed from the cluster and must stop (etcd answers
    /// a removed member's messages the same way).
    Removed,
}

impl Handshake {
    /// The handshake `from` sends to reach `to` in `cluster_id`.
    pub fn new(cluster_id: u64, from: NodeId, to: NodeId) -> Handshake {
        Handshake {
            magic: HANDSHAKE_MAGIC,
            protocol_version: PROTOCOL_VERSION,
            cluster_id,
            from,
            to,
        }
    }

    /// Checks the handshake against the accepting member; the error is the
    /// refusal reason.
    pub fn check(&self, cluster_id: u64, local: NodeId) -> Result<(), String> {
        if self.magic != HANDSHAKE_MAGIC {
            return Err(format!(
                "bad magic {:#x}, expected {HANDSHAKE_MAGIC:#x}",
                self.magic
            ));
        }
        if self.protocol_version != PROTOCOL_VERSION {
            return Err(format!(
                "protocol version {} is not {PROTOCOL_VERSION}",
                self.protocol_version
            ));
        }
        if self.cluster_id != cluster_id {
            return Err(format!(
                "member {} belongs to cluster {:x}, this member to cluster {cluster_id:x}",
                self.from, self.cluster_id
            ));
        }
        if self.to != local {
            return Err(format!(
                "member {} addressed member {}, but this is member {local}",
                self.from, self.to
            ));
        }
        if self.from == local {
            return Err(format!("member {} connected to itself", self.from));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matching_handshake_is_accepted() {
        assert_eq!(
            Handshake::new(9, NodeId(1), NodeId(2)).check(9, NodeId(2)),
            Ok(())
        );
    }

    #[test]
    fn another_cluster_or_member_is_refused() {
        let reason = Handshake::new(8, NodeId(1), NodeId(2))
            .check(9, NodeId(2))
            .unwrap_err();
        assert!(reason.contains("cluster 8"), "{reason}");
        let reason = Handshake::new(9, NodeId(1), NodeId(3))
            .check(9, NodeId(2))
            .unwrap_err();
        assert!(reason.contains("addressed member 3"), "{reason}");
        let mut handshake = Handshake::new(9, NodeId(1), NodeId(2));
        handshake.protocol_version = 99;
        assert!(handshake.check(9, NodeId(2)).is_err());
    }
}
