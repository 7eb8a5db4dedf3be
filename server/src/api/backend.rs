//! [`KvBackend`] and [`KvWatch`]: the seam between the KV, Watch and Lease
//! services, the Lock and Election recipes, and the node. [`NodeHandle`] is the production backend; tests run the same
//! services over an in-memory model of the KV store.

use std::future::Future;

use cairn_core::kv::{
    CompactionRequest, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantResponse, LeaseId,
    LeaseTimeToLiveResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, TxnRequest,
    TxnResponse, WatchCreateRequest, WatchResponse,
};

use crate::node::{NodeError, NodeHandle, ResponseHeader, WatchSession};

/// The part of a node the KV, Watch and Lease services and the recipes use:
/// reads, writes, transactions, compaction, watches, leases, and whether a
/// leader is known.
pub trait KvBackend: Clone + Send + Sync + 'static {
    /// A watch stream of this backend.
    type Watch: KvWatch;
    /// The header for answers that did not read or write.
    fn header(&self) -> ResponseHeader;
    /// A Range.
    fn range(
        &self,
        request: RangeRequest,
    ) -> impl Future<Output = Result<(ResponseHeader, RangeResponse), NodeError>> + Send;
    /// A Put.
    fn put(
        &self,
        request: PutRequest,
    ) -> impl Future<Output = Result<(ResponseHeader, PutResponse), NodeError>> + Send;
    /// A DeleteRange.
    fn delete_range(
        &self,
        request: DeleteRangeRequest,
    ) -> impl Future<Output = Result<(ResponseHeader, DeleteRangeResponse), NodeError>> + Send;
    /// A Txn.
    fn txn(
        &self,
        request: TxnRequest,
    ) -> impl Future<Output = Result<(ResponseHeader, TxnResponse), NodeError>> + Send;
    /// A Compact.
    fn compact(
        &self,
        request: CompactionRequest,
    ) -> impl Future<Output = Result<ResponseHeader, NodeError>> + Send;
    /// A new watch stream.
    fn watch_session(&self) -> impl Future<Output = Result<Self::Watch, NodeError>> + Send;
    /// Whether the node knows a leader.
    fn has_leader(&self) -> impl Future<Output = Result<bool, NodeError>> + Send;
    /// Grants a lease (`id` 0: the node picks one).
    fn lease_grant(
        &self,
        ttl: i64,
        id: LeaseId,
    ) -> impl Future<Output = Result<(ResponseHeader, LeaseGrantResponse), NodeError>> + Send;
    /// Revokes a lease and deletes its keys.
    fn lease_revoke(
        &self,
        id: LeaseId,
    ) -> impl Future<Output = Result<ResponseHeader, NodeError>> + Send;
    /// Renews a lease; its TTL in seconds (0 or LeaseNotFound when it does not exist).
    fn lease_keep_alive(
        &self,
        id: LeaseId,
    ) -> impl Future<Output = Result<(ResponseHeader, i64), NodeError>> + Send;
    /// A lease's remaining and granted TTL, and its keys when asked.
    fn lease_time_to_live(
        &self,
        id: LeaseId,
        keys: bool,
    ) -> impl Future<Output = Result<(ResponseHeader, LeaseTimeToLiveResponse), NodeError>> + Send;
    /// Every lease.
    fn lease_leases(
        &self,
    ) -> impl Future<Output = Result<(ResponseHeader, Vec<LeaseId>), NodeError>> + Send;
}

/// The part of a watch stream the recipes use.
pub trait KvWatch: Send + 'static {
    /// Creates a watch on this stream.
    fn create(
        &mut self,
        request: WatchCreateRequest,
    ) -> impl Future<Output = Result<(), NodeError>> + Send;
    /// Cancels a watch of this stream.
    fn cancel(&mut self, watch_id: i64) -> impl Future<Output = Result<(), NodeError>> + Send;
    /// Asks for a progress notification (watch_id -1).
    fn progress(&mut self) -> impl Future<Output = Result<(), NodeError>> + Send;
    /// The next response; None when the node stopped. Must be cancel-safe:
    /// the watch service drops it whenever a client request arrives first.
    fn next(&mut self) -> impl Future<Output = Option<WatchResponse>> + Send;
}

impl KvBackend for NodeHandle {
    type Watch = WatchSession;
    fn header(&self) -> ResponseHeader {
        NodeHandle::header(self)
    }
    fn range(
        &self,
        request: RangeRequest,
    ) -> impl Future<Output = Result<(ResponseHeader, RangeResponse), NodeError>> + Send {
        NodeHandle::range(self, request)
    }
    fn put(
        &self,
        request: PutRequest,
    ) -> impl Future<Output = Result<(ResponseHeader, PutResponse), NodeError>> + Send {
        NodeHandle::put(self, request)
    }
    fn delete_range(
        &self,
        request: DeleteRangeRequest,
    ) -> impl Future<Output = Result<(ResponseHeader, DeleteRangeResponse), NodeError>> + Send {
        NodeHandle::delete_range(self, request)
    }
    fn compact(
        &self,
        request: CompactionRequest,
    ) -> impl Future<Output = Result<ResponseHeader, NodeError>> + Send {
        NodeHandle::compact(self, request)
    }
    fn txn(
        &self,
        request: TxnRequest,
    ) -> impl Future<Output = Result<(ResponseHeader, TxnResponse), NodeError>> + Send {
        NodeHandle::txn(self, request)
    }
    fn watch_session(&self) -> impl Future<Output = Result<WatchSession, NodeError>> + Send {
        NodeHandle::watch_session(self)
    }
    async fn has_leader(&self) -> Result<bool, NodeError> {
        Ok(NodeHandle::status(self).await?.leader != 0)
    }
    fn lease_grant(
        &self,
        ttl: i64,
        id: LeaseId,
    ) -> impl Future<Output = Result<(ResponseHeader, LeaseGrantResponse), NodeError>> + Send {
        NodeHandle::lease_grant(self, ttl, id)
    }
    fn lease_revoke(
        &self,
        id: LeaseId,
    ) -> impl Future<Output = Result<ResponseHeader, NodeError>> + Send {
        NodeHandle::lease_revoke(self, id)
    }
    fn lease_keep_alive(
        &self,
        id: LeaseId,
    ) -> impl Future<Output = Result<(ResponseHeader, i64), NodeError>> + Send {
        NodeHandle::lease_keep_alive(self, id)
    }
    fn lease_time_to_live(
        &self,
        id: LeaseId,
        keys: bool,
    ) -> impl Future<Output = Result<(ResponseHeader, LeaseTimeToLiveResponse), NodeError>> + Send
    {
        NodeHandle::lease_time_to_live(self, id, keys)
    }
    fn lease_leases(
        &self,
    ) -> impl Future<Output = Result<(ResponseHeader, Vec<LeaseId>), NodeError>> + Send {
        NodeHandle::lease_leases(self)
    }
}

impl KvWatch for WatchSession {
    fn create(
        &mut self,
        request: WatchCreateRequest,
    ) -> impl Future<Output = Result<(), NodeError>> + Send {
        WatchSession::create(self, request)
    }
    fn cancel(&mut self, watch_id: i64) -> impl Future<Output = Result<(), NodeError>> + Send {
        WatchSession::cancel(self, watch_id)
    }
    fn progress(&mut self) -> impl Future<Output = Result<(), NodeError>> + Send {
        WatchSession::progress(self)
    }
    fn next(&mut self) -> impl Future<Output = Option<WatchResponse>> + Send {
        WatchSession::next(self)
    }
}
