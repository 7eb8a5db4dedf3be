//! [`NodeHandle`]: how the client API (gRPC services, the simulator's
//! clients) talks to a running node. Cheap to clone; every method is a
//! message to the node's driver loop and an await on its answer.
//!
//! NB: interface skeleton; the driver lands with the server issue.

use cairn_core::kv::{
    CompactionRequest, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantResponse, LeaseId,
    LeaseTimeToLiveResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, Revision,
    TxnRequest, TxnResponse, WatchCreateRequest, WatchResponse,
};

use super::error::NodeError;

/// etcdserverpb.ResponseHeader.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseHeader {
    /// The cluster's ID.
    pub cluster_id: u64,
    /// The answering member's ID.
    pub member_id: u64,
    /// The KV revision the answer reflects.
    pub revision: Revision,
    /// The answering member's Raft term.
    pub raft_term: u64,
}

/// etcdserverpb.Member.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// The member ID.
    pub id: u64,
    /// Its name; empty until it has started.
    pub name: String,
    /// Its peer URLs.
    pub peer_urls: Vec<String>,
    /// Its client URLs; empty until it has started.
    pub client_urls: Vec<String>,
    /// Whether it is a learner.
    pub is_learner: bool,
}

/// Maintenance.Status's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusInfo {
    /// The header.
    pub header: ResponseHeader,
    /// The server version string (etcd's, for client compatibility).
    pub version: String,
    /// Bytes the state takes (snapshot size estimate).
    pub db_size: i64,
    /// Bytes in use.
    pub db_size_in_use: i64,
    /// The leader's member ID, 0 if none.
    pub leader: u64,
    /// The last Raft index.
    pub raft_index: u64,
    /// The Raft term.
    pub raft_term: u64,
    /// The applied Raft index.
    pub raft_applied_index: u64,
    /// Alarm or health messages.
    pub errors: Vec<String>,
    /// Whether this member is a learner.
    pub is_learner: bool,
}

/// A handle to a running node.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    _private: (),
}

/// One client watch stream: create and cancel watches on it, receive their responses.
#[derive(Debug)]
pub struct WatchSession {
    _private: (),
}

#[allow(unused_variables, clippy::todo, missing_docs)]
impl NodeHandle {
    pub fn header(&self) -> ResponseHeader {
        todo!()
    }
    pub async fn range(
        &self,
        request: RangeRequest,
    ) -> Result<(ResponseHeader, RangeResponse), NodeError> {
        todo!()
    }
    pub async fn put(
        &self,
        request: PutRequest,
    ) -> Result<(ResponseHeader, PutResponse), NodeError> {
        todo!()
    }
    pub async fn delete_range(
        &self,
        request: DeleteRangeRequest,
    ) -> Result<(ResponseHeader, DeleteRangeResponse), NodeError> {
        todo!()
    }
    pub async fn txn(
        &self,
        request: TxnRequest,
    ) -> Result<(ResponseHeader, TxnResponse), NodeError> {
        todo!()
    }
    pub async fn compact(&self, request: CompactionRequest) -> Result<ResponseHeader, NodeError> {
        todo!()
    }
    pub async fn lease_grant(
        &self,
        ttl: i64,
        id: LeaseId,
    ) -> Result<(ResponseHeader, LeaseGrantResponse), NodeError> {
        todo!()
    }
    pub async fn lease_revoke(&self, id: LeaseId) -> Result<ResponseHeader, NodeError> {
        todo!()
    }
    /// Renews a lease; returns its TTL in seconds, 0 when it does not exist.
    pub async fn lease_keep_alive(&self, id: LeaseId) -> Result<(ResponseHeader, i64), NodeError> {
        todo!()
    }
    pub async fn lease_time_to_live(
        &self,
        id: LeaseId,
        keys: bool,
    ) -> Result<(ResponseHeader, LeaseTimeToLiveResponse), NodeError> {
        todo!()
    }
    pub async fn lease_leases(&self) -> Result<(ResponseHeader, Vec<LeaseId>), NodeError> {
        todo!()
    }
    pub async fn watch_session(&self) -> Result<WatchSession, NodeError> {
        todo!()
    }
    pub async fn member_list(&self) -> Result<(ResponseHeader, Vec<Member>), NodeError> {
        todo!()
    }
    pub async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(ResponseHeader, Member, Vec<Member>), NodeError> {
        todo!()
    }
    pub async fn member_remove(&self, id: u64) -> Result<(ResponseHeader, Vec<Member>), NodeError> {
        todo!()
    }
    pub async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<(ResponseHeader, Vec<Member>), NodeError> {
        todo!()
    }
    pub async fn member_promote(
        &self,
        id: u64,
    ) -> Result<(ResponseHeader, Vec<Member>), NodeError> {
        todo!()
    }
    pub async fn status(&self) -> Result<StatusInfo, NodeError> {
        todo!()
    }
    /// HashKV: hash of the KV state up to `revision` (0 = current), and the compact revision.
    pub async fn hash_kv(
        &self,
        revision: Revision,
    ) -> Result<(ResponseHeader, u32, Revision), NodeError> {
        todo!()
    }
    /// A consistent snapshot of the whole state, as bytes to stream to the client.
    pub async fn snapshot(&self) -> Result<(ResponseHeader, Vec<u8>), NodeError> {
        todo!()
    }
    pub async fn move_leader(&self, target: u64) -> Result<ResponseHeader, NodeError> {
        todo!()
    }
}

#[allow(unused_variables, clippy::todo, missing_docs)]
impl WatchSession {
    /// Creates a watch; its `created` response (and later events) arrive via `next`.
    pub async fn create(&mut self, request: WatchCreateRequest) -> Result<(), NodeError> {
        todo!()
    }
    pub async fn cancel(&mut self, watch_id: i64) -> Result<(), NodeError> {
        todo!()
    }
    /// Asks for a progress notification (answered with watch_id -1).
    pub async fn progress(&mut self) -> Result<(), NodeError> {
        todo!()
    }
    /// The next response for any watch of this session; None when the node stopped.
    pub async fn next(&mut self) -> Option<WatchResponse> {
        todo!()
    }
}
