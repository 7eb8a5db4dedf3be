//! [`WatchHub`]: every watch of a node, fed from applied revisions and from
//! history for catch-up. Pure: the driver routes its outputs to streams.
//!
//! NB: API skeleton; the implementation lands with the KV state machine issue.

use super::error::KvError;
use super::request::{Event, WatchCreateRequest, WatchResponse};
use super::store::KvStore;

/// A client watch stream, as numbered by the driver.
pub type StreamId = u64;

/// All watches on one node.
#[derive(Debug, Default)]
pub struct WatchHub {
    _private: (),
}

#[allow(unused_variables, clippy::todo, missing_docs)]
impl WatchHub {
    /// Registers a watch; its `created` response (or a cancel) appears in `poll`.
    pub fn create(
        &mut self,
        store: &KvStore,
        stream: StreamId,
        request: WatchCreateRequest,
    ) -> Result<i64, KvError> {
        todo!()
    }
    /// Cancels a watch.
    pub fn cancel(&mut self, stream: StreamId, watch_id: i64) {
        todo!()
    }
    /// Drops every watch of a closed stream.
    pub fn close_stream(&mut self, stream: StreamId) {
        todo!()
    }
    /// Queues a progress answer (watch_id -1) for a stream.
    pub fn request_progress(&mut self, store: &KvStore, stream: StreamId) {
        todo!()
    }
    /// Feeds the events of one newly applied revision.
    pub fn on_applied(&mut self, store: &KvStore, events: &[Event]) {
        todo!()
    }
    /// Responses ready to send, at most `responses_max`, in order per stream.
    /// Unsynced (catching-up) watches are advanced from the store's history.
    pub fn poll(
        &mut self,
        store: &KvStore,
        responses_max: usize,
    ) -> Vec<(StreamId, WatchResponse)> {
        todo!()
    }
}
