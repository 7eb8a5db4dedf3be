//! The etcdserverpb.Watch service: one bidirectional stream per client
//! carrying many watches. A task per stream owns the node's
//! [`WatchSession`], turns create/cancel/progress requests into session
//! calls and forwards the session's responses with a header whose revision
//! is the response's own (etcd's progress contract).

use std::collections::BTreeSet;

use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

use super::leader::ensure_leader;
use super::proto::etcdserverpb as pb;
use super::stream::{channel_stream, ResponseStream};
use super::wire;
use crate::node::{NodeError, NodeHandle, WatchSession};

/// Responses buffered per watch stream before the session is no longer polled.
pub const WATCH_RESPONSES_BUFFERED_MAX: usize = 128;

/// The watch ID etcd answers with when a create request fails.
const FAILED_WATCH_ID: i64 = -1;

/// etcdserverpb.Watch over a node.
#[derive(Clone, Debug)]
pub struct WatchService {
    node: NodeHandle,
}

impl WatchService {
    /// A Watch service over `node`.
    pub fn new(node: NodeHandle) -> WatchService {
        WatchService { node }
    }
}

#[tonic::async_trait]
impl pb::watch_server::Watch for WatchService {
    type WatchStream = ResponseStream<pb::WatchResponse>;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        let requests = request.into_inner();
        let session = self.node.watch_session().await?;
        let (sender, receiver) = mpsc::channel(WATCH_RESPONSES_BUFFERED_MAX);
        let stream = WatchStream {
            node: self.node.clone(),
            session,
            sender,
            live_watches: BTreeSet::new(),
        };
        tokio::spawn(stream.run(requests));
        Ok(Response::new(channel_stream(receiver)))
    }
}

/// One client's watch stream.
struct WatchStream {
    node: NodeHandle,
    session: WatchSession,
    sender: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    /// Watches created and not cancelled: responses for any other ID are
    /// leftovers of a cancelled watch and are dropped, as etcd drops them.
    live_watches: BTreeSet<i64>,
}

impl WatchStream {
    async fn run(mut self, mut requests: Streaming<pb::WatchRequest>) {
        // A client that half-closes its side still receives events, as in etcd.
        let mut requests_open = true;
        loop {
            tokio::select! {
                request = requests.message(), if requests_open => match request {
                    Ok(Some(request)) => {
                        if let Err(status) = self.handle_request(request).await {
                            let _ = self.sender.send(Err(status)).await;
                            return;
                        }
                    }
                    Ok(None) => requests_open = false,
                    Err(status) => {
                        debug!(%status, "watch stream receive failed");
                        return;
                    }
                },
                response = self.session.next() => match response {
                    Some(response) => {
                        if !self.forward(response).await {
                            return;
                        }
                    }
                    None => {
                        let _ = self.sender.send(Err(NodeError::Stopped.into())).await;
                        return;
                    }
                },
                () = self.sender.closed() => return,
            }
        }
    }

    /// Sends a session response on, unless it belongs to a cancelled watch.
    /// Returns false when the client is gone.
    async fn forward(&mut self, response: cairn_core::kv::WatchResponse) -> bool {
        let watch_id = response.watch_id;
        if response.created && !response.canceled {
            self.live_watches.insert(watch_id);
        } else if watch_id != FAILED_WATCH_ID
            && !response.created
            && !self.live_watches.contains(&watch_id)
        {
            return true;
        }
        if response.canceled {
            self.live_watches.remove(&watch_id);
        }
        let wire_response = wire::watch_response_to_wire(self.node.header(), response);
        self.sender.send(Ok(wire_response)).await.is_ok()
    }

    async fn handle_request(&mut self, request: pb::WatchRequest) -> Result<(), Status> {
        use pb::watch_request::RequestUnion;
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => {
                let create = wire::watch_create_request_from_wire(create);
                match self.session.create(create).await {
                    Ok(()) => Ok(()),
                    Err(NodeError::Kv(error)) => {
                        // etcd answers a refused create on the stream, not by failing it.
                        let response = pb::WatchResponse {
                            header: wire::some_header(self.node.header()),
                            watch_id: FAILED_WATCH_ID,
                            created: true,
                            canceled: true,
                            cancel_reason: error.to_string(),
                            ..Default::default()
                        };
                        self.send(response).await
                    }
                    Err(error) => Err(error.into()),
                }
            }
            Some(RequestUnion::CancelRequest(cancel)) => {
                if !self.live_watches.remove(&cancel.watch_id) {
                    // etcd ignores a cancel for a watch it does not have.
                    return Ok(());
                }
                self.session.cancel(cancel.watch_id).await?;
                let response = pb::WatchResponse {
                    header: wire::some_header(self.node.header()),
                    watch_id: cancel.watch_id,
                    canceled: true,
                    ..Default::default()
                };
                self.send(response).await
            }
            Some(RequestUnion::ProgressRequest(_)) => Ok(self.session.progress().await?),
            None => Ok(()),
        }
    }

    async fn send(&self, response: pb::WatchResponse) -> Result<(), Status> {
        // A closed channel means the client is gone; `run` notices on its next turn.
        let _ = self.sender.send(Ok(response)).await;
        Ok(())
    }
}
