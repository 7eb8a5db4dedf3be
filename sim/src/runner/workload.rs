//! The simulated clients: each issues etcd operations through a member's
//! [`NodeHandle`] (the gRPC service's own request path), retries on another
//! member after an error like an etcd client with several endpoints, and
//! records every attempt in the [`History`]. Watchers hold one watch on the
//! workload's key space and resume after a failure from the last revision
//! they saw; the compactor compacts the store now and then.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cairn_core::kv::{
    CompactionRequest, Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyValue,
    LeaseId, PutRequest, RangeRequest, RequestOp, ResponseOp, TxnRequest, TxnResponse,
    WatchCreateRequest,
};
use cairn_server::node::{NodeError, NodeHandle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::cluster::Cluster;
use super::recorder::SharedRecorder;
use crate::checker::watch::{Compaction, WatchSession};
use crate::history::{
    ClientId, Comparison, Consistency, History, Operation, OperationResult, SwapOutcome,
};
use crate::scenario::OperationKind;
use crate::swarm::SwarmParameters;

/// A client gives up on an operation after this long (then it is
/// indeterminate if it may write).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(4);
/// A client waits this long before retrying after an error.
pub const CLIENT_BACKOFF: Duration = Duration::from_millis(100);
/// Most think time between a client's operations.
pub const THINK_TIME_MAX: Duration = Duration::from_millis(50);
/// Every workload key starts with this.
pub const KEY_PREFIX: &[u8] = b"k";
/// How often a watcher checks whether the run is over.
pub const WATCH_POLL: Duration = Duration::from_millis(500);
/// Keys of general transactions start with this: their own key space, so the
/// per-key linearizability check keeps every other key (the transaction
/// checker covers these); prefix ranges and watches still see them.
pub const TXN_KEY_PREFIX: &str = "kt";
/// Most keys general transactions use (few keys: contention).
pub const TXN_KEYS_MAX: u32 = 6;
/// Most compares, and most ops per branch, of one (nested) transaction.
pub const TXN_WIDTH_MAX: usize = 3;
/// Deepest nesting of transactions inside a transaction.
pub const TXN_DEPTH_MAX: u32 = 2;
/// Compactions keep this many revisions below the current one.
pub const COMPACTION_KEEP_REVISIONS: i64 = 20;

/// What clients, watchers and the compactor share.
#[derive(Debug)]
pub struct Workload {
    /// The cluster.
    pub cluster: Arc<Cluster>,
    /// The trace and the clock.
    pub recorder: SharedRecorder,
    /// The run's parameters.
    pub parameters: SwarmParameters,
    /// The client history.
    pub history: Mutex<History>,
    /// Finished watch sessions.
    pub sessions: Mutex<Vec<WatchSession>>,
    /// Compactions requested.
    pub compactions: Mutex<Vec<Compaction>>,
    /// Set when clients must stop.
    pub stopped: AtomicBool,
    next_session: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The key after every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Whether a failed request definitely took no effect.
fn definitely_refused(error: &NodeError) -> bool {
    matches!(
        error,
        NodeError::NoLeader | NodeError::NotLeader | NodeError::Kv(_)
    )
}

impl Workload {
    /// Shared state for a run.
    pub fn new(
        cluster: Arc<Cluster>,
        recorder: SharedRecorder,
        parameters: SwarmParameters,
    ) -> Workload {
        Workload {
            cluster,
            recorder,
            parameters,
            history: Mutex::new(History::new()),
            sessions: Mutex::new(Vec::new()),
            compactions: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            next_session: AtomicU64::new(1),
        }
    }

    /// Whether the clients must stop.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    fn txn_key(&self, rng: &mut ChaCha8Rng) -> Vec<u8> {
        let index = rng.gen_range(0..self.parameters.keys.clamp(2, TXN_KEYS_MAX));
        format!("{TXN_KEY_PREFIX}{index:02}").into_bytes()
    }

    /// A transaction over the txn keys: 1..=3 compares drawn around what
    /// the client last saw of each key (so they hold about as often as they
    /// fail), then branches of puts, deletes, ranges and nested txns. A key
    /// is written at most once per path (etcd refuses duplicates).
    fn draw_txn(&self, rng: &mut ChaCha8Rng, draw: &mut TxnDraw<'_>, depth: u32) -> TxnRequest {
        let compares = (0..rng.gen_range(1..=TXN_WIDTH_MAX))
            .map(|_| self.draw_compare(rng, draw))
            .collect();
        let written = draw.written.clone();
        let success = self.draw_ops(rng, draw, depth);
        let success_written = std::mem::replace(&mut draw.written, written);
        let failure = self.draw_ops(rng, draw, depth);
        draw.written.extend(success_written);
        TxnRequest {
            compare: compares,
            success,
            failure,
        }
    }

    fn draw_compare(&self, rng: &mut ChaCha8Rng, draw: &TxnDraw<'_>) -> Compare {
        let key = self.txn_key(rng);
        let seen = draw.seen.get(&key);
        // Around the seen number: equal, one below or one above.
        let target_choice = rng.gen_range(0..5);
        let mut near = |number: i64| (number + rng.gen_range(-1..=1)).max(0);
        let target = match target_choice {
            0 => CompareTarget::Version(near(seen.map_or(0, |kv| kv.version))),
            1 => CompareTarget::Create(near(seen.map_or(0, |kv| kv.create_revision))),
            2 => CompareTarget::Mod(near(seen.map_or(0, |kv| kv.mod_revision))),
            3 => {
                let seen_values: Vec<&Vec<u8>> = draw.seen.values().map(|kv| &kv.value).collect();
                CompareTarget::Value(match (seen, rng.gen_range(0..4)) {
                    (Some(kv), 0..=1) => kv.value.clone(),
                    (_, 2) if !seen_values.is_empty() => {
                        seen_values[rng.gen_range(0..seen_values.len())].clone()
                    }
                    _ => Vec::new(),
                })
            }
            _ => CompareTarget::Lease(match (seen, draw.lease, rng.gen_range(0..3)) {
                (Some(kv), _, 0) => kv.lease,
                (_, Some(lease), 1) => lease,
                _ => 0,
            }),
        };
        let result = match rng.gen_range(0..4) {
            0 => CompareResult::Equal,
            1 => CompareResult::NotEqual,
            2 => CompareResult::Less,
            _ => CompareResult::Greater,
        };
        Compare {
            result,
            target,
            key,
            range_end: Vec::new(),
        }
    }

    fn draw_ops(&self, rng: &mut ChaCha8Rng, draw: &mut TxnDraw<'_>, depth: u32) -> Vec<RequestOp> {
        let mut ops = Vec::new();
        for _ in 0..rng.gen_range(1..=TXN_WIDTH_MAX) {
            let key = self.txn_key(rng);
            let choice = rng.gen_range(0..10);
            let free = !draw.written.contains(&key);
            let op = match choice {
                0..=3 if free => {
                    draw.written.insert(key.clone());
                    draw.values += 1;
                    let lease = match draw.lease {
                        Some(lease) if rng.gen_bool(0.2) => lease,
                        _ => 0,
                    };
                    RequestOp::Put(PutRequest {
                        key,
                        value: format!("{}-t{}", draw.prefix, draw.values).into_bytes(),
                        lease,
                        ..PutRequest::default()
                    })
                }
                4..=5 if free => {
                    draw.written.insert(key.clone());
                    RequestOp::DeleteRange(DeleteRangeRequest {
                        key,
                        ..DeleteRangeRequest::default()
                    })
                }
                9 if depth < TXN_DEPTH_MAX => RequestOp::Txn(self.draw_txn(rng, draw, depth + 1)),
                _ => RequestOp::Range(RangeRequest {
                    key,
                    ..RangeRequest::default()
                }),
            };
            ops.push(op);
        }
        ops
    }

    fn key(&self, rng: &mut ChaCha8Rng) -> Vec<u8> {
        let index = rng.gen_range(0..self.parameters.keys.max(1));
        format!("k{index:04}").into_bytes()
    }

    /// The TTL clients ask for: the drawn TTL, raised to every member's
    /// minimum. The simulator models clock drift by scaling a member's tick
    /// interval, which also scales the minimum TTL the member derives from
    /// it, and each member raises a grant to its own minimum when it applies
    /// it (as etcd does); real members share one configured election
    /// timeout, so asking for at least the largest minimum keeps every
    /// member applying the TTL the client was told (found by swarm seed 22).
    fn lease_ttl_seconds(&self) -> i64 {
        i64::try_from(self.parameters.lease_ttl.as_secs())
            .unwrap_or(i64::MAX)
            .max(self.cluster.lease_ttl_min_seconds_max())
            .max(1)
    }

    /// Runs `operation` on `handle` as `client`, recording it. Returns
    /// whether it succeeded.
    pub async fn execute(
        &self,
        client: ClientId,
        handle: &NodeHandle,
        operation: Operation,
    ) -> Option<OperationResult> {
        let may_write = operation.may_write();
        let invoked_at = self.recorder.lock().now();
        let id = lock(&self.history).invoke(client, operation.clone(), invoked_at);
        let outcome = tokio::time::timeout(CLIENT_TIMEOUT, perform(handle, &operation)).await;
        let mut recorder = self.recorder.lock();
        let now = recorder.now();
        let mut history = lock(&self.history);
        match outcome {
            Ok(Ok(result)) => {
                recorder.trace(&format!("{client} {id} {operation:?} -> {result:?}"));
                history.complete(id, now, result.clone());
                Some(result)
            }
            Ok(Err(error)) => {
                recorder.trace(&format!("{client} {id} {operation:?} -> error {error}"));
                if !may_write || definitely_refused(&error) {
                    history.fail(id, now, error.to_string());
                } else {
                    history.indeterminate(id, error.to_string());
                }
                None
            }
            Err(_) => {
                recorder.trace(&format!("{client} {id} {operation:?} -> timeout"));
                if may_write {
                    history.indeterminate(id, "client timeout");
                } else {
                    history.fail(id, now, "client timeout");
                }
                None
            }
        }
    }

    /// One client: operations until the run stops.
    pub async fn run_client(self: Arc<Self>, client: ClientId, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut target = rng.gen_range(1..=self.cluster.size());
        let mut counter = 0u64;
        let mut lease: Option<LeaseId> = None;
        let mut last_values: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut locks_held: Vec<Vec<u8>> = Vec::new();
        // What this client last saw of each txn key.
        let mut txn_seen: BTreeMap<Vec<u8>, KeyValue> = BTreeMap::new();
        let weights: Vec<(OperationKind, u32)> = self
            .parameters
            .workload
            .weights
            .iter()
            .map(|(kind, weight)| (*kind, *weight))
            .filter(|(_, weight)| *weight > 0)
            .collect();
        let total: u32 = weights.iter().map(|(_, weight)| weight).sum();
        if total == 0 {
            return;
        }
        while !self.is_stopped() {
            let Some(handle) = self.cluster.member(target).client_handle() else {
                target = rng.gen_range(1..=self.cluster.size());
                tokio::time::sleep(CLIENT_BACKOFF).await;
                continue;
            };
            let mut pick = rng.gen_range(0..total);
            let mut kind = weights[0].0;
            for (candidate, weight) in &weights {
                if pick < *weight {
                    kind = *candidate;
                    break;
                }
                pick -= weight;
            }
            counter += 1;
            let value = format!("{client}-{counter}").into_bytes();
            let key = self.key(&mut rng);
            let operation = match kind {
                OperationKind::Put => Operation::Put {
                    key,
                    value,
                    lease: 0,
                },
                OperationKind::Get => Operation::Get {
                    key,
                    consistency: Consistency::Linearizable,
                },
                OperationKind::SerializableGet => Operation::Get {
                    key,
                    consistency: Consistency::Serializable,
                },
                OperationKind::Delete => Operation::Delete { key },
                OperationKind::CompareAndSwap => {
                    let comparison = match last_values.get(&key) {
                        Some(value) if rng.gen_bool(0.8) => Comparison::ValueEquals(value.clone()),
                        _ => Comparison::Absent,
                    };
                    Operation::CompareAndSwap {
                        key,
                        comparison,
                        value,
                        lease: 0,
                    }
                }
                OperationKind::Range => Operation::RangePrefix {
                    prefix: KEY_PREFIX.to_vec(),
                    consistency: if rng.gen_bool(0.8) {
                        Consistency::Linearizable
                    } else {
                        Consistency::Serializable
                    },
                },
                OperationKind::Lease => match lease {
                    None => Operation::LeaseGrant {
                        ttl_seconds: self.lease_ttl_seconds(),
                    },
                    Some(lease_id) => match rng.gen_range(0..10) {
                        0..=2 => Operation::LeaseKeepAlive { lease: lease_id },
                        3 => Operation::LeaseTimeToLive { lease: lease_id },
                        4..=7 => Operation::Put {
                            key,
                            value,
                            lease: lease_id,
                        },
                        _ => Operation::LeaseRevoke { lease: lease_id },
                    },
                },
                OperationKind::Txn => {
                    let prefix = format!("{client}-{counter}");
                    let mut draw = TxnDraw {
                        seen: &txn_seen,
                        lease,
                        prefix: &prefix,
                        values: 0,
                        written: BTreeSet::new(),
                    };
                    Operation::Txn {
                        request: self.draw_txn(&mut rng, &mut draw, 0),
                    }
                }
                OperationKind::Lock => match (lease, locks_held.pop()) {
                    (_, Some(held)) => Operation::Delete { key: held },
                    (None, None) => Operation::LeaseGrant {
                        ttl_seconds: self.lease_ttl_seconds(),
                    },
                    (Some(lease_id), None) => Operation::CompareAndSwap {
                        key,
                        comparison: Comparison::Absent,
                        value,
                        lease: lease_id,
                    },
                },
            };
            let result = self.execute(client, &handle, operation.clone()).await;
            match (&operation, &result) {
                (_, None) => {
                    target = rng.gen_range(1..=self.cluster.size());
                    tokio::time::sleep(CLIENT_BACKOFF).await;
                }
                (
                    Operation::LeaseGrant { .. },
                    Some(OperationResult::LeaseGrant { lease: id, .. }),
                ) => {
                    lease = Some(*id);
                }
                (Operation::LeaseRevoke { .. }, Some(_)) => lease = None,
                (
                    Operation::LeaseKeepAlive { .. },
                    Some(OperationResult::LeaseKeepAlive { ttl_seconds, .. }),
                ) if *ttl_seconds <= 0 => lease = None,
                (
                    Operation::LeaseTimeToLive { .. },
                    Some(OperationResult::LeaseTimeToLive { ttl_seconds, .. }),
                ) if *ttl_seconds < 0 => lease = None,
                (
                    Operation::CompareAndSwap {
                        key,
                        value,
                        lease: lease_id,
                        ..
                    },
                    Some(OperationResult::CompareAndSwap { outcome, .. }),
                ) => match outcome {
                    SwapOutcome::Swapped => {
                        last_values.insert(key.clone(), value.clone());
                        if *lease_id != 0 {
                            locks_held.push(key.clone());
                        }
                    }
                    SwapOutcome::Refused { current } => match current {
                        Some(kv) => {
                            last_values.insert(key.clone(), kv.value.clone());
                        }
                        None => {
                            last_values.remove(key);
                        }
                    },
                },
                (Operation::Put { key, value, .. }, Some(_)) => {
                    last_values.insert(key.clone(), value.clone());
                }
                (Operation::Txn { request }, Some(OperationResult::Txn { revision, response })) => {
                    observe_txn(&mut txn_seen, request, response, *revision);
                }
                (Operation::Get { key, .. }, Some(OperationResult::Get { kv, .. })) => match kv {
                    Some(kv) => {
                        last_values.insert(key.clone(), kv.value.clone());
                    }
                    None => {
                        last_values.remove(key);
                    }
                },
                _ => {}
            }
            let think = rng.gen_range(Duration::ZERO..=THINK_TIME_MAX);
            tokio::time::sleep(think).await;
        }
    }

    /// One watcher: a watch on the whole key space, resumed after failures.
    pub async fn run_watcher(self: Arc<Self>, client: ClientId, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut resume: Option<i64> = None;
        while !self.is_stopped() {
            let target = rng.gen_range(1..=self.cluster.size());
            let Some(handle) = self.cluster.member(target).client_handle() else {
                tokio::time::sleep(CLIENT_BACKOFF).await;
                continue;
            };
            let Ok(Ok(mut stream)) =
                tokio::time::timeout(CLIENT_TIMEOUT, handle.watch_session()).await
            else {
                tokio::time::sleep(CLIENT_BACKOFF).await;
                continue;
            };
            let request = WatchCreateRequest {
                key: KEY_PREFIX.to_vec(),
                range_end: prefix_end(KEY_PREFIX),
                start_revision: resume.unwrap_or(0),
                prev_kv: rng.gen_bool(0.5),
                ..WatchCreateRequest::default()
            };
            let id = self.next_session.fetch_add(1, Ordering::Relaxed);
            let created_at = self.recorder.lock().now();
            let mut session = WatchSession::new(id, client, request.clone(), created_at);
            let created = tokio::time::timeout(CLIENT_TIMEOUT, stream.create(request)).await;
            if !matches!(created, Ok(Ok(()))) {
                tokio::time::sleep(CLIENT_BACKOFF).await;
                continue;
            }
            self.recorder
                .lock()
                .trace(&format!("watch {id} on member {target} from {resume:?}"));
            let mut compacted_to = None;
            while !self.is_stopped() {
                match tokio::time::timeout(WATCH_POLL, stream.next()).await {
                    Err(_) => continue,
                    Ok(None) => break,
                    Ok(Some(response)) => {
                        let mut recorder = self.recorder.lock();
                        let now = recorder.now();
                        recorder.trace(&format!(
                            "watch {id} response revision={} events={} canceled={}",
                            response.header_revision,
                            response.events.len(),
                            response.canceled
                        ));
                        drop(recorder);
                        let canceled = response.canceled;
                        if canceled && response.compact_revision > 0 {
                            compacted_to = Some(response.compact_revision);
                        }
                        session.receive(now, response);
                        if canceled {
                            break;
                        }
                    }
                }
            }
            resume = compacted_to.or(session.resume_revision()).or(resume);
            lock(&self.sessions).push(session);
        }
    }

    /// Compacts every `compact_every` until the run stops.
    pub async fn run_compactor(self: Arc<Self>, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut last = 0;
        while !self.is_stopped() {
            tokio::time::sleep(self.parameters.compact_every).await;
            let target = rng.gen_range(1..=self.cluster.size());
            let Some(handle) = self.cluster.member(target).client_handle() else {
                continue;
            };
            let revision = handle.header().revision - COMPACTION_KEEP_REVISIONS;
            if revision <= last {
                continue;
            }
            self.compact(&handle, revision).await;
            last = revision;
        }
    }

    /// Compacts at `revision` through `handle`, recording it.
    pub async fn compact(&self, handle: &NodeHandle, revision: i64) {
        let request = CompactionRequest {
            revision,
            physical: false,
        };
        let result = tokio::time::timeout(CLIENT_TIMEOUT, handle.compact(request)).await;
        let mut recorder = self.recorder.lock();
        let acknowledged_at = matches!(result, Ok(Ok(_))).then(|| recorder.now());
        let acknowledged_revision = match &result {
            Ok(Ok(header)) => Some(header.revision),
            _ => None,
        };
        recorder.trace(&format!(
            "compact {revision} acknowledged={}",
            acknowledged_at.is_some()
        ));
        lock(&self.compactions).push(Compaction {
            revision,
            acknowledged_at,
            acknowledged_revision,
        });
    }
}

/// What drawing one transaction needs and tracks.
struct TxnDraw<'a> {
    /// What the client last saw of each txn key.
    seen: &'a BTreeMap<Vec<u8>, KeyValue>,
    /// The client's lease, if it holds one.
    lease: Option<LeaseId>,
    /// Written values are `{prefix}-t{n}`: unique per client and operation.
    prefix: &'a str,
    /// Values drawn so far.
    values: u64,
    /// Keys put or deleted on the path being drawn.
    written: BTreeSet<Vec<u8>>,
}

