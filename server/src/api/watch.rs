//! The etcdserverpb.Watch service: one bidirectional stream per client
//! carrying many watches. A task per stream owns the node's
//! [`WatchSession`], turns create/cancel/progress requests into session
//! calls and forwards the session's responses with a header whose revision
//! is the response's own (etcd's progress contract).

use std::collections::BTreeSet;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

use super::backend::{KvBackend, KvWatch};
use super::leader::ensure_leader;
use super::proto::etcdserverpb as pb;
use super::stream::{channel_stream, ResponseStream};
use super::wire;
use crate::node::{NodeError, NodeHandle};

/// Responses buffered per watch stream before the session is no longer polled.
pub const WATCH_RESPONSES_BUFFERED_MAX: usize = 128;

/// The watch ID etcd answers with when a create request fails.
const FAILED_WATCH_ID: i64 = -1;

/// etcdserverpb.Watch over a node.
#[derive(Clone, Debug)]
pub struct WatchService<B = NodeHandle> {
    node: B,
}

impl<B: KvBackend> WatchService<B> {
    /// A Watch service over `node`.
    pub fn new(node: B) -> WatchService<B> {
        WatchService { node }
    }
}

#[tonic::async_trait]
impl<B: KvBackend> pb::watch_server::Watch for WatchService<B> {
    type WatchStream = ResponseStream<pb::WatchResponse>;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        Ok(Response::new(self.open_stream(request.into_inner()).await?))
    }
}

impl<B: KvBackend> WatchService<B> {
    /// Serves one watch stream: `requests` in, the returned stream out.
    pub async fn open_stream<S>(
        &self,
        requests: S,
    ) -> Result<ResponseStream<pb::WatchResponse>, Status>
    where
        S: Stream<Item = Result<pb::WatchRequest, Status>> + Send + Unpin + 'static,
    {
        let session = self.node.watch_session().await?;
        let (sender, receiver) = mpsc::channel(WATCH_RESPONSES_BUFFERED_MAX);
        let stream = WatchStream {
            node: self.node.clone(),
            session,
            sender,
            live_watches: BTreeSet::new(),
        };
        tokio::spawn(stream.run(requests));
        Ok(channel_stream(receiver))
    }
}

/// One client's watch stream.
struct WatchStream<B: KvBackend> {
    node: B,
    session: B::Watch,
    sender: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    /// Watches created and not cancelled: responses for any other ID are
    /// leftovers of a cancelled watch and are dropped, as etcd drops them.
    live_watches: BTreeSet<i64>,
}

impl<B: KvBackend> WatchStream<B> {
    async fn run<S>(mut self, mut requests: S)
    where
        S: Stream<Item = Result<pb::WatchRequest, Status>> + Send + Unpin + 'static,
    {
        // A client that half-closes its side still receives events, as in etcd.
        let mut requests_open = true;
        loop {
            tokio::select! {
                request = requests.next(), if requests_open => match request {
                    Some(Ok(request)) => {
                        if let Err(status) = self.handle_request(request).await {
                            let _ = self.sender.send(Err(status)).await;
                            return;
                        }
                    }
                    None => requests_open = false,
                    Some(Err(status)) => {
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

    async fn send(&mut self, response: pb::WatchResponse) -> Result<(), Status> {
        // A closed channel means the client is gone; `run` notices on its next turn.
        let _ = self.sender.send(Ok(response)).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Guards the watch stream's protocol: created answers, events with the
    //! response's revision in the header, cancel confirmations, no events
    //! after a cancel, progress answers, and events after a half-close.

    use std::time::Duration;

    use cairn_core::kv::{PutRequest, RequestOp, TxnRequest};

    use super::*;
    use crate::api::model::ModelKv;

    /// Bound on every wait in these tests.
    const TEST_TIMEOUT: Duration = Duration::from_secs(10);

    fn create(key: &[u8]) -> pb::WatchRequest {
        pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: key.to_vec(),
                    ..Default::default()
                },
            )),
        }
    }

    fn cancel(watch_id: i64) -> pb::WatchRequest {
        pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CancelRequest(
                pb::WatchCancelRequest { watch_id },
            )),
        }
    }

    async fn put(model: &ModelKv, key: &[u8], value: &[u8]) -> i64 {
        let txn = TxnRequest {
            success: vec![RequestOp::Put(PutRequest {
                key: key.to_vec(),
                value: value.to_vec(),
                ..Default::default()
            })],
            ..Default::default()
        };
        model.txn(txn).await.expect("put").0.revision
    }

    async fn next(responses: &mut ResponseStream<pb::WatchResponse>) -> pb::WatchResponse {
        tokio::time::timeout(TEST_TIMEOUT, responses.next())
            .await
            .expect("a response in time")
            .expect("stream open")
            .expect("no error")
    }

    #[tokio::test]
    async fn create_event_cancel_progress() {
        let model = ModelKv::default();
        let service = WatchService::new(model.clone());
        let (requests, request_receiver) = mpsc::channel(8);
        let request_stream = Box::pin(futures::stream::unfold(request_receiver, |mut r| async {
            let request = r.recv().await?;
            Some((Ok(request), r))
        }));
        let mut responses = service.open_stream(request_stream).await.expect("open");

        requests.send(create(b"k")).await.expect("send");
        let created = next(&mut responses).await;
        assert!(created.created && !created.canceled, "{created:?}");
        let watch_id = created.watch_id;

        let revision = put(&model, b"k", b"v1").await;
        put(&model, b"other", b"x").await;
        let event = next(&mut responses).await;
        assert_eq!(event.watch_id, watch_id);
        assert_eq!(event.events.len(), 1, "{event:?}");
        assert_eq!(
            event.events[0].kv.as_ref().expect("kv").value,
            b"v1".to_vec()
        );
        assert!(event.header.expect("header").revision >= revision);

        requests.send(cancel(watch_id)).await.expect("send");
        let canceled = next(&mut responses).await;
        assert!(
            canceled.canceled && canceled.watch_id == watch_id,
            "{canceled:?}"
        );
        // A cancel for an unknown watch is ignored; a progress request is answered.
        requests.send(cancel(watch_id + 100)).await.expect("send");
        put(&model, b"k", b"v2").await;
        let progress_request = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
                pb::WatchProgressRequest {},
            )),
        };
        requests.send(progress_request).await.expect("send");
        let progress = next(&mut responses).await;
        assert_eq!(
            progress.watch_id, -1,
            "no event of the cancelled watch comes first: {progress:?}"
        );
        assert!(progress.events.is_empty());
    }

    #[tokio::test]
    async fn half_closed_stream_keeps_delivering_events() {
        let model = ModelKv::default();
        let service = WatchService::new(model.clone());
        let requests = futures::stream::iter(vec![Ok(create(b"k"))]);
        let mut responses = service.open_stream(requests).await.expect("open");
        let created = next(&mut responses).await;
        assert!(created.created);
        put(&model, b"k", b"after-close").await;
        let event = next(&mut responses).await;
        assert_eq!(
            event.events[0].kv.as_ref().expect("kv").value,
            b"after-close".to_vec()
        );
    }
}
