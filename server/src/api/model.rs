//! [`ModelKv`]: an in-memory model of the node's KV and watch API, enough
//! of etcd's semantics (revisions, create/mod revisions, versions, txn
//! compares, prefix ranges sorted by creation, watches from a revision) to
//! run the Lock and Election recipes in tests without a Raft cluster.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use cairn_core::kv::{
    CompactionRequest, Compare, CompareResult, CompareTarget, DeleteRangeRequest,
    DeleteRangeResponse, Event, EventType, KeyValue, KvError, LeaseGrantResponse, LeaseId,
    LeaseTimeToLiveResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseOp, Revision, SortOrder, SortTarget, TxnRequest, TxnResponse, WatchCreateRequest,
    WatchResponse,
};
use tokio::sync::watch;

use super::concurrency::{KvBackend, KvWatch};
use crate::node::{NodeError, ResponseHeader};

#[derive(Debug)]
struct State {
    revision: Revision,
    keys: BTreeMap<Vec<u8>, KeyValue>,
    /// Every event with its revision, oldest first.
    history: Vec<(Revision, Event)>,
    /// Granted leases and their TTLs; the model never expires them.
    leases: BTreeMap<LeaseId, i64>,
}

/// The first lease ID the model hands out.
const FIRST_LEASE_ID: LeaseId = 0x1000;

/// A shared in-memory KV store.
#[derive(Clone, Debug)]
pub struct ModelKv {
    state: Arc<Mutex<State>>,
    revisions: watch::Sender<Revision>,
}

impl Default for ModelKv {
    fn default() -> Self {
        let (revisions, _) = watch::channel(1);
        ModelKv {
            state: Arc::new(Mutex::new(State {
                revision: 1,
                keys: BTreeMap::new(),
                history: Vec::new(),
                leases: BTreeMap::new(),
            })),
            revisions,
        }
    }
}

fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    match end {
        [] => key == start,
        [0] => key >= start,
        end => key >= start && key < end,
    }
}

impl State {
    fn header(&self) -> ResponseHeader {
        ResponseHeader {
            cluster_id: 1,
            member_id: 1,
            revision: self.revision,
            raft_term: 1,
        }
    }

    fn range(&self, request: &RangeRequest) -> RangeResponse {
        assert_eq!(
            request.revision, 0,
            "the model reads only the current revision"
        );
        let mut kvs: Vec<KeyValue> = self
            .keys
            .values()
            .filter(|kv| in_range(&kv.key, &request.key, &request.range_end))
            .filter(|kv| {
                request.max_create_revision == 0
                    || kv.create_revision <= request.max_create_revision
            })
            .cloned()
            .collect();
        let count = kvs.len() as i64;
        match (request.sort_target, request.sort_order) {
            (_, SortOrder::None) | (SortTarget::Key, SortOrder::Ascend) => {}
            (SortTarget::Create, SortOrder::Ascend) => kvs.sort_by_key(|kv| kv.create_revision),
            (SortTarget::Create, SortOrder::Descend) => {
                kvs.sort_by_key(|kv| std::cmp::Reverse(kv.create_revision))
            }
            other => panic!("the model does not sort by {other:?}"),
        }
        let more = request.limit > 0 && kvs.len() as i64 > request.limit;
        if request.limit > 0 {
            kvs.truncate(request.limit as usize);
        }
        RangeResponse { kvs, more, count }
    }

    fn compare(&self, compare: &Compare) -> bool {
        assert!(
            compare.range_end.is_empty(),
            "the model compares single keys"
        );
        let kv = self.keys.get(&compare.key);
        let ordering = match &compare.target {
            CompareTarget::Create(revision) => kv.map_or(0, |kv| kv.create_revision).cmp(revision),
            CompareTarget::Mod(revision) => kv.map_or(0, |kv| kv.mod_revision).cmp(revision),
            CompareTarget::Version(version) => kv.map_or(0, |kv| kv.version).cmp(version),
            CompareTarget::Lease(lease) => kv.map_or(0, |kv| kv.lease).cmp(lease),
            CompareTarget::Value(value) => match kv {
                Some(kv) => kv.value.cmp(value),
                None => return false,
            },
        };
        match compare.result {
            CompareResult::Equal => ordering.is_eq(),
            CompareResult::Greater => ordering.is_gt(),
            CompareResult::Less => ordering.is_lt(),
            CompareResult::NotEqual => ordering.is_ne(),
        }
    }

    fn put(&mut self, revision: Revision, request: PutRequest) -> PutResponse {
        let previous = self.keys.get(&request.key).cloned();
        let kv = KeyValue {
            key: request.key.clone(),
            create_revision: previous.as_ref().map_or(revision, |kv| kv.create_revision),
            mod_revision: revision,
            version: previous.as_ref().map_or(0, |kv| kv.version) + 1,
            value: request.value,
            lease: request.lease,
        };
        self.keys.insert(request.key, kv.clone());
        self.history.push((
            revision,
            Event {
                kind: EventType::Put,
                kv,
                prev_kv: None,
            },
        ));
        PutResponse { prev_kv: None }
    }

