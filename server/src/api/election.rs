//! The v3electionpb.Election service, etcd's server-side leader election
//! (the `concurrency.Election` recipe): candidates put `<name>/<lease hex>`
//! with their value; the key created first leads; Campaign waits until every
//! earlier key is gone; Proclaim and Resign act only while the caller's key
//! still has the create revision it won with; Observe streams the leader's
//! value as it changes.

use cairn_core::kv::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, EventType, KeyValue, PutRequest,
    RangeRequest, RequestOp, ResponseOp, Revision, TxnRequest, WatchCreateRequest,
};
use tokio::sync::mpsc;
use tonic::{Code, Request, Response, Status};
use tracing::debug;

use super::concurrency::{
    first_created, key_prefix, ownership_key, prefix_range_end, wait_deletes, KeyWatch, KvBackend,
};
use super::lock::DeleteOnDrop;
use super::proto::v3electionpb as pb;
use super::stream::{channel_stream, ResponseStream};
use super::wire;
use crate::node::{NodeHandle, ResponseHeader};

/// Leader updates buffered per Observe stream.
pub const OBSERVE_RESPONSES_BUFFERED_MAX: usize = 16;

/// etcd's concurrency.ErrElectionNotLeader.
pub const NOT_LEADER: &str = "election: not leader";
/// etcd's concurrency.ErrElectionNoLeader.
pub const NO_LEADER: &str = "election: no leader";
/// etcd's v3election ErrMissingLeaderKey.
pub const MISSING_LEADER_KEY: &str = "\"leader\" field must be provided";

/// v3electionpb.Election over a node.
#[derive(Clone, Debug)]
pub struct ElectionService<B = NodeHandle> {
    node: B,
}

impl<B: KvBackend> ElectionService<B> {
    /// An Election service over `node`.
    pub fn new(node: B) -> ElectionService<B> {
        ElectionService { node }
    }
}

/// etcd answers the recipe's errors as plain Go errors, i.e. code Unknown.
fn recipe_error(message: &str) -> Status {
    Status::new(Code::Unknown, message)
}

/// A txn that runs `then` while `key` still has `create_revision`.
fn while_created_at(key: &[u8], create_revision: Revision, then: RequestOp) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Create(create_revision),
            key: key.to_vec(),
            range_end: Vec::new(),
        }],
        success: vec![then],
        failure: Vec::new(),
    }
}

/// Proclaims `value` under a held leadership; "not leader" if it is lost.
async fn proclaim<B: KvBackend>(
    node: &B,
    leader: &pb::LeaderKey,
    value: Vec<u8>,
) -> Result<ResponseHeader, Status> {
    let put = RequestOp::Put(PutRequest {
        key: leader.key.clone(),
        value,
        lease: leader.lease,
        ..Default::default()
    });
    let (header, response) = node
        .txn(while_created_at(&leader.key, leader.rev, put))
        .await?;
    if !response.succeeded {
        return Err(recipe_error(NOT_LEADER));
    }
    Ok(header)
}

/// Deletes the leadership key if it is still the one won.
async fn resign<B: KvBackend>(node: &B, leader: &pb::LeaderKey) -> Result<ResponseHeader, Status> {
    let delete = RequestOp::DeleteRange(DeleteRangeRequest {
        key: leader.key.clone(),
        ..Default::default()
    });
    let (header, _) = node
        .txn(while_created_at(&leader.key, leader.rev, delete))
        .await?;
    Ok(header)
}

fn kv_to_leader_response(header: ResponseHeader, kv: KeyValue) -> pb::LeaderResponse {
    pb::LeaderResponse {
        header: wire::some_header(header),
        kv: Some(wire::key_value_to_wire(kv)),
    }
}

#[tonic::async_trait]
impl<B: KvBackend> pb::election_server::Election for ElectionService<B> {
    type ObserveStream = ResponseStream<pb::LeaderResponse>;

