//! The etcdserverpb.Lease service: grant, revoke, time-to-live, list, and
//! the keep-alive stream (one renewal answer per request, TTL 0 for a lease
//! that does not exist, as etcd answers).

use cairn_core::kv::KvError;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

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
pub struct LeaseService {
    node: NodeHandle,
}

impl LeaseService {
    /// A Lease service over `node`.
    pub fn new(node: NodeHandle) -> LeaseService {
        LeaseService { node }
    }
}

#[tonic::async_trait]
impl pb::lease_server::Lease for LeaseService {
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
        let requests = request.into_inner();
        let (sender, receiver) = mpsc::channel(KEEP_ALIVE_RESPONSES_BUFFERED_MAX);
        tokio::spawn(run_keep_alive_stream(self.node.clone(), requests, sender));
        Ok(Response::new(channel_stream(receiver)))
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
async fn run_keep_alive_stream(
    node: NodeHandle,
    mut requests: Streaming<pb::LeaseKeepAliveRequest>,
    sender: mpsc::Sender<Result<pb::LeaseKeepAliveResponse, Status>>,
) {
    loop {
        let request = tokio::select! {
            request = requests.message() => request,
            () = sender.closed() => return,
        };
        let id = match request {
            Ok(Some(request)) => request.id,
            Ok(None) => return,
            Err(status) => {
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