    fn delete(&mut self, revision: Revision, request: &DeleteRangeRequest) -> DeleteRangeResponse {
        let doomed: Vec<Vec<u8>> = self
            .keys
            .keys()
            .filter(|key| in_range(key, &request.key, &request.range_end))
            .cloned()
            .collect();
        for key in &doomed {
            self.keys.remove(key);
            let kv = KeyValue {
                key: key.clone(),
                mod_revision: revision,
                ..Default::default()
            };
            self.history.push((
                revision,
                Event {
                    kind: EventType::Delete,
                    kv,
                    prev_kv: None,
                },
            ));
        }
        DeleteRangeResponse {
            deleted: doomed.len() as i64,
            prev_kvs: Vec::new(),
        }
    }

    /// Runs a txn; returns its response and whether it wrote.
    fn txn(&mut self, request: TxnRequest) -> TxnResponse {
        let succeeded = request.compare.iter().all(|compare| self.compare(compare));
        let ops = if succeeded {
            request.success
        } else {
            request.failure
        };
        let writes = ops.iter().any(|op| !matches!(op, RequestOp::Range(_)));
        let revision = if writes {
            self.revision + 1
        } else {
            self.revision
        };
        let responses = ops
            .into_iter()
            .map(|op| match op {
                RequestOp::Range(range) => ResponseOp::Range(self.range(&range)),
                RequestOp::Put(put) => ResponseOp::Put(self.put(revision, put)),
                RequestOp::DeleteRange(delete) => {
                    ResponseOp::DeleteRange(self.delete(revision, &delete))
                }
                RequestOp::Txn(_) => panic!("the model has no nested txns"),
            })
            .collect();
        self.revision = revision;
        TxnResponse {
            succeeded,
            responses,
        }
    }
}

impl ModelKv {
    fn publish(&self, revision: Revision) {
        self.revisions.send_replace(revision);
    }

    /// The key's current value, if it exists.
    pub fn get(&self, key: &[u8]) -> Option<KeyValue> {
        self.state
            .lock()
            .expect("model lock")
            .keys
            .get(key)
            .cloned()
    }

    /// A waiter for the next revision change.
    pub fn subscribe(&self) -> watch::Receiver<Revision> {
        self.revisions.subscribe()
    }
}

impl KvBackend for ModelKv {
    type Watch = ModelWatch;

    fn header(&self) -> ResponseHeader {
        self.state.lock().expect("model lock").header()
    }

    async fn range(
        &self,
        request: RangeRequest,
    ) -> Result<(ResponseHeader, RangeResponse), NodeError> {
        let state = self.state.lock().expect("model lock");
        Ok((state.header(), state.range(&request)))
    }

    async fn put(&self, request: PutRequest) -> Result<(ResponseHeader, PutResponse), NodeError> {
        let (header, response) = {
            let mut state = self.state.lock().expect("model lock");
            let revision = state.revision + 1;
            let response = state.put(revision, request);
            state.revision = revision;
            (state.header(), response)
        };
        self.publish(header.revision);
        Ok((header, response))
    }

    async fn compact(&self, _request: CompactionRequest) -> Result<ResponseHeader, NodeError> {
        // The model keeps its whole history.
        Ok(self.header())
    }

    async fn delete_range(
        &self,
        request: DeleteRangeRequest,
    ) -> Result<(ResponseHeader, DeleteRangeResponse), NodeError> {
        let (header, response) = {
            let mut state = self.state.lock().expect("model lock");
            let revision = state.revision + 1;
            let response = state.delete(revision, &request);
            if response.deleted > 0 {
                state.revision += 1;
            }
            (state.header(), response)
        };
        self.publish(header.revision);
        Ok((header, response))
    }

    async fn txn(&self, request: TxnRequest) -> Result<(ResponseHeader, TxnResponse), NodeError> {
        let (header, response) = {
            let mut state = self.state.lock().expect("model lock");
            let response = state.txn(request);
            (state.header(), response)
        };
        self.publish(header.revision);
        Ok((header, response))
    }

    async fn has_leader(&self) -> Result<bool, NodeError> {
        Ok(true)
    }