    async fn campaign(
        &self,
        request: Request<pb::CampaignRequest>,
    ) -> Result<Response<pb::CampaignResponse>, Status> {
        let request = request.into_inner();
        let prefix = key_prefix(&request.name);
        let key = ownership_key(&prefix, request.lease);
        let txn = TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal,
                target: CompareTarget::Create(0),
                key: key.clone(),
                range_end: Vec::new(),
            }],
            success: vec![RequestOp::Put(PutRequest {
                key: key.clone(),
                value: request.value.clone(),
                lease: request.lease,
                ..Default::default()
            })],
            failure: vec![RequestOp::Range(RangeRequest {
                key: key.clone(),
                ..Default::default()
            })],
        };
        let (header, response) = self.node.txn(txn).await?;
        let mut leader = pb::LeaderKey {
            name: request.name.clone(),
            key: key.clone(),
            rev: header.revision,
            lease: request.lease,
        };
        if !response.succeeded {
            // Already a candidate with this lease: resume, proclaiming the new value.
            let existing = match response.responses.first() {
                Some(ResponseOp::Range(range)) => range.kvs.first().cloned(),
                _ => None,
            };
            let Some(existing) = existing else {
                return Err(Status::internal(
                    "campaign txn: own key vanished inside the txn",
                ));
            };
            leader.rev = existing.create_revision;
            if existing.value != request.value {
                if let Err(status) = proclaim(&self.node, &leader, request.value.clone()).await {
                    let _ = resign(&self.node, &leader).await;
                    return Err(status);
                }
            }
        }
        // Abandoning the wait (the client cancels) resigns, as etcd does.
        let mut guard = DeleteOnDrop::new(self.node.clone(), key);
        let waited = wait_deletes(&self.node, &prefix, leader.rev - 1).await;
        guard.disarm();
        waited?;
        Ok(Response::new(pb::CampaignResponse {
            header: wire::some_header(header),
            leader: Some(leader),
        }))
    }

    async fn proclaim(
        &self,
        request: Request<pb::ProclaimRequest>,
    ) -> Result<Response<pb::ProclaimResponse>, Status> {
        let request = request.into_inner();
        let Some(leader) = request.leader else {
            return Err(recipe_error(MISSING_LEADER_KEY));
        };
        let header = proclaim(&self.node, &leader, request.value).await?;
        Ok(Response::new(pb::ProclaimResponse {
            header: wire::some_header(header),
        }))
    }

    async fn leader(
        &self,
        request: Request<pb::LeaderRequest>,
    ) -> Result<Response<pb::LeaderResponse>, Status> {
        let prefix = key_prefix(&request.into_inner().name);
        let (header, owner) = first_created(&self.node, &prefix).await?;
        let Some(owner) = owner else {
            return Err(recipe_error(NO_LEADER));
        };
        Ok(Response::new(kv_to_leader_response(header, owner)))
    }

    async fn observe(
        &self,
        request: Request<pb::LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let prefix = key_prefix(&request.into_inner().name);
        let (sender, receiver) = mpsc::channel(OBSERVE_RESPONSES_BUFFERED_MAX);
        let node = self.node.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = observe(&node, &prefix, &sender) => {
                    if let Err(status) = result {
                        debug!(%status, "election observe ended");
                    }
                }
                () = sender.closed() => {}
            }
        });
        Ok(Response::new(channel_stream(receiver)))
    }

    async fn resign(
        &self,
        request: Request<pb::ResignRequest>,
    ) -> Result<Response<pb::ResignResponse>, Status> {
        let Some(leader) = request.into_inner().leader else {
            return Err(recipe_error(MISSING_LEADER_KEY));
        };
        let header = resign(&self.node, &leader).await?;
        Ok(Response::new(pb::ResignResponse {
            header: wire::some_header(header),
        }))
    }
}