/// Updates what the client saw of the txn keys from a txn's answer: ranges
/// show keys as they were, puts wrote at `revision`, deletes removed.
fn observe_txn(
    seen: &mut BTreeMap<Vec<u8>, KeyValue>,
    request: &TxnRequest,
    response: &TxnResponse,
    revision: i64,
) {
    let branch = if response.succeeded {
        &request.success
    } else {
        &request.failure
    };
    for (op, answer) in branch.iter().zip(&response.responses) {
        match (op, answer) {
            (RequestOp::Range(range), ResponseOp::Range(result)) => match result.kvs.first() {
                Some(kv) => {
                    seen.insert(kv.key.clone(), kv.clone());
                }
                None => {
                    seen.remove(&range.key);
                }
            },
            (RequestOp::Put(put), ResponseOp::Put(_)) => {
                let previous = seen.get(&put.key);
                let kv = KeyValue {
                    key: put.key.clone(),
                    create_revision: previous.map_or(revision, |kv| kv.create_revision),
                    mod_revision: revision,
                    version: previous.map_or(1, |kv| kv.version + 1),
                    value: put.value.clone(),
                    lease: put.lease,
                };
                seen.insert(put.key.clone(), kv);
            }
            (RequestOp::DeleteRange(delete), ResponseOp::DeleteRange(_)) => {
                seen.remove(&delete.key);
            }
            (RequestOp::Txn(nested), ResponseOp::Txn(answer)) => {
                observe_txn(seen, nested, answer, revision);
            }
            _ => {}
        }
    }
}

