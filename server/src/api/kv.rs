//! The etcdserverpb.KV service: Range, Put, DeleteRange, Txn and Compact,
//! each a conversion to the core request, a call on the node, and the
//! conversion back with the node's header.

use prost::Message;
use tonic::{Request, Response, Status};

use super::backend::KvBackend;
use super::leader::ensure_leader;
use super::limits::RequestLimits;
use super::proto::etcdserverpb as pb;
use super::wire;
use crate::node::NodeHandle;

/// etcdserverpb.KV over a node.
#[derive(Clone, Debug)]
pub struct KvService<B = NodeHandle> {
    node: B,
    limits: RequestLimits,
}

impl<B: KvBackend> KvService<B> {
    /// A KV service answering from `node` within `limits`.
    pub fn new(node: B, limits: RequestLimits) -> KvService<B> {
        KvService { node, limits }
    }
}

#[tonic::async_trait]
impl<B: KvBackend> pb::kv_server::Kv for KvService<B> {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        let request = wire::range_request_from_wire(request.into_inner());
        let (header, response) = self.node.range(request).await?;
        Ok(Response::new(wire::range_response_to_wire(
            wire::some_header(header),
            response,
        )))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        let request = request.into_inner();
        self.limits.check_request_size(request.encoded_len())?;
        let request = wire::put_request_from_wire(request);
        let (header, response) = self.node.put(request).await?;
        Ok(Response::new(wire::put_response_to_wire(
            wire::some_header(header),
            response,
        )))
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        let request = request.into_inner();
        self.limits.check_request_size(request.encoded_len())?;
        let request = wire::delete_range_request_from_wire(request);
        let (header, response) = self.node.delete_range(request).await?;
        Ok(Response::new(wire::delete_range_response_to_wire(
            wire::some_header(header),
            response,
        )))
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        let request = request.into_inner();
        self.limits.check_txn(&request)?;
        self.limits.check_request_size(request.encoded_len())?;
        let request = wire::txn_request_from_wire(request);
        let (header, response) = self.node.txn(request).await?;
        Ok(Response::new(wire::txn_response_to_wire(
            wire::some_header(header),
            response,
        )))
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        let request = wire::compaction_request_from_wire(request.into_inner());
        let header = self.node.compact(request).await?;
        Ok(Response::new(pb::CompactionResponse {
            header: wire::some_header(header),
        }))
    }
}