/// etcd's Election.observe: find the leader (or wait for the first
/// candidate), send its value and every later update of its key, and when
/// the key is deleted start over. Ends (the stream closes) on any error, as
/// etcd's does.
async fn observe<B: KvBackend>(
    node: &B,
    prefix: &[u8],
    sender: &mpsc::Sender<Result<pb::LeaderResponse, Status>>,
) -> Result<(), Status> {
    loop {
        let (header, owner) = first_created(node, prefix).await?;
        let (revision, leader) = match owner {
            Some(owner) => (header.revision, owner),
            None => {
                let request = WatchCreateRequest {
                    key: prefix.to_vec(),
                    range_end: prefix_range_end(prefix),
                    start_revision: header.revision,
                    ..Default::default()
                };
                let mut watch = KeyWatch::open(node, request).await?;
                loop {
                    let (_, events) = watch.next_events().await?;
                    let first_put = events
                        .into_iter()
                        .find(|event| event.kind == EventType::Put);
                    if let Some(put) = first_put {
                        break (put.kv.mod_revision, put.kv);
                    }
                }
            }
        };
        let leader_header = ResponseHeader {
            revision,
            ..node.header()
        };
        let key = leader.key.clone();
        if sender
            .send(Ok(kv_to_leader_response(leader_header, leader)))
            .await
            .is_err()
        {
            return Ok(());
        }
        let request = WatchCreateRequest {
            key,
            start_revision: revision + 1,
            ..Default::default()
        };
        let mut watch = KeyWatch::open(node, request).await?;
        'leader: loop {
            let (revision, events) = watch.next_events().await?;
            for event in events {
                if event.kind == EventType::Delete {
                    break 'leader;
                }
                let update_header = ResponseHeader {
                    revision,
                    ..node.header()
                };
                if sender
                    .send(Ok(kv_to_leader_response(update_header, event.kv)))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Guards the election recipe: the first candidate leads, later ones wait
    //! for its resignation, proclamations need the won key, and observers
    //! see every leader value in order.

    use std::time::Duration;

    use futures::StreamExt;

    use super::*;
    use crate::api::model::ModelKv;
    use crate::api::proto::v3electionpb::election_server::Election;

    /// Bound on every wait in these tests.
    const TEST_TIMEOUT: Duration = Duration::from_secs(10);
    /// Scheduler turns given to a task that must stay blocked.
    const BLOCKED_TURNS: usize = 50;

    async fn campaign(
        service: &ElectionService<ModelKv>,
        lease: i64,
        value: &str,
    ) -> Result<pb::LeaderKey, Status> {
        let request = pb::CampaignRequest {
            name: b"svc".to_vec(),
            lease,
            value: value.as_bytes().to_vec(),
        };
        let response = service.campaign(Request::new(request)).await?.into_inner();
        Ok(response.leader.expect("leader key"))
    }

    async fn leader_value(service: &ElectionService<ModelKv>) -> Result<Vec<u8>, Status> {
        let request = pb::LeaderRequest {
            name: b"svc".to_vec(),
        };
        let response = service.leader(Request::new(request)).await?.into_inner();
        Ok(response.kv.expect("kv").value)
    }

    #[tokio::test]
    async fn campaign_proclaim_observe_resign() {
        let service = ElectionService::new(ModelKv::default());
        let no_leader = leader_value(&service).await.expect_err("nobody campaigned");
        assert_eq!(
            (no_leader.code(), no_leader.message()),
            (Code::Unknown, NO_LEADER)
        );

        let mut observer = service
            .observe(Request::new(pb::LeaderRequest {
                name: b"svc".to_vec(),
            }))
            .await
            .expect("observe")
            .into_inner();

        let first = campaign(&service, 0xa, "alpha")
            .await
            .expect("first candidate leads");
        assert_eq!(first.key, b"svc/a".to_vec());
        assert_eq!(
            leader_value(&service).await.expect("leader"),
            b"alpha".to_vec()
        );

        let waiting_service = service.clone();
        let second = tokio::spawn(async move { campaign(&waiting_service, 0xb, "beta").await });
        for _ in 0..BLOCKED_TURNS {
            tokio::task::yield_now().await;
        }
        assert!(!second.is_finished(), "the second candidate must wait");

        let proclaim_request = pb::ProclaimRequest {
            leader: Some(first.clone()),
            value: b"alpha2".to_vec(),
        };
        service
            .proclaim(Request::new(proclaim_request))
            .await
            .expect("leader proclaims");
        assert_eq!(
            leader_value(&service).await.expect("leader"),
            b"alpha2".to_vec()
        );

        let stale = pb::LeaderKey {
            rev: first.rev + 100,
            ..first.clone()
        };
        let refused = service
            .proclaim(Request::new(pb::ProclaimRequest {
                leader: Some(stale),
                value: b"x".to_vec(),
            }))
            .await
            .expect_err("a stale leader key cannot proclaim");
        assert_eq!(
            (refused.code(), refused.message()),
            (Code::Unknown, NOT_LEADER)
        );

        service
            .resign(Request::new(pb::ResignRequest {
                leader: Some(first),
            }))
            .await
            .expect("resign");
        let second = tokio::time::timeout(TEST_TIMEOUT, second)
            .await
            .expect("the second candidate wins after the resignation")
            .expect("task")
            .expect("campaign");
        assert_eq!(second.key, b"svc/b".to_vec());
        assert_eq!(
            leader_value(&service).await.expect("leader"),
            b"beta".to_vec()
        );

        let mut observed = Vec::new();
        while observed.len() < 3 {
            let next = tokio::time::timeout(TEST_TIMEOUT, observer.next())
                .await
                .expect("observer keeps up")
                .expect("stream open")
                .expect("no error");
            observed.push(next.kv.expect("kv").value);
        }
        assert_eq!(
            observed,
            vec![b"alpha".to_vec(), b"alpha2".to_vec(), b"beta".to_vec()]
        );
    }

    #[tokio::test]
    async fn proclaim_and_resign_need_a_leader_key() {
        let service = ElectionService::new(ModelKv::default());
        let request = pb::ProclaimRequest {
            leader: None,
            value: Vec::new(),
        };
        let error = service
            .proclaim(Request::new(request))
            .await
            .expect_err("no key");
        assert_eq!(error.message(), MISSING_LEADER_KEY);
        let error = service
            .resign(Request::new(pb::ResignRequest { leader: None }))
            .await
            .expect_err("no key");
        assert_eq!(error.message(), MISSING_LEADER_KEY);
    }

    #[tokio::test]
    async fn recampaigning_with_a_new_value_proclaims_it() {
        let service = ElectionService::new(ModelKv::default());
        let first = campaign(&service, 3, "old").await.expect("leads");
        let again = campaign(&service, 3, "new").await.expect("still leads");
        assert_eq!(first.rev, again.rev, "the same candidacy");
        assert_eq!(
            leader_value(&service).await.expect("leader"),
            b"new".to_vec()
        );
    }
}