/// Sends `operation` through `handle`.
async fn perform(handle: &NodeHandle, operation: &Operation) -> Result<OperationResult, NodeError> {
    match operation {
        Operation::Put { key, value, lease } => {
            let request = PutRequest {
                key: key.clone(),
                value: value.clone(),
                lease: *lease,
                ..PutRequest::default()
            };
            let (header, _) = handle.put(request).await?;
            Ok(OperationResult::Put {
                revision: header.revision,
            })
        }
        Operation::Get { key, consistency } => {
            let request = RangeRequest {
                key: key.clone(),
                serializable: *consistency == Consistency::Serializable,
                ..RangeRequest::default()
            };
            let (header, response) = handle.range(request).await?;
            Ok(OperationResult::Get {
                revision: header.revision,
                kv: response.kvs.into_iter().next(),
            })
        }
        Operation::Delete { key } => {
            let request = DeleteRangeRequest {
                key: key.clone(),
                ..DeleteRangeRequest::default()
            };
            let (header, response) = handle.delete_range(request).await?;
            Ok(OperationResult::Delete {
                revision: header.revision,
                deleted: response.deleted,
            })
        }
        Operation::CompareAndSwap {
            key,
            comparison,
            value,
            lease,
        } => {
            let (result, target) = match comparison {
                Comparison::ValueEquals(expected) => {
                    (CompareResult::Equal, CompareTarget::Value(expected.clone()))
                }
                Comparison::VersionEquals(version) => {
                    (CompareResult::Equal, CompareTarget::Version(*version))
                }
                Comparison::ModRevisionEquals(revision) => {
                    (CompareResult::Equal, CompareTarget::Mod(*revision))
                }
                Comparison::Absent => (CompareResult::Equal, CompareTarget::Create(0)),
            };
            let request = TxnRequest {
                compare: vec![Compare {
                    result,
                    target,
                    key: key.clone(),
                    range_end: Vec::new(),
                }],
                success: vec![RequestOp::Put(PutRequest {
                    key: key.clone(),
                    value: value.clone(),
                    lease: *lease,
                    ..PutRequest::default()
                })],
                failure: vec![RequestOp::Range(RangeRequest {
                    key: key.clone(),
                    ..RangeRequest::default()
                })],
            };
            let (header, response) = handle.txn(request).await?;
            let outcome = if response.succeeded {
                SwapOutcome::Swapped
            } else {
                let current = response.responses.into_iter().find_map(|op| match op {
                    ResponseOp::Range(range) => Some(range.kvs.into_iter().next()),
                    _ => None,
                });
                SwapOutcome::Refused {
                    current: current.flatten(),
                }
            };
            Ok(OperationResult::CompareAndSwap {
                revision: header.revision,
                outcome,
            })
        }
        Operation::RangePrefix {
            prefix,
            consistency,
        } => {
            let request = RangeRequest {
                key: prefix.clone(),
                range_end: prefix_end(prefix),
                serializable: *consistency == Consistency::Serializable,
                ..RangeRequest::default()
            };
            let (header, response) = handle.range(request).await?;
            Ok(OperationResult::RangePrefix {
                revision: header.revision,
                kvs: response.kvs,
            })
        }
        Operation::LeaseGrant { ttl_seconds } => {
            let (header, response) = handle.lease_grant(*ttl_seconds, 0).await?;
            Ok(OperationResult::LeaseGrant {
                revision: header.revision,
                lease: response.id,
                ttl_seconds: response.ttl,
            })
        }
        Operation::LeaseKeepAlive { lease } => {
            let (header, ttl_seconds) = handle.lease_keep_alive(*lease).await?;
            Ok(OperationResult::LeaseKeepAlive {
                revision: header.revision,
                ttl_seconds,
            })
        }
        Operation::LeaseRevoke { lease } => {
            let header = handle.lease_revoke(*lease).await?;
            Ok(OperationResult::LeaseRevoke {
                revision: header.revision,
            })
        }
        Operation::LeaseTimeToLive { lease } => {
            let (header, response) = handle.lease_time_to_live(*lease, false).await?;
            Ok(OperationResult::LeaseTimeToLive {
                revision: header.revision,
                ttl_seconds: response.ttl,
                granted_ttl_seconds: response.granted_ttl,
            })
        }
        Operation::Txn { request } => {
            let (header, response) = handle.txn(request.clone()).await?;
            Ok(OperationResult::Txn {
                revision: header.revision,
                response,
            })
        }
    }
}
