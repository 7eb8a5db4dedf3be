//! The v3lockpb.Lock service, etcd's server-side mutex: Lock creates the
//! ownership key `<name>/<lease hex>` (bound to the caller's lease) unless it
//! exists, then waits until every key under the name created before it is
//! deleted; Unlock deletes the key. The lease bounds the ownership: when the
//! client stops renewing it, the key and with it the lock go away.

use cairn_core::kv::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    ResponseOp, SortOrder, TxnRequest,
};
use tonic::{Request, Response, Status};
use tracing::debug;

use super::concurrency::{key_prefix, ownership_key, prefix_by_creation, wait_deletes};
use super::proto::v3lockpb as pb;
use super::wire;
use crate::node::NodeHandle;

/// v3lockpb.Lock over a node.
#[derive(Clone, Debug)]
pub struct LockService {
    node: NodeHandle,
}

impl LockService {
    /// A Lock service over `node`.
    pub fn new(node: NodeHandle) -> LockService {
        LockService { node }
    }
}

/// Deletes a key when dropped while armed: a Lock call the client abandons
/// while waiting gives its place in the queue up, as etcd's does.
pub struct DeleteOnDrop {
    node: NodeHandle,
    key: Vec<u8>,
    armed: bool,
}

impl DeleteOnDrop {
    /// Armed: dropping it deletes `key`.
    pub fn new(node: NodeHandle, key: Vec<u8>) -> DeleteOnDrop {
        DeleteOnDrop {
            node,
            key,
            armed: true,
        }
    }

    /// Keeps the key.
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let node = self.node.clone();
        let key = std::mem::take(&mut self.key);
        tokio::spawn(async move {
            let request = DeleteRangeRequest {
                key,
                ..Default::default()
            };
            if let Err(error) = node.delete_range(request).await {
                debug!(%error, "deleting an abandoned lock key failed; its lease will");
            }
        });
    }
}

/// The range a txn's response op answered, or an internal error naming the op.
fn range_kvs(op: Option<&ResponseOp>, what: &str) -> Result<Vec<cairn_core::kv::KeyValue>, Status> {
    match op {
        Some(ResponseOp::Range(range)) => Ok(range.kvs.clone()),
        other => Err(Status::internal(format!(
            "lock txn: expected a range for {what}, got {other:?}"
        ))),
    }
}

#[tonic::async_trait]
impl pb::lock_server::Lock for LockService {
    async fn lock(
        &self,
        request: Request<pb::LockRequest>,
    ) -> Result<Response<pb::LockResponse>, Status> {
        let request = request.into_inner();
        let prefix = key_prefix(&request.name);
        let key = ownership_key(&prefix, request.lease);
        let owner = RequestOp::Range(prefix_by_creation(&prefix, SortOrder::Ascend));
        let txn = TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal,
                target: CompareTarget::Create(0),
                key: key.clone(),
                range_end: Vec::new(),
            }],
            success: vec![
                RequestOp::Put(PutRequest {
                    key: key.clone(),
                    lease: request.lease,
                    ..Default::default()
                }),
                owner.clone(),
            ],
            failure: vec![
                RequestOp::Range(RangeRequest {
                    key: key.clone(),
                    ..Default::default()
                }),
                owner,
            ],
        };
        let (header, response) = self.node.txn(txn).await?;
        let mut guard = DeleteOnDrop::new(self.node.clone(), key.clone());
        let my_revision = if response.succeeded {
            header.revision
        } else {
            let mine = range_kvs(response.responses.first(), "the own key")?;
            let Some(mine) = mine.first() else {
                return Err(Status::internal(
                    "lock txn: own key vanished inside the txn",
                ));
            };
            mine.create_revision
        };
        let owner = range_kvs(response.responses.get(1), "the owner")?;
        let header = match owner.first() {
            Some(owner) if owner.create_revision != my_revision => {
                // Wait for every key queued before ours; on failure give the place up.
                wait_deletes(&self.node, &prefix, my_revision - 1).await?
            }
            _ => header,
        };
        guard.disarm();
        Ok(Response::new(pb::LockResponse {
            header: wire::some_header(header),
            key,
        }))
    }

    async fn unlock(
        &self,
        request: Request<pb::UnlockRequest>,
    ) -> Result<Response<pb::UnlockResponse>, Status> {
        let key = request.into_inner().key;
        let (header, _) = self
            .node
            .delete_range(DeleteRangeRequest {
                key,
                ..Default::default()
            })
            .await?;
        Ok(Response::new(pb::UnlockResponse {
            header: wire::some_header(header),
        }))
    }
}
