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

use super::concurrency::{key_prefix, ownership_key, prefix_by_creation, wait_deletes, KvBackend};
use super::proto::v3lockpb as pb;
use super::wire;
use crate::node::NodeHandle;

/// v3lockpb.Lock over a node.
#[derive(Clone, Debug)]
pub struct LockService<B = NodeHandle> {
    node: B,
}

impl<B: KvBackend> LockService<B> {
    /// A Lock service over `node`.
    pub fn new(node: B) -> LockService<B> {
        LockService { node }
    }
}

/// Deletes a key when dropped while armed: a Lock call the client abandons
/// while waiting gives its place in the queue up, as etcd's does.
pub struct DeleteOnDrop<B: KvBackend> {
    node: B,
    key: Vec<u8>,
    armed: bool,
}

impl<B: KvBackend> DeleteOnDrop<B> {
    /// Armed: dropping it deletes `key`.
    pub fn new(node: B, key: Vec<u8>) -> DeleteOnDrop<B> {
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

impl<B: KvBackend> Drop for DeleteOnDrop<B> {
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
impl<B: KvBackend> pb::lock_server::Lock for LockService<B> {
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

#[cfg(test)]
mod tests {
    //! Guards the mutex recipe: one holder at a time in create order, the
    //! waiter wakes on the holder's deletion, and an abandoned wait gives up
    //! its place.

    use std::time::Duration;

    use super::*;
    use crate::api::model::ModelKv;
    use crate::api::proto::v3lockpb::lock_server::Lock;

    /// Bound on every wait in these tests.
    const TEST_TIMEOUT: Duration = Duration::from_secs(10);
    /// Scheduler turns given to a task that must stay blocked.
    const BLOCKED_TURNS: usize = 50;

    async fn lock(service: &LockService<ModelKv>, name: &str, lease: i64) -> pb::LockResponse {
        let request = pb::LockRequest {
            name: name.as_bytes().to_vec(),
            lease,
        };
        service
            .lock(Request::new(request))
            .await
            .expect("lock")
            .into_inner()
    }

    async fn stays_blocked<T>(task: &tokio::task::JoinHandle<T>) -> bool {
        for _ in 0..BLOCKED_TURNS {
            tokio::task::yield_now().await;
        }
        !task.is_finished()
    }

    #[tokio::test]
    async fn second_locker_waits_for_the_first_to_unlock() {
        let model = ModelKv::default();
        let service = LockService::new(model.clone());
        let first = lock(&service, "job", 0x1a).await;
        assert_eq!(first.key, b"job/1a".to_vec());

        let waiting_service = service.clone();
        let second = tokio::spawn(async move { lock(&waiting_service, "job", 0x2b).await });
        assert!(stays_blocked(&second).await, "the second locker must wait");
        assert!(model.get(b"job/2b").is_some(), "the waiter queued its key");

        let unlock = pb::UnlockRequest {
            key: first.key.clone(),
        };
        let unlocked = service
            .unlock(Request::new(unlock))
            .await
            .expect("unlock")
            .into_inner();
        let second = tokio::time::timeout(TEST_TIMEOUT, second)
            .await
            .expect("second locker acquires after the unlock")
            .expect("task");
        assert_eq!(second.key, b"job/2b".to_vec());
        let unlocked_revision = unlocked.header.expect("header").revision;
        assert!(second.header.expect("header").revision >= unlocked_revision);
    }

    #[tokio::test]
    async fn relocking_with_the_same_lease_holds_at_once() {
        let service = LockService::new(ModelKv::default());
        let first = lock(&service, "job", 7).await;
        let again = lock(&service, "job", 7).await;
        assert_eq!(first.key, again.key);
    }

    #[tokio::test]
    async fn different_names_do_not_contend() {
        let service = LockService::new(ModelKv::default());
        lock(&service, "a", 1).await;
        let other = tokio::time::timeout(TEST_TIMEOUT, lock(&service, "b", 2)).await;
        assert_eq!(other.expect("no contention").key, b"b/2".to_vec());
    }

    #[tokio::test]
    async fn abandoned_wait_deletes_its_key() {
        let model = ModelKv::default();
        let service = LockService::new(model.clone());
        lock(&service, "job", 1).await;
        let waiting_service = service.clone();
        let waiter = tokio::spawn(async move { lock(&waiting_service, "job", 2).await });
        assert!(stays_blocked(&waiter).await, "the second locker must wait");
        assert!(model.get(b"job/2").is_some());
        waiter.abort();
        let mut revisions = model.subscribe();
        tokio::time::timeout(TEST_TIMEOUT, async {
            while model.get(b"job/2").is_some() {
                revisions.changed().await.expect("model alive");
            }
        })
        .await
        .expect("the abandoned key is deleted");
        assert!(model.get(b"job/1").is_some(), "the holder keeps the lock");
    }
}
