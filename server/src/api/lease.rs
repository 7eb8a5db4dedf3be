//! The etcdserverpb.Lease service: grant, revoke, time-to-live, list, and
//! the keep-alive stream (one renewal answer per request, TTL 0 for a lease
//! that does not exist, as etcd answers).

use cairn_core::kv::KvError;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

use super::backend::KvBackend;
use super::leader::ensure_leader;
use super::proto::etcdserverpb as pb;
use super::stream::{channel_stream, ResponseStream};
use super::wire;
use crate::node::{NodeError, NodeHandle};

/// Keep-alive answers buffered per stream before requests are no longer read.
pub const KEEP_ALIVE_RESPONSES_BUFFERED_MAX: usize = 16;

/// The TTL etcd's TimeToLive answers for a lease that does not exist.
const TIME_TO_LIVE_NOT_FOUND: i64 = -1;
/// The TTL etcd's keep-alive answers for a lease that does not exist.
const KEEP_ALIVE_NOT_FOUND: i64 = 0;

/// etcdserverpb.Lease over a node.
#[derive(Clone, Debug)]
pub struct LeaseService<B = NodeHandle> {
    node: B,
}

impl<B: KvBackend> LeaseService<B> {
    /// A Lease service over `node`.
    pub fn new(node: B) -> LeaseService<B> {
        LeaseService { node }
    }
}

impl<B: KvBackend> LeaseService<B> {
    /// Serves one keep-alive stream: `requests` in, the returned stream out.
    pub fn open_keep_alive_stream<S>(
        &self,
        requests: S,
    ) -> ResponseStream<pb::LeaseKeepAliveResponse>
    where
        S: Stream<Item = Result<pb::LeaseKeepAliveRequest, Status>> + Send + Unpin + 'static,
    {
        let (sender, receiver) = mpsc::channel(KEEP_ALIVE_RESPONSES_BUFFERED_MAX);
        tokio::spawn(run_keep_alive_stream(self.node.clone(), requests, sender));
        channel_stream(receiver)
    }
}

#[tonic::async_trait]
impl<B: KvBackend> pb::lease_server::Lease for LeaseService<B> {
    type LeaseKeepAliveStream = ResponseStream<pb::LeaseKeepAliveResponse>;

    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        let request = request.into_inner();
        let (header, granted) = self.node.lease_grant(request.ttl, request.id).await?;
        Ok(Response::new(pb::LeaseGrantResponse {
            header: wire::some_header(header),
            id: granted.id,
            ttl: granted.ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        let header = self.node.lease_revoke(request.into_inner().id).await?;
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: wire::some_header(header),
        }))
    }

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        Ok(Response::new(
            self.open_keep_alive_stream(request.into_inner()),
        ))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        let request = request.into_inner();
        let response = match self.node.lease_time_to_live(request.id, request.keys).await {
            Ok((header, response)) => pb::LeaseTimeToLiveResponse {
                header: wire::some_header(header),
                id: response.id,
                ttl: response.ttl,
                granted_ttl: response.granted_ttl,
                keys: response.keys,
            },
            Err(NodeError::Kv(KvError::LeaseNotFound)) => pb::LeaseTimeToLiveResponse {
                header: wire::some_header(self.node.header()),
                id: request.id,
                ttl: TIME_TO_LIVE_NOT_FOUND,
                ..Default::default()
            },
            Err(error) => return Err(error.into()),
        };
        Ok(Response::new(response))
    }

    async fn lease_leases(
        &self,
        request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        let (header, leases) = self.node.lease_leases().await?;
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: wire::some_header(header),
            leases: leases
                .into_iter()
                .map(|id| pb::LeaseStatus { id })
                .collect(),
        }))
    }
}

/// Answers each keep-alive request in order until the client or the node goes away.
async fn run_keep_alive_stream<B, S>(
    node: B,
    mut requests: S,
    sender: mpsc::Sender<Result<pb::LeaseKeepAliveResponse, Status>>,
) where
    B: KvBackend,
    S: Stream<Item = Result<pb::LeaseKeepAliveRequest, Status>> + Send + Unpin + 'static,
{
    loop {
        let request = tokio::select! {
            request = requests.next() => request,
            () = sender.closed() => return,
        };
        let id = match request {
            Some(Ok(request)) => request.id,
            None => return,
            Some(Err(status)) => {
                debug!(%status, "lease keep-alive stream receive failed");
                return;
            }
        };
        let response = match node.lease_keep_alive(id).await {
            Ok((header, ttl)) => pb::LeaseKeepAliveResponse {
                header: wire::some_header(header),
                id,
                ttl,
            },
            Err(NodeError::Kv(KvError::LeaseNotFound)) => pb::LeaseKeepAliveResponse {
                header: wire::some_header(node.header()),
                id,
                ttl: KEEP_ALIVE_NOT_FOUND,
            },
            Err(error) => {
                let _ = sender.send(Err(error.into())).await;
                return;
            }
        };
        if sender.send(Ok(response)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    //! Guards etcd's lease answers: keep-alive renews with the TTL and answers
    //! TTL 0 for a missing lease; TimeToLive answers -1 for one; revoke of a
    //! missing lease is NotFound.

    use std::time::Duration;

    use super::*;
    use crate::api::model::ModelKv;
    use crate::api::proto::etcdserverpb::lease_server::Lease;

    /// Bound on every wait in these tests.
    const TEST_TIMEOUT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn grant_keep_alive_time_to_live_revoke() {
        let service = LeaseService::new(ModelKv::default());
        let grant = pb::LeaseGrantRequest { ttl: 30, id: 0 };
        let granted = service
            .lease_grant(Request::new(grant))
            .await
            .expect("grant")
            .into_inner();
        assert_ne!(granted.id, 0, "the node picks a non-zero ID");
        assert_eq!(granted.ttl, 30);

        let requests = futures::stream::iter(vec![
            Ok(pb::LeaseKeepAliveRequest { id: granted.id }),
            Ok(pb::LeaseKeepAliveRequest { id: granted.id + 1 }),
        ]);
        let mut responses = service.open_keep_alive_stream(requests);
        let mut answers = Vec::new();
        while let Some(answer) = tokio::time::timeout(TEST_TIMEOUT, responses.next())
            .await
            .expect("in time")
        {
            let answer = answer.expect("no error");
            answers.push((answer.id, answer.ttl));
        }
        assert_eq!(answers, vec![(granted.id, 30), (granted.id + 1, 0)]);

        let missing = pb::LeaseTimeToLiveRequest {
            id: granted.id + 1,
            keys: false,
        };
        let missing = service
            .lease_time_to_live(Request::new(missing))
            .await
            .expect("ttl");
        assert_eq!(missing.into_inner().ttl, -1);

        let leases = service
            .lease_leases(Request::new(pb::LeaseLeasesRequest {}))
            .await
            .expect("leases")
            .into_inner();
        assert_eq!(leases.leases, vec![pb::LeaseStatus { id: granted.id }]);

        let revoke = pb::LeaseRevokeRequest { id: granted.id };
        service
            .lease_revoke(Request::new(revoke))
            .await
            .expect("revoke");
        let again = pb::LeaseRevokeRequest { id: granted.id };
        let error = service
            .lease_revoke(Request::new(again))
            .await
            .expect_err("gone");
        assert_eq!(error.code(), tonic::Code::NotFound);
        assert_eq!(error.message(), "etcdserver: requested lease not found");
    }
}