    async fn lease_grant(
        &self,
        ttl: i64,
        id: LeaseId,
    ) -> Result<(ResponseHeader, LeaseGrantResponse), NodeError> {
        let mut state = self.state.lock().expect("model lock");
        let id = if id == 0 {
            state
                .leases
                .keys()
                .next_back()
                .map_or(FIRST_LEASE_ID, |last| last + 1)
        } else {
            id
        };
        if state.leases.insert(id, ttl).is_some() {
            return Err(NodeError::Kv(KvError::LeaseExists));
        }
        Ok((state.header(), LeaseGrantResponse { id, ttl }))
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<ResponseHeader, NodeError> {
        let header = {
            let mut state = self.state.lock().expect("model lock");
            if state.leases.remove(&id).is_none() {
                return Err(NodeError::Kv(KvError::LeaseNotFound));
            }
            let doomed: Vec<Vec<u8>> = state
                .keys
                .values()
                .filter(|kv| kv.lease == id)
                .map(|kv| kv.key.clone())
                .collect();
            if !doomed.is_empty() {
                let revision = state.revision + 1;
                for key in doomed {
                    state.delete(
                        revision,
                        &DeleteRangeRequest {
                            key,
                            ..Default::default()
                        },
                    );
                }
                state.revision = revision;
            }
            state.header()
        };
        self.publish(header.revision);
        Ok(header)
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<(ResponseHeader, i64), NodeError> {
        let state = self.state.lock().expect("model lock");
        let ttl = state
            .leases
            .get(&id)
            .copied()
            .ok_or(NodeError::Kv(KvError::LeaseNotFound))?;
        Ok((state.header(), ttl))
    }

    async fn lease_time_to_live(
        &self,
        id: LeaseId,
        keys: bool,
    ) -> Result<(ResponseHeader, LeaseTimeToLiveResponse), NodeError> {
        let state = self.state.lock().expect("model lock");
        let ttl = state
            .leases
            .get(&id)
            .copied()
            .ok_or(NodeError::Kv(KvError::LeaseNotFound))?;
        let keys = if keys {
            state
                .keys
                .values()
                .filter(|kv| kv.lease == id)
                .map(|kv| kv.key.clone())
                .collect()
        } else {
            Vec::new()
        };
        Ok((
            state.header(),
            LeaseTimeToLiveResponse {
                id,
                ttl,
                granted_ttl: ttl,
                keys,
            },
        ))
    }

    async fn lease_leases(&self) -> Result<(ResponseHeader, Vec<LeaseId>), NodeError> {
        let state = self.state.lock().expect("model lock");
        Ok((state.header(), state.leases.keys().copied().collect()))
    }

    async fn watch_session(&self) -> Result<ModelWatch, NodeError> {
        Ok(ModelWatch {
            model: self.clone(),
            revisions: self.subscribe(),
            watches: Vec::new(),
            pending: VecDeque::new(),
            next_watch_id: 1,
        })
    }
}

/// The watch ID of a stream-wide progress notification.
const PROGRESS_WATCH_ID: i64 = -1;

/// A watch stream over [`ModelKv`].
#[derive(Debug)]
pub struct ModelWatch {
    model: ModelKv,
    revisions: watch::Receiver<Revision>,
    /// (watch ID, request, next revision to deliver).
    watches: Vec<(i64, WatchCreateRequest, Revision)>,
    pending: VecDeque<WatchResponse>,
    next_watch_id: i64,
}

impl ModelWatch {
    /// Queues the events each watch has not seen yet.
    fn collect(&mut self) {
        let state = self.model.state.lock().expect("model lock");
        for (watch_id, request, next_revision) in &mut self.watches {
            let events: Vec<Event> = state
                .history
                .iter()
                .filter(|(revision, event)| {
                    *revision >= *next_revision
                        && in_range(&event.kv.key, &request.key, &request.range_end)
                })
                .map(|(_, event)| event.clone())
                .collect();
            *next_revision = state.revision + 1;
            if !events.is_empty() {
                self.pending.push_back(WatchResponse {
                    header_revision: state.revision,
                    watch_id: *watch_id,
                    events,
                    ..Default::default()
                });
            }
        }
    }
}

impl KvWatch for ModelWatch {
    async fn create(&mut self, request: WatchCreateRequest) -> Result<(), NodeError> {
        let watch_id = self.next_watch_id;
        self.next_watch_id += 1;
        let current = self.model.header().revision;
        let start = if request.start_revision == 0 {
            current + 1
        } else {
            request.start_revision
        };
        self.pending.push_back(WatchResponse {
            header_revision: current,
            watch_id,
            created: true,
            ..Default::default()
        });
        self.watches.push((watch_id, request, start));
        Ok(())
    }

    async fn cancel(&mut self, watch_id: i64) -> Result<(), NodeError> {
        self.watches.retain(|(id, _, _)| *id != watch_id);
        Ok(())
    }

    async fn progress(&mut self) -> Result<(), NodeError> {
        self.pending.push_back(WatchResponse {
            header_revision: self.model.header().revision,
            watch_id: PROGRESS_WATCH_ID,
            ..Default::default()
        });
        Ok(())
    }

    async fn next(&mut self) -> Option<WatchResponse> {
        loop {
            if let Some(response) = self.pending.pop_front() {
                return Some(response);
            }
            self.revisions.borrow_and_update();
            self.collect();
            if self.pending.is_empty() && self.revisions.changed().await.is_err() {
                return None;
            }
        }
    }
}
