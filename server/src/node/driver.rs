//! The driver loop: one task that owns the Raft core, the KV store, the
//! watch hub, the log store and the transport, and is the only caller of
//! `Raft::ready` and `Raft::advance`.
//!
//! Each turn of the loop waits for one event (a tick, a peer message, a
//! client request), drains what else is queued so one Ready covers many
//! proposals (group commit: one write, one fsync), then carries out the
//! Ready's duties in order: persist, send, apply, answer reads, advance.
//!
//! Determinism: state that can reach a message, a reply or a log line is
//! kept in BTreeMaps and Vecs; time comes from tokio's clock (simulated
//! under madsim); randomness only from the configured seed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cairn_core::kv::{
    Command, CommandResponse, Envelope, KvConfig, KvError, KvStore, LeaseCheckpoint, LeaseId,
    StreamId, WatchHub, WatchResponse,
};
use cairn_core::raft::{
    ConfChange, Config, Entry, EntryKind, Index, NodeId, ProposeError, Raft, ReadState, Ready,
    Role, Snapshot, Start, Term,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, error, info, trace, warn};

use crate::storage::Disk;
use crate::transport::{
    PeerError, PeerMessage, PeerRequest, PeerResponse, SendError, Transport, TransportConfig,
    TransportError, TransportEvent,
};

use super::config::{NodeConfig, StartMode};
use super::error::NodeError;
use super::handle::{Member, NodeHandle, ResponseHeader, StatusInfo};
use super::log_store::{open_raft_storage, LogStore, LogStoreError, Recovery};
use super::member::{
    member_id_for, member_using_peer_url, peer_urls_by_member, stable_hash, MemberTable,
};
use super::metrics::NodeMetrics;
use super::request::{MemberChange, NodeRequest, ReadRequest, Reply};
use super::snapshot_data::{NodeMetadata, SnapshotData};

/// Bound of the queue of client requests to the driver.
pub const REQUEST_QUEUE_MAX: usize = 4096;
/// At most this many queued events are drained into one turn of the loop
/// (and so into one Ready and one fsync).
pub const EVENTS_PER_TURN_MAX: usize = 512;
/// At most this many Readies are processed in one turn; more work makes
/// the next turn start at once.
pub const READIES_PER_TURN_MAX: usize = 64;
/// At most this many watch responses are taken from the hub per turn.
pub const WATCH_RESPONSES_PER_TURN_MAX: usize = 1024;
/// Bound of each watch stream's channel to its session; responses beyond
/// it wait in the watch hub, whose own bound sends slow watches to catch-up.
pub const WATCH_STREAM_CHANNEL_MAX: usize = 256;
/// How often watches that asked for progress notifications get one (etcd's
/// --experimental-watch-progress-notify-interval).
pub const WATCH_PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(600);
/// At most this many expired leases are revoked per tick.
pub const LEASE_REVOKES_PER_TICK_MAX: usize = 64;
/// How often the leader records remaining lease TTLs in the log.
pub const LEASE_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(300);
/// At most this many lease checkpoints in one entry.
pub const LEASE_CHECKPOINTS_PER_ENTRY_MAX: usize = 1000;
/// How long a leader that is shutting down waits for its transfer.
pub const SHUTDOWN_TRANSFER_TIMEOUT: Duration = Duration::from_secs(3);
/// Attempts at drawing a fresh lease ID before giving up.
pub const LEASE_ID_ATTEMPTS_MAX: usize = 16;
/// The server version reported by Status (etcd's, for client compatibility).
pub const SERVER_VERSION: &str = "3.5.0";

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The peer listener could not start.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The log store failed.
    #[error(transparent)]
    Storage(#[from] LogStoreError),
    /// The data dir belongs to another member or cluster.
    #[error(
        "data dir belongs to member {found_member:x} of cluster {found_cluster:x}, \
         not member {member:x} of cluster {cluster:x}"
    )]
    WrongDataDir {
        /// The member in the metadata.
        found_member: u64,
        /// The cluster in the metadata.
        found_cluster: u64,
        /// The configured member.
        member: u64,
        /// The configured cluster.
        cluster: u64,
    },
    /// The metadata blob does not decode.
    #[error("node metadata does not decode: {reason}")]
    CorruptMetadata {
        /// The decoder's complaint.
        reason: String,
    },
    /// The persisted snapshot does not decode.
    #[error("snapshot at index {index} does not decode: {reason}")]
    CorruptSnapshot {
        /// Its index.
        index: Index,
        /// The decoder's complaint.
        reason: String,
    },
}

/// Why a running node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeFailure {
    /// Storage failed (a poisoned WAL, a failed fsync): the node must not
    /// acknowledge anything more.
    #[error(transparent)]
    Storage(#[from] LogStoreError),
    /// A committed entry does not decode: the log or the code is broken.
    #[error("committed entry {index} does not decode: {reason}")]
    CorruptEntry {
        /// Its index.
        index: Index,
        /// The decoder's complaint.
        reason: String,
    },
    /// A received snapshot does not decode.
    #[error("snapshot at index {index} does not decode: {reason}")]
    CorruptSnapshot {
        /// Its index.
        index: Index,
        /// The decoder's complaint.
        reason: String,
    },
    /// The task panicked or was aborted.
    #[error("node task ended abnormally: {reason}")]
    TaskEnded {
        /// What the runtime said.
        reason: String,
    },
}

/// The running driver task.
#[derive(Debug)]
pub struct NodeTask {
    join: JoinHandle<Result<(), NodeFailure>>,
}

impl NodeTask {
    /// Waits for the node to stop: `Ok` after a graceful shutdown or its
    /// removal from the cluster, an error after a failure.
    pub async fn wait(self) -> Result<(), NodeFailure> {
        match self.join.await {
            Ok(result) => result,
            Err(error) => Err(NodeFailure::TaskEnded {
                reason: error.to_string(),
            }),
        }
    }

    /// Kills the node at once, as a crash would (nothing more is persisted).
    pub fn abort(&self) {
        self.join.abort();
    }

    /// True once the task has ended.
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }
}

/// Starts a node on an opened log store: binds the peer listener, recovers
/// the state machine, and spawns the driver task.
pub async fn start(
    config: NodeConfig,
    mut log_store: Box<dyn LogStore>,
    recovery: Recovery,
) -> Result<(NodeHandle, NodeTask), StartError> {
    let metadata = read_metadata(&config, &recovery)?;
    log_store.write_metadata(&metadata.encode())?;

    let kv_config = KvConfig {
        txn_ops_max: config.txn_ops_max,
        request_bytes_max: config.request_bytes_max,
        lease_ttl_min_seconds: config.lease_ttl_min_seconds(),
        ..KvConfig::default()
    };
    let mut members: MemberTable = config
        .initial_cluster
        .iter()
        .map(|(id, initial)| {
            let member = Member {
                id: id.0,
                name: initial.name.clone(),
                peer_urls: initial.peer_urls.clone(),
                client_urls: Vec::new(),
                is_learner: false,
            };
            (id.0, member)
        })
        .collect();
    let mut store = KvStore::new(kv_config.clone());
    let mut applied_index = Index(0);
    if !recovery.fresh {
        if let Some(snapshot) = &recovery.persisted.snapshot {
            if !snapshot.data.is_empty() {
                let index = snapshot.metadata.index;
                let data = SnapshotData::decode(&snapshot.data).map_err(|error| {
                    StartError::CorruptSnapshot {
                        index,
                        reason: error.to_string(),
                    }
                })?;
                store = KvStore::restore(kv_config.clone(), &data.kv).map_err(|error| {
                    StartError::CorruptSnapshot {
                        index,
                        reason: error.to_string(),
                    }
                })?;
                members = data.members;
            }
            applied_index = snapshot.metadata.index;
        }
    }
    let start = if !recovery.fresh {
        Start::Restart(recovery.persisted.clone())
    } else {
        match config.start_mode {
            StartMode::New => Start::New {
                voters: config.initial_cluster.keys().copied().collect(),
            },
            StartMode::Existing => Start::Join,
        }
    };
    let mut raft_config = Config::new(config.member_id, config.seed);
    raft_config.election_timeout_ticks = config.election_timeout_ticks;

    let transport_config = TransportConfig::new(
        config.cluster_id,
        config.member_id,
        config.listen_peer_url.clone(),
    );
    let (mut transport, transport_events) = Transport::bind(transport_config).await?;
    transport.set_peers(&peer_urls_by_member(&members, config.member_id));
    // Members added by entries not yet applied must be reachable already.
    for entry in &recovery.persisted.entries {
        if entry.index > applied_index {
            add_peer_from_entry(&mut transport, entry);
        }
    }

    info!(
        name = %config.name,
        member = %config.member_id,
        cluster = format_args!("{:x}", config.cluster_id),
        boots = metadata.boots,
        fresh = recovery.fresh,
        applied_index = applied_index.0,
        peer_address = %transport.local_address(),
        "starting node"
    );
    let raft = Raft::new(raft_config, start);
    let (requests_sender, requests) = mpsc::channel(REQUEST_QUEUE_MAX);
    let metrics = config.metrics.clone();
    let handle = NodeHandle::new(
        requests_sender,
        config.cluster_id,
        config.member_id,
        metrics.clone(),
        config.request_timeout,
    );
    let member_prefix = {
        let id = config.member_id.0;
        (id ^ (id >> 16) ^ (id >> 32) ^ (id >> 48)) & 0xffff
    };
    // Members sharing a seed, and successive boots, draw different lease IDs.
    let rng_seed = stable_hash([
        config.seed.to_le_bytes().as_slice(),
        config.member_id.0.to_le_bytes().as_slice(),
        metadata.boots.to_le_bytes().as_slice(),
    ]);
    let rng = ChaCha8Rng::seed_from_u64(rng_seed);
    metrics.revision.store(store.revision(), Ordering::Relaxed);
    metrics
        .db_size_bytes
        .store(store.size_bytes(), Ordering::Relaxed);
    metrics
        .wal_size_bytes
        .store(log_store.size_bytes(), Ordering::Relaxed);
    let ticks_in = |interval: Duration| {
        let ticks = interval.as_millis() / config.tick_interval.as_millis().max(1);
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
    };
    let checkpoint_ticks = ticks_in(LEASE_CHECKPOINT_INTERVAL);
    let progress_notify_ticks = ticks_in(WATCH_PROGRESS_NOTIFY_INTERVAL);
    let driver = Driver {
        raft,
        store,
        watch_hub: WatchHub::default(),
        log_store,
        transport,
        transport_events,
        requests,
        requests_open: true,
        members,
        metrics,
        kv_config,
        clock_origin: Instant::now(),
        rng,
        request_id_base: (member_prefix << 48) | ((metadata.boots & 0xffff) << 32),
        request_counter: 0,
        role: Role::Follower,
        leader: None,
        term: Term(0),
        applied_index,
        snapshot_index: applied_index,
        pending_proposals: BTreeMap::new(),
        proposal_deadlines: VecDeque::new(),
        reads_unsent: Vec::new(),
        reads_in_flight: BTreeMap::new(),
        reads_awaiting_apply: Vec::new(),
        pending_forwards: BTreeMap::new(),
        pending_conf_changes: Vec::new(),
        pending_leader_moves: Vec::new(),
        shutdown: None,
        lease_revokes_pending: BTreeMap::new(),
        ticks: 0,
        checkpoint_ticks,
        progress_notify_ticks,
        next_publish_tick: 0,
        watch_streams: BTreeMap::new(),
        next_stream_id: 1,
        more_work: false,
        removed: false,
        config,
    };
    let join = tokio::task::spawn(driver.run());
    Ok((handle, NodeTask { join }))
}

/// Starts a node on the write-ahead log in `config.data_dir` on `disk`.
pub async fn start_on_disk(
    config: NodeConfig,
    disk: Arc<dyn Disk>,
) -> Result<(NodeHandle, NodeTask), StartError> {
    let (storage, recovery) = open_raft_storage(disk, &config.data_dir)?;
    start(config, Box::new(storage), recovery).await
}

/// Checks the data dir's identity and counts this start.
fn read_metadata(config: &NodeConfig, recovery: &Recovery) -> Result<NodeMetadata, StartError> {
    if recovery.metadata.is_empty() {
        return Ok(NodeMetadata {
            member_id: config.member_id.0,
            cluster_id: config.cluster_id,
            boots: 1,
        });
    }
    let found =
        NodeMetadata::decode(&recovery.metadata).map_err(|error| StartError::CorruptMetadata {
            reason: error.to_string(),
        })?;
    if found.member_id != config.member_id.0 || found.cluster_id != config.cluster_id {
        return Err(StartError::WrongDataDir {
            found_member: found.member_id,
            found_cluster: found.cluster_id,
            member: config.member_id.0,
            cluster: config.cluster_id,
        });
    }
    Ok(NodeMetadata {
        boots: found.boots + 1,
        ..found
    })
}

/// Lets the transport reach a member added (or moved) by `entry`.
fn add_peer_from_entry(transport: &mut Transport, entry: &Entry) {
    if entry.kind != EntryKind::ConfChange {
        return;
    }
    let Ok(change) = bincode::deserialize::<ConfChange>(&entry.data) else {
        return;
    };
    match change {
        ConfChange::AddVoter { id, context }
        | ConfChange::AddLearner { id, context }
        | ConfChange::UpdateNode { id, context } => {
            if let Ok(member) = bincode::deserialize::<Member>(&context) {
                transport.add_peer(id, member.peer_urls);
            }
        }
        ConfChange::PromoteLearner { .. } | ConfChange::RemoveNode { .. } => {}
    }
}

/// A client proposal awaiting its apply.
#[derive(Debug)]
struct ProposalWaiter {
    /// Compared on apply: a request ID alone could collide with another
    /// member's (16 bits of member prefix).
    command: Command,
    reply: Reply<(ResponseHeader, CommandResponse)>,
}

/// Reads sharing one ReadIndex round.
#[derive(Debug)]
struct ReadBatch {
    reads: Vec<ReadRequest>,
    deadline: Instant,
}

/// The reply channel of a request forwarded to the leader.
#[derive(Debug)]
enum ForwardReply {
    KeepAlive(Reply<(ResponseHeader, i64)>),
    TimeToLive(Reply<(ResponseHeader, cairn_core::kv::LeaseTimeToLiveResponse)>),
}

impl ForwardReply {
    fn fail(self, error: NodeError) {
        match self {
            ForwardReply::KeepAlive(reply) => drop(reply.send(Err(error))),
            ForwardReply::TimeToLive(reply) => drop(reply.send(Err(error))),
        }
    }
}

#[derive(Debug)]
struct ForwardWaiter {
    reply: ForwardReply,
    deadline: Instant,
}

/// A membership change awaiting its apply.
#[derive(Debug)]
struct ConfChangeWaiter {
    change: ConfChange,
    member: Member,
    reply: Reply<(ResponseHeader, Member, Vec<Member>)>,
    deadline: Instant,
}

/// A MoveLeader awaiting the new leader.
#[derive(Debug)]
struct LeaderMoveWaiter {
    target: NodeId,
    reply: Reply<ResponseHeader>,
    deadline: Instant,
}

/// A graceful shutdown in progress.
#[derive(Debug)]
struct ShutdownState {
    replies: Vec<Reply<()>>,
    /// Stop at this time even if leadership did not move.
    deadline: Instant,
}

/// How a turn of the loop ended.
enum Turn {
    Continue,
    Stop,
}

struct Driver {
    config: NodeConfig,
    raft: Raft,
    store: KvStore,
    watch_hub: WatchHub,
    log_store: Box<dyn LogStore>,
    transport: Transport,
    transport_events: mpsc::Receiver<TransportEvent>,
    requests: mpsc::Receiver<NodeRequest>,
    /// False once every handle is gone; the node keeps serving its peers.
    requests_open: bool,
    members: MemberTable,
    metrics: Arc<NodeMetrics>,
    kv_config: KvConfig,
    clock_origin: Instant,
    rng: ChaCha8Rng,
    /// Member prefix (16 bits) and boot count (16 bits) in the high half.
    request_id_base: u64,
    request_counter: u64,
    role: Role,
    leader: Option<NodeId>,
    term: Term,
    /// Invariant: applied_index only grows, and is what the store reflects.
    applied_index: Index,
    /// The index of the latest snapshot taken or installed.
    snapshot_index: Index,
    pending_proposals: BTreeMap<u64, ProposalWaiter>,
    /// (deadline, request ID) in proposal order; deadlines grow with it.
    proposal_deadlines: VecDeque<(Instant, u64)>,
    reads_unsent: Vec<ReadRequest>,
    reads_in_flight: BTreeMap<u64, ReadBatch>,
    /// Reads whose read index is known, in ReadState order.
    reads_awaiting_apply: Vec<(Index, ReadBatch)>,
    pending_forwards: BTreeMap<u64, ForwardWaiter>,
    pending_conf_changes: Vec<ConfChangeWaiter>,
    pending_leader_moves: Vec<LeaderMoveWaiter>,
    shutdown: Option<ShutdownState>,
    /// Leases this leader proposed to revoke, with when to try again.
    lease_revokes_pending: BTreeMap<LeaseId, Instant>,
    ticks: u64,
    checkpoint_ticks: u64,
    progress_notify_ticks: u64,
    next_publish_tick: u64,
    /// Each watch stream's channel to its session.
    watch_streams: BTreeMap<StreamId, mpsc::Sender<WatchResponse>>,
    next_stream_id: StreamId,
    /// A bound cut a turn short; start the next one without waiting.
    more_work: bool,
    /// This member was removed from the cluster.
    removed: bool,
}

impl Driver {
    async fn run(mut self) -> Result<(), NodeFailure> {
        let result = self.run_loop().await;
        match &result {
            Ok(()) => info!(member = %self.config.member_id, "node stopped"),
            Err(failure) => error!(member = %self.config.member_id, %failure, "node failed"),
        }
        self.fail_all(NodeError::Stopped);
        if let Some(shutdown) = self.shutdown.take() {
            for reply in shutdown.replies {
                let _ = reply.send(Ok(()));
            }
        }
        result
    }

    async fn run_loop(&mut self) -> Result<(), NodeFailure> {
        let mut ticker = tokio::time::interval(self.config.tick_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first tick of an interval fires at once; skip it.
        ticker.tick().await;
        // The first Ready (e.g. the bootstrap snapshot) needs no event.
        if let Turn::Stop = self.process_readies()? {
            return Ok(());
        }
        loop {
            let more_work = std::mem::take(&mut self.more_work);
            tokio::select! {
                _ = ticker.tick() => self.on_tick(),
                event = self.transport_events.recv() => {
                    if let Some(event) = event {
                        self.on_transport_event(event);
                    }
                }
                request = self.requests.recv(), if self.requests_open => match request {
                    Some(request) => self.on_request(request),
                    None => {
                        debug!("every node handle is gone; serving peers only");
                        self.requests_open = false;
                    }
                },
                () = std::future::ready(()), if more_work => {}
            }
            self.drain_queued_events();
            self.flush_reads();
            if let Turn::Stop = self.process_readies()? {
                return Ok(());
            }
            self.route_watch_responses();
            if self.should_stop() {
                return Ok(());
            }
        }
    }

    /// Takes what else is already queued, so one Ready covers it all.
    fn drain_queued_events(&mut self) {
        for _ in 0..EVENTS_PER_TURN_MAX {
            let mut progressed = false;
            if let Ok(event) = self.transport_events.try_recv() {
                self.on_transport_event(event);
                progressed = true;
            }
            if self.requests_open {
                if let Ok(request) = self.requests.try_recv() {
                    self.on_request(request);
                    progressed = true;
                }
            }
            if !progressed {
                return;
            }
        }
        self.more_work = true;
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock_origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.config.request_timeout
    }

    fn header(&self) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.config.cluster_id,
            member_id: self.config.member_id.0,
            revision: self.store.revision(),
            raft_term: self.term.0,
        }
    }

    fn next_request_id(&mut self) -> u64 {
        self.request_counter = (self.request_counter + 1) & 0xffff_ffff;
        self.request_id_base | self.request_counter
    }

    fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }

    // ----- events -----

    fn on_tick(&mut self) {
        self.ticks += 1;
        self.raft.tick();
        self.expire_waiters();
        if self.is_leader() {
            self.revoke_expired_leases();
            if self.ticks.is_multiple_of(self.checkpoint_ticks) {
                self.checkpoint_leases();
            }
        }
        self.publish_member_attributes();
        if self.ticks.is_multiple_of(self.progress_notify_ticks) {
            self.watch_hub.progress_notify_all(&self.store);
        }
        self.metrics
            .peer_messages_dropped
            .store(self.transport.dropped_messages(), Ordering::Relaxed);
    }

    fn on_transport_event(&mut self, event: TransportEvent) {
        match event {
            TransportEvent::Received { from, message } => match message {
                PeerMessage::Raft(message) => {
                    trace!(from = %from, ?message.body, "peer message");
                    self.raft.step(message);
                }
                PeerMessage::Request {
                    request_id,
                    request,
                } => self.on_peer_request(from, request_id, request),
                PeerMessage::Response {
                    request_id,
                    response,
                } => self.on_peer_response(request_id, response),
            },
            TransportEvent::Unreachable { peer } => {
                debug!(peer = %peer, "peer unreachable");
                self.raft.report_unreachable(peer);
            }
        }
    }

    fn on_request(&mut self, request: NodeRequest) {
        match request {
            NodeRequest::Propose { command, reply } => self.propose(command, reply),
            NodeRequest::Read { serializable, read } => {
                if serializable {
                    self.answer_read(read);
                } else {
                    self.reads_unsent.push(read);
                }
            }
            NodeRequest::LeaseKeepAlive { id, reply } => {
                if self.is_leader() {
                    let result = self.lease_keep_alive_locally(id);
                    let header = self.header();
                    let _ = reply.send(result.map(|ttl| (header, ttl)).map_err(NodeError::from));
                } else {
                    let request = PeerRequest::LeaseKeepAlive { id };
                    self.forward(request, ForwardReply::KeepAlive(reply));
                }
            }
            NodeRequest::LeaseTimeToLive { id, keys, reply } => {
                if self.is_leader() {
                    let response = self.store.lease_time_to_live(id, keys, self.now_ms());
                    let _ = reply.send(Ok((self.header(), response)));
                } else {
                    let request = PeerRequest::LeaseTimeToLive { id, keys };
                    self.forward(request, ForwardReply::TimeToLive(reply));
                }
            }
            NodeRequest::WatchOpen { reply } => {
                let stream = self.next_stream_id;
                self.next_stream_id += 1;
                let (sender, receiver) = mpsc::channel(WATCH_STREAM_CHANNEL_MAX);
                self.watch_streams.insert(stream, sender);
                debug!(stream, "watch stream opened");
                let _ = reply.send(Ok((stream, receiver)));
            }
            NodeRequest::WatchCreate {
                stream,
                request,
                reply,
            } => {
                if !self.watch_streams.contains_key(&stream) {
                    let _ = reply.send(Err(NodeError::Stopped));
                    return;
                }
                let result = self.watch_hub.create(&self.store, stream, request);
                trace!(stream, ?result, "watch create");
                let _ = reply.send(result.map(|_| ()).map_err(NodeError::from));
            }
            NodeRequest::WatchCancel {
                stream,
                watch_id,
                reply,
            } => {
                self.watch_hub.cancel(stream, watch_id);
                let _ = reply.send(Ok(()));
            }
            NodeRequest::WatchProgress { stream, reply } => {
                self.watch_hub.request_progress(&self.store, stream);
                let _ = reply.send(Ok(()));
            }
            NodeRequest::ChangeMembers { change, reply } => self.change_members(change, reply),
            NodeRequest::Status { reply } => {
                let _ = reply.send(Ok(self.status()));
            }
            NodeRequest::HashKv { revision, reply } => {
                let result = self.store.hash_kv(revision);
                let header = self.header();
                let _ = reply.send(
                    result
                        .map(|(hash, compact_revision)| (header, hash, compact_revision))
                        .map_err(NodeError::from),
                );
            }
            NodeRequest::Snapshot { reply } => {
                let data = SnapshotData {
                    kv: self.store.snapshot(),
                    members: self.members.clone(),
                };
                let _ = reply.send(Ok((self.header(), data.encode())));
            }
            NodeRequest::MoveLeader { target, reply } => self.move_leader(target, reply),
            NodeRequest::Shutdown { reply } => self.begin_shutdown(reply),
        }
    }

    // ----- writes -----

    fn propose(&mut self, mut command: Command, reply: Reply<(ResponseHeader, CommandResponse)>) {
        if let Err(error) = self.store.validate(&command) {
            debug!(%error, "proposal refused by validation");
            self.metrics
                .proposals_failed
                .fetch_add(1, Ordering::Relaxed);
            let _ = reply.send(Err(NodeError::Kv(error)));
            return;
        }
        if let Command::LeaseGrant(grant) = &mut command {
            if grant.id == 0 {
                match self.fresh_lease_id() {
                    Some(id) => grant.id = id,
                    None => {
                        let _ = reply.send(Err(NodeError::Kv(KvError::LeaseExists)));
                        return;
                    }
                }
            }
        }
        let request_id = self.next_request_id();
        let envelope = Envelope {
            request_id,
            command: command.clone(),
        };
        let data = encode_envelope(&envelope);
        match self.raft.propose(data) {
            Ok(()) => {
                trace!(request_id, "proposed");
                self.pending_proposals
                    .insert(request_id, ProposalWaiter { command, reply });
                let deadline = self.deadline();
                self.proposal_deadlines.push_back((deadline, request_id));
                self.update_pending_metric();
            }
            Err(error) => {
                debug!(request_id, %error, "proposal refused by raft");
                self.metrics
                    .proposals_failed
                    .fetch_add(1, Ordering::Relaxed);
                let _ = reply.send(Err(propose_error(error)));
            }
        }
    }

    /// Proposes a command on the node's own behalf (lease expiry and
    /// checkpoints); nobody waits for it.
    fn propose_internal(&mut self, command: Command) -> bool {
        let request_id = self.next_request_id();
        let data = encode_envelope(&Envelope {
            request_id,
            command,
        });
        match self.raft.propose(data) {
            Ok(()) => true,
            Err(error) => {
                debug!(%error, "internal proposal refused");
                false
            }
        }
    }

    /// A random positive lease ID not in use, from the seeded RNG.
    fn fresh_lease_id(&mut self) -> Option<LeaseId> {
        let now_ms = self.now_ms();
        for _ in 0..LEASE_ID_ATTEMPTS_MAX {
            let id: LeaseId = self.rng.gen_range(1..=i64::MAX);
            if self.store.lease_time_to_live(id, false, now_ms).ttl == -1 {
                return Some(id);
            }
        }
        None
    }

    fn update_pending_metric(&self) {
        let pending = self.pending_proposals.len() + self.pending_conf_changes.len();
        self.metrics
            .proposals_pending
            .store(pending as u64, Ordering::Relaxed);
    }

    // ----- leases -----

    fn lease_keep_alive_locally(&mut self, id: LeaseId) -> Result<i64, KvError> {
        match self.store.lease_renew(id, self.now_ms()) {
            Ok(ttl) => Ok(ttl),
            // etcd answers a keep-alive of an unknown lease with TTL 0.
            Err(KvError::LeaseNotFound) => Ok(0),
            Err(error) => Err(error),
        }
    }

    fn forward(&mut self, request: PeerRequest, reply: ForwardReply) {
        let Some(leader) = self.leader else {
            reply.fail(NodeError::NoLeader);
            return;
        };
        let request_id = self.next_request_id();
        let message = PeerMessage::Request {
            request_id,
            request,
        };
        if let Err(error) = self.transport.send(leader, message) {
            debug!(%error, "cannot forward to the leader");
            reply.fail(NodeError::NoLeader);
            return;
        }
        let deadline = self.deadline();
        self.pending_forwards
            .insert(request_id, ForwardWaiter { reply, deadline });
    }

    fn on_peer_request(&mut self, from: NodeId, request_id: u64, request: PeerRequest) {
        let response = match request {
            PeerRequest::LeaseKeepAlive { id } => {
                PeerResponse::LeaseKeepAlive(if self.is_leader() {
                    self.lease_keep_alive_locally(id).map_err(PeerError::from)
                } else {
                    Err(PeerError::NotLeader)
                })
            }
            PeerRequest::LeaseTimeToLive { id, keys } => {
                PeerResponse::LeaseTimeToLive(if self.is_leader() {
                    Ok(self.store.lease_time_to_live(id, keys, self.now_ms()))
                } else {
                    Err(PeerError::NotLeader)
                })
            }
        };
        let message = PeerMessage::Response {
            request_id,
            response,
        };
        if let Err(error) = self.transport.send(from, message) {
            debug!(peer = %from, %error, "cannot answer a forwarded request");
        }
    }

    fn on_peer_response(&mut self, request_id: u64, response: PeerResponse) {
        let Some(waiter) = self.pending_forwards.remove(&request_id) else {
            trace!(request_id, "late or unknown forwarded response");
            return;
        };
        let header = self.header();
        let to_node_error = |error: PeerError| match error {
            PeerError::NotLeader => NodeError::LeaderChanged,
            PeerError::Kv(error) => NodeError::Kv(error),
        };
        match (waiter.reply, response) {
            (ForwardReply::KeepAlive(reply), PeerResponse::LeaseKeepAlive(result)) => {
                let _ = reply.send(result.map(|ttl| (header, ttl)).map_err(to_node_error));
            }
            (ForwardReply::TimeToLive(reply), PeerResponse::LeaseTimeToLive(result)) => {
                let _ = reply.send(result.map(|ttl| (header, ttl)).map_err(to_node_error));
            }
            (reply, response) => {
                warn!(
                    request_id,
                    ?response,
                    "forwarded response of the wrong kind"
                );
                reply.fail(NodeError::LeaderChanged);
            }
        }
    }

    fn revoke_expired_leases(&mut self) {
        let now = Instant::now();
        let expired = self.store.lease_expired(self.now_ms());
        let mut proposed = 0;
        for id in expired {
            if proposed == LEASE_REVOKES_PER_TICK_MAX {
                break;
            }
            if self
                .lease_revokes_pending
                .get(&id)
                .is_some_and(|&retry| retry > now)
            {
                continue;
            }
            if self.propose_internal(Command::LeaseRevoke { id }) {
                debug!(lease = id, "lease expired; revoking");
                self.lease_revokes_pending.insert(id, self.deadline());
                proposed += 1;
            }
        }
    }

    fn checkpoint_leases(&mut self) {
        let checkpoints: Vec<LeaseCheckpoint> = self.store.lease_checkpoints(self.now_ms());
        for chunk in checkpoints.chunks(LEASE_CHECKPOINTS_PER_ENTRY_MAX) {
            let command = Command::LeaseCheckpoint {
                checkpoints: chunk.to_vec(),
            };
            if !self.propose_internal(command) {
                return;
            }
        }
    }

    // ----- reads -----

    /// Starts one ReadIndex round for every read queued this turn.
    fn flush_reads(&mut self) {
        if self.reads_unsent.is_empty() {
            return;
        }
        let reads = std::mem::take(&mut self.reads_unsent);
        let batch_id = self.next_request_id();
        match self.raft.read_index(batch_id.to_be_bytes().to_vec()) {
            Ok(()) => {
                let deadline = self.deadline();
                trace!(batch_id, reads = reads.len(), "read index requested");
                self.reads_in_flight
                    .insert(batch_id, ReadBatch { reads, deadline });
            }
            Err(error) => {
                let error = propose_error(error);
                for read in reads {
                    read.fail(error.clone());
                }
            }
        }
    }

    fn on_read_states(&mut self, read_states: Vec<ReadState>) {
        for read_state in read_states {
            let Ok(bytes) = <[u8; 8]>::try_from(read_state.context.as_slice()) else {
                warn!(context = ?read_state.context, "read state with a foreign context");
                continue;
            };
            let batch_id = u64::from_be_bytes(bytes);
            if let Some(batch) = self.reads_in_flight.remove(&batch_id) {
                self.reads_awaiting_apply.push((read_state.index, batch));
            }
        }
    }

    /// Answers the reads whose read index is applied.
    fn answer_applied_reads(&mut self) {
        let applied = self.applied_index;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_awaiting_apply)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.reads_awaiting_apply = waiting;
        for (_, batch) in ready {
            for read in batch.reads {
                self.answer_read(read);
            }
        }
    }

    fn answer_read(&mut self, read: ReadRequest) {
        let header = self.header();
        match read {
            ReadRequest::Range { request, reply } => {
                let result = self.store.range(&request).map_err(NodeError::from);
                let _ = reply.send(result.map(|response| (header, response)));
            }
            ReadRequest::LeaseLeases { reply } => {
                let _ = reply.send(Ok((header, self.store.leases())));
            }
            ReadRequest::MemberList { reply } => {
                let _ = reply.send(Ok((header, self.members.values().cloned().collect())));
            }
        }
    }

    // ----- membership -----

    fn change_members(
        &mut self,
        change: MemberChange,
        reply: Reply<(ResponseHeader, Member, Vec<Member>)>,
    ) {
        let prepared = self.prepare_conf_change(change);
        let (conf_change, member) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        };
        info!(change = ?conf_change_summary(&conf_change), "proposing membership change");
        match self.raft.propose_conf_change(conf_change.clone()) {
            Ok(()) => {
                let deadline = self.deadline();
                self.pending_conf_changes.push(ConfChangeWaiter {
                    change: conf_change,
                    member,
                    reply,
                    deadline,
                });
                self.update_pending_metric();
            }
            Err(ProposeError::ConfChangePending) => {
                // etcd's raft drops a second concurrent change and the
                // client times out; say so at once.
                let _ = reply.send(Err(NodeError::Timeout));
            }
            Err(ProposeError::ConfChangeRefused { reason }) => {
                info!(%reason, "membership change refused by raft");
                let error = match conf_change {
                    ConfChange::AddVoter { .. } | ConfChange::AddLearner { .. } => {
                        NodeError::MemberIdExists
                    }
                    ConfChange::RemoveNode { .. } => NodeError::NotEnoughStartedMembers,
                    ConfChange::PromoteLearner { .. } => NodeError::MemberNotLearner,
                    ConfChange::UpdateNode { .. } => NodeError::MemberNotFound,
                };
                let _ = reply.send(Err(error));
            }
            Err(error) => {
                let _ = reply.send(Err(propose_error(error)));
            }
        }
    }

    /// Checks a membership change against the table and builds its entry.
    fn prepare_conf_change(
        &mut self,
        change: MemberChange,
    ) -> Result<(ConfChange, Member), NodeError> {
        match change {
            MemberChange::Add {
                peer_urls,
                is_learner,
            } => {
                if member_using_peer_url(&self.members, &peer_urls, None).is_some() {
                    return Err(NodeError::PeerUrlExists);
                }
                let id = member_id_for(&peer_urls, &self.config.cluster_token);
                if self.members.contains_key(&id.0) {
                    return Err(NodeError::MemberIdExists);
                }
                let member = Member {
                    id: id.0,
                    name: String::new(),
                    peer_urls,
                    client_urls: Vec::new(),
                    is_learner,
                };
                let context = encode_member(&member);
                // The leader will start sending to it before the entry applies.
                self.transport.add_peer(id, member.peer_urls.clone());
                let change = if is_learner {
                    ConfChange::AddLearner { id, context }
                } else {
                    ConfChange::AddVoter { id, context }
                };
                Ok((change, member))
            }
            MemberChange::Remove { id } => {
                let member = self
                    .members
                    .get(&id)
                    .ok_or(NodeError::MemberNotFound)?
                    .clone();
                Ok((ConfChange::RemoveNode { id: NodeId(id) }, member))
            }
            MemberChange::Update { id, peer_urls } => {
                let mut member = self
                    .members
                    .get(&id)
                    .ok_or(NodeError::MemberNotFound)?
                    .clone();
                if member_using_peer_url(&self.members, &peer_urls, Some(id)).is_some() {
                    return Err(NodeError::PeerUrlExists);
                }
                member.peer_urls = peer_urls;
                let context = encode_member(&member);
                Ok((
                    ConfChange::UpdateNode {
                        id: NodeId(id),
                        context,
                    },
                    member,
                ))
            }
            MemberChange::Promote { id } => {
                let member = self
                    .members
                    .get(&id)
                    .ok_or(NodeError::MemberNotFound)?
                    .clone();
                if !member.is_learner {
                    return Err(NodeError::MemberNotLearner);
                }
                if self.is_leader() && !self.learner_is_ready(NodeId(id)) {
                    return Err(NodeError::LearnerNotReady);
                }
                Ok((ConfChange::PromoteLearner { id: NodeId(id) }, member))
            }
        }
    }

    /// etcd's rule: a learner may be promoted once its match index is at
    /// least 90% of the leader's.
    fn learner_is_ready(&self, id: NodeId) -> bool {
        let status = self.raft.status();
        let leader_match = status
            .match_index
            .get(&self.config.member_id)
            .copied()
            .unwrap_or(status.last_index);
        let learner_match = status.match_index.get(&id).copied().unwrap_or(Index(0));
        learner_match.0 * 10 >= leader_match.0 * 9
    }

    /// Publishes this member's name and client URLs into the replicated
    /// member table (etcd's "publish"), retrying until they are there.
    fn publish_member_attributes(&mut self) {
        if self.leader.is_none() || self.ticks < self.next_publish_tick || self.removed {
            return;
        }
        let id = self.config.member_id;
        let Some(current) = self.members.get(&id.0) else {
            return;
        };
        if current.name == self.config.name
            && current.client_urls == self.config.advertise_client_urls
        {
            return;
        }
        let member = Member {
            name: self.config.name.clone(),
            client_urls: self.config.advertise_client_urls.clone(),
            ..current.clone()
        };
        let change = ConfChange::UpdateNode {
            id,
            context: encode_member(&member),
        };
        let result = self.raft.propose_conf_change(change);
        debug!(?result, "publishing member attributes");
        // Retry after about an election timeout, jittered so members that
        // start together do not collide on the one-change-at-a-time rule.
        let jitter = self.rng.gen_range(0..=self.config.election_timeout_ticks);
        self.next_publish_tick = self.ticks + self.config.election_timeout_ticks + jitter;
    }

    fn apply_conf_change(&mut self, index: Index, change: ConfChange) {
        info!(index = index.0, change = ?conf_change_summary(&change), "membership change applied");
        match &change {
            ConfChange::AddVoter { id, context } | ConfChange::AddLearner { id, context } => {
                let mut member = decode_member(*id, context);
                member.is_learner = matches!(change, ConfChange::AddLearner { .. });
                self.transport.add_peer(*id, member.peer_urls.clone());
                self.members.insert(id.0, member);
            }
            ConfChange::PromoteLearner { id } => {
                if let Some(member) = self.members.get_mut(&id.0) {
                    member.is_learner = false;
                }
            }
            ConfChange::RemoveNode { id } => {
                self.members.remove(&id.0);
                self.transport.remove_peer(*id);
                if *id == self.config.member_id {
                    warn!("this member was removed from the cluster; stopping");
                    self.removed = true;
                }
            }
            ConfChange::UpdateNode { id, context } => {
                let mut member = decode_member(*id, context);
                if let Some(current) = self.members.get(&id.0) {
                    member.is_learner = current.is_learner;
                }
                self.transport.add_peer(*id, member.peer_urls.clone());
                self.members.insert(id.0, member);
            }
        }
        let is_learner = self
            .members
            .get(&self.config.member_id.0)
            .is_some_and(|member| member.is_learner);
        self.metrics.is_learner.store(is_learner, Ordering::Relaxed);
        if let Some(position) = self
            .pending_conf_changes
            .iter()
            .position(|w| w.change == change)
        {
            let waiter = self.pending_conf_changes.remove(position);
            let member = match &change {
                ConfChange::RemoveNode { .. } => waiter.member,
                _ => self
                    .members
                    .get(&waiter.member.id)
                    .cloned()
                    .unwrap_or(waiter.member),
            };
            let members = self.members.values().cloned().collect();
            let _ = waiter.reply.send(Ok((self.header(), member, members)));
            self.update_pending_metric();
        }
    }

    // ----- leadership -----

    fn move_leader(&mut self, target: NodeId, reply: Reply<ResponseHeader>) {
        if !self.is_leader() {
            let _ = reply.send(Err(NodeError::NotLeader));
            return;
        }
        if target == self.config.member_id {
            let _ = reply.send(Ok(self.header()));
            return;
        }
        if !self.raft.status().conf_state.voters.contains(&target) {
            let _ = reply.send(Err(NodeError::BadLeaderTransferee));
            return;
        }
        info!(target = %target, "moving leadership");
        self.raft.transfer_leader(target);
        let deadline = self.deadline();
        self.pending_leader_moves.push(LeaderMoveWaiter {
            target,
            reply,
            deadline,
        });
    }

    fn begin_shutdown(&mut self, reply: Reply<()>) {
        if let Some(shutdown) = &mut self.shutdown {
            shutdown.replies.push(reply);
            return;
        }
        let timeout = SHUTDOWN_TRANSFER_TIMEOUT.min(self.config.request_timeout);
        let mut shutdown = ShutdownState {
            replies: vec![reply],
            deadline: Instant::now() + timeout,
        };
        if self.is_leader() {
            let status = self.raft.status();
            // The most up-to-date other voter; ties go to the lowest ID.
            let target = status
                .conf_state
                .voters
                .iter()
                .filter(|&&id| id != self.config.member_id)
                .map(|&id| (status.match_index.get(&id).copied().unwrap_or(Index(0)), id))
                .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            if let Some((match_index, target)) = target {
                info!(target = %target, match_index = match_index.0,
                    "shutting down: transferring leadership");
                self.raft.transfer_leader(target);
            } else {
                shutdown.deadline = Instant::now();
            }
        } else {
            shutdown.deadline = Instant::now();
        }
        self.shutdown = Some(shutdown);
    }

    fn should_stop(&self) -> bool {
        if self.removed {
            return true;
        }
        match &self.shutdown {
            Some(shutdown) => !self.is_leader() || Instant::now() >= shutdown.deadline,
            None => false,
        }
    }

    fn on_soft_state(&mut self, leader: Option<NodeId>, role: Role) {
        let was_leader = self.is_leader();
        if leader != self.leader {
            if leader.is_some() {
                self.metrics.leader_changes.fetch_add(1, Ordering::Relaxed);
            }
            info!(leader = ?leader.map(|id| id.to_string()), term = self.term.0, "leader changed");
            // A ReadIndex round may never complete under a new leader.
            for (_, batch) in std::mem::take(&mut self.reads_in_flight) {
                for read in batch.reads {
                    read.fail(NodeError::LeaderChanged);
                }
            }
            let header = self.header();
            let (moved, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_leader_moves)
                .into_iter()
                .partition(|waiter| Some(waiter.target) == leader);
            self.pending_leader_moves = waiting;
            for waiter in moved {
                let _ = waiter.reply.send(Ok(header));
            }
        }
        if role != self.role {
            info!(role = ?role, term = self.term.0, "role changed");
        }
        self.leader = leader;
        self.role = role;
        let is_leader = self.is_leader();
        if is_leader && !was_leader {
            self.store.lease_promote(self.now_ms());
        } else if was_leader && !is_leader {
            self.store.lease_demote();
            self.lease_revokes_pending.clear();
        }
        self.metrics
            .has_leader
            .store(leader.is_some(), Ordering::Relaxed);
        self.metrics.is_leader.store(is_leader, Ordering::Relaxed);
    }

    // ----- the Ready -----

    fn process_readies(&mut self) -> Result<Turn, NodeFailure> {
        for _ in 0..READIES_PER_TURN_MAX {
            let Some(ready) = self.raft.ready() else {
                return Ok(if self.removed {
                    Turn::Stop
                } else {
                    Turn::Continue
                });
            };
            self.process_ready(ready)?;
            self.maybe_snapshot()?;
        }
        self.more_work = true;
        Ok(Turn::Continue)
    }

    fn process_ready(&mut self, mut ready: Ready) -> Result<(), NodeFailure> {
        self.term = ready.term;
        self.metrics.term.store(ready.term.0, Ordering::Relaxed);
        if let Some(soft_state) = ready.soft_state {
            self.on_soft_state(soft_state.leader, soft_state.role);
        }

        // Duty 1: persist, with one write and one fsync.
        if ready.must_sync() {
            let started = Instant::now();
            self.log_store.persist(
                ready.hard_state.as_ref(),
                &ready.entries,
                ready.snapshot.as_ref(),
            )?;
            self.metrics.fsync_durations.observe(started.elapsed());
            self.metrics
                .wal_size_bytes
                .store(self.log_store.size_bytes(), Ordering::Relaxed);
        }
        for entry in &ready.entries {
            add_peer_from_entry(&mut self.transport, entry);
        }
        if let Some(snapshot) = &ready.snapshot {
            self.install_snapshot(snapshot)?;
        }

        // Duty 2: send, now that what the messages depend on is durable.
        for message in std::mem::take(&mut ready.messages) {
            let to = message.to;
            match self.transport.send(to, PeerMessage::Raft(message)) {
                Ok(()) => {}
                Err(SendError::UnknownPeer { peer }) => {
                    debug!(peer = %peer, "no address for peer");
                    self.raft.report_unreachable(peer);
                }
                Err(error @ SendError::QueueFull { .. }) => debug!(%error, "message dropped"),
            }
        }

        // Duty 3: apply.
        // advance() reads the last committed entry to learn what was applied:
        // hand the entries back after applying them.
        let committed_entries = std::mem::take(&mut ready.committed_entries);
        for entry in &committed_entries {
            self.apply_entry(entry)?;
        }
        ready.committed_entries = committed_entries;
        self.metrics
            .proposals_committed
            .store(self.raft_commit_hint(&ready), Ordering::Relaxed);
        self.metrics
            .proposals_applied
            .store(self.applied_index.0, Ordering::Relaxed);
        self.metrics
            .revision
            .store(self.store.revision(), Ordering::Relaxed);

        // Duty 4: reads.
        self.on_read_states(std::mem::take(&mut ready.read_states));
        self.answer_applied_reads();

        self.raft.advance(ready);
        Ok(())
    }

    /// The commit index as the latest hard state says, else what is applied.
    fn raft_commit_hint(&self, ready: &Ready) -> u64 {
        match &ready.hard_state {
            Some(hard_state) => hard_state.commit.0,
            None => self
                .metrics
                .proposals_committed
                .load(Ordering::Relaxed)
                .max(self.applied_index.0),
        }
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), NodeFailure> {
        let index = snapshot.metadata.index;
        if snapshot.data.is_empty() {
            // The bootstrap snapshot of a new cluster: configuration only.
            return Ok(());
        }
        if index <= self.applied_index {
            debug!(
                index = index.0,
                applied = self.applied_index.0,
                "stale snapshot ignored"
            );
            return Ok(());
        }
        let corrupt = |reason: String| NodeFailure::CorruptSnapshot { index, reason };
        let data = SnapshotData::decode(&snapshot.data).map_err(|e| corrupt(e.to_string()))?;
        let store = KvStore::restore(self.kv_config.clone(), &data.kv)
            .map_err(|e| corrupt(e.to_string()))?;
        info!(
            index = index.0,
            term = snapshot.metadata.term.0,
            revision = store.revision(),
            "installing snapshot from the leader"
        );
        self.store = store;
        // Every watch catches up from the new store.
        self.watch_hub.on_store_reset(&self.store);
        if self.is_leader() {
            self.store.lease_promote(self.now_ms());
        }
        self.members = data.members;
        self.transport
            .set_peers(&peer_urls_by_member(&self.members, self.config.member_id));
        self.applied_index = index;
        self.snapshot_index = index;
        self.metrics.snapshots.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .db_size_bytes
            .store(self.store.size_bytes(), Ordering::Relaxed);
        Ok(())
    }

    fn apply_entry(&mut self, entry: &Entry) -> Result<(), NodeFailure> {
        assert!(
            entry.index > self.applied_index,
            "entry {} applied again (applied index {})",
            entry.index,
            self.applied_index
        );
        let index = entry.index;
        match entry.kind {
            EntryKind::Normal if entry.data.is_empty() => {
                trace!(index = index.0, "leader no-op applied");
            }
            EntryKind::Normal => {
                let envelope: Envelope = bincode::deserialize(&entry.data).map_err(|error| {
                    NodeFailure::CorruptEntry {
                        index,
                        reason: error.to_string(),
                    }
                })?;
                self.apply_command(index, envelope);
            }
            EntryKind::ConfChange => {
                let change: ConfChange = bincode::deserialize(&entry.data).map_err(|error| {
                    NodeFailure::CorruptEntry {
                        index,
                        reason: error.to_string(),
                    }
                })?;
                self.apply_conf_change(index, change);
            }
        }
        self.applied_index = index;
        Ok(())
    }

    fn apply_command(&mut self, index: Index, envelope: Envelope) {
        let applied = self.store.apply(&envelope.command, self.now_ms());
        trace!(
            index = index.0,
            request_id = envelope.request_id,
            revision = applied.revision,
            "applied"
        );
        if !applied.events.is_empty() {
            self.watch_hub.on_applied(&self.store, &applied.events);
        }
        if let Command::LeaseRevoke { id } = &envelope.command {
            self.lease_revokes_pending.remove(id);
        }
        let matches = self
            .pending_proposals
            .get(&envelope.request_id)
            .is_some_and(|waiter| waiter.command == envelope.command);
        if matches {
            if let Some(waiter) = self.pending_proposals.remove(&envelope.request_id) {
                let header = ResponseHeader {
                    cluster_id: self.config.cluster_id,
                    member_id: self.config.member_id.0,
                    revision: applied.revision,
                    raft_term: self.term.0,
                };
                if applied.response.is_err() {
                    self.metrics
                        .proposals_failed
                        .fetch_add(1, Ordering::Relaxed);
                }
                let result = applied.response.map(|response| (header, response));
                let _ = waiter.reply.send(result.map_err(NodeError::from));
                self.update_pending_metric();
            }
        }
    }

    /// Takes a snapshot and compacts the log every `snapshot_count` entries.
    fn maybe_snapshot(&mut self) -> Result<(), NodeFailure> {
        let applied = self.applied_index;
        if applied.0 < self.snapshot_index.0 + self.config.snapshot_count.max(1) {
            return Ok(());
        }
        let data = SnapshotData {
            kv: self.store.snapshot(),
            members: self.members.clone(),
        }
        .encode();
        self.raft.compact(applied, data);
        // The core fills the term and the configuration as of `applied`.
        let Some(snapshot) = self.raft.snapshot().cloned() else {
            panic!("no snapshot after compacting at {applied}");
        };
        assert!(
            snapshot.metadata.index == applied,
            "compacted at {applied}, snapshot at {}",
            snapshot.metadata.index
        );
        let started = Instant::now();
        self.log_store.save_snapshot(&snapshot)?;
        info!(
            index = applied.0,
            bytes = snapshot.data.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "snapshot taken"
        );
        self.snapshot_index = applied;
        self.metrics.snapshots.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .db_size_bytes
            .store(self.store.size_bytes(), Ordering::Relaxed);
        self.metrics
            .wal_size_bytes
            .store(self.log_store.size_bytes(), Ordering::Relaxed);
        Ok(())
    }

    // ----- watches -----

    /// Moves responses from the hub into each stream's channel, no more
    /// than the channel has room for: a slow client's watches stay queued
    /// (or fall back to catch-up) inside the hub instead of growing here.
    fn route_watch_responses(&mut self) {
        self.metrics
            .watch_streams
            .store(self.watch_streams.len() as u64, Ordering::Relaxed);
        self.metrics
            .watchers
            .store(self.watch_hub.watch_count() as u64, Ordering::Relaxed);
        if self.watch_streams.is_empty() {
            return;
        }
        let mut budget = WATCH_RESPONSES_PER_TURN_MAX;
        let mut delivered = false;
        let streams: Vec<StreamId> = self.watch_streams.keys().copied().collect();
        for stream in streams {
            let Some(sender) = self.watch_streams.get(&stream) else {
                continue;
            };
            if sender.is_closed() {
                debug!(stream, "watch stream closed");
                self.watch_streams.remove(&stream);
                self.watch_hub.close_stream(stream);
                continue;
            }
            let room = sender.capacity().min(budget);
            if room == 0 {
                continue;
            }
            let responses = self.watch_hub.poll_stream(&self.store, stream, room);
            budget -= responses.len();
            for response in responses {
                delivered = true;
                // Only this task sends on the channel, and it had room.
                if sender.try_send(response).is_err() {
                    debug!(stream, "watch stream closed while sending");
                    break;
                }
            }
        }
        if budget == 0 || (delivered && self.watch_hub.has_unsynced()) {
            self.more_work = true;
        }
    }

    // ----- timeouts -----

    fn expire_waiters(&mut self) {
        let now = Instant::now();
        while let Some(&(deadline, request_id)) = self.proposal_deadlines.front() {
            if deadline > now {
                break;
            }
            self.proposal_deadlines.pop_front();
            if let Some(waiter) = self.pending_proposals.remove(&request_id) {
                debug!(request_id, "proposal timed out");
                self.metrics
                    .proposals_failed
                    .fetch_add(1, Ordering::Relaxed);
                let _ = waiter.reply.send(Err(NodeError::Timeout));
            }
        }
        let expired: Vec<u64> = self
            .reads_in_flight
            .iter()
            .filter(|(_, batch)| batch.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            if let Some(batch) = self.reads_in_flight.remove(&id) {
                for read in batch.reads {
                    read.fail(NodeError::Timeout);
                }
            }
        }
        let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_awaiting_apply)
            .into_iter()
            .partition(|(_, batch)| batch.deadline <= now);
        self.reads_awaiting_apply = waiting;
        for (_, batch) in expired {
            for read in batch.reads {
                read.fail(NodeError::Timeout);
            }
        }
        let expired: Vec<u64> = self
            .pending_forwards
            .iter()
            .filter(|(_, waiter)| waiter.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            if let Some(waiter) = self.pending_forwards.remove(&id) {
                waiter.reply.fail(NodeError::Timeout);
            }
        }
        let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_conf_changes)
            .into_iter()
            .partition(|waiter| waiter.deadline <= now);
        self.pending_conf_changes = waiting;
        for waiter in expired {
            let _ = waiter.reply.send(Err(NodeError::Timeout));
        }
        let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_leader_moves)
            .into_iter()
            .partition(|waiter| waiter.deadline <= now);
        self.pending_leader_moves = waiting;
        for waiter in expired {
            let _ = waiter.reply.send(Err(NodeError::Timeout));
        }
        self.update_pending_metric();
    }

    /// Fails every waiter (the node is stopping).
    fn fail_all(&mut self, error: NodeError) {
        for (_, waiter) in std::mem::take(&mut self.pending_proposals) {
            let _ = waiter.reply.send(Err(error.clone()));
        }
        self.proposal_deadlines.clear();
        for read in std::mem::take(&mut self.reads_unsent) {
            read.fail(error.clone());
        }
        for (_, batch) in std::mem::take(&mut self.reads_in_flight) {
            for read in batch.reads {
                read.fail(error.clone());
            }
        }
        for (_, batch) in std::mem::take(&mut self.reads_awaiting_apply) {
            for read in batch.reads {
                read.fail(error.clone());
            }
        }
        for (_, waiter) in std::mem::take(&mut self.pending_forwards) {
            waiter.reply.fail(error.clone());
        }
        for waiter in std::mem::take(&mut self.pending_conf_changes) {
            let _ = waiter.reply.send(Err(error.clone()));
        }
        for waiter in std::mem::take(&mut self.pending_leader_moves) {
            let _ = waiter.reply.send(Err(error.clone()));
        }
        // Closing the streams ends every session's `next()`.
        self.watch_streams.clear();
        self.requests.close();
        while let Ok(request) = self.requests.try_recv() {
            fail_request(request, error.clone());
        }
        self.update_pending_metric();
        self.metrics.has_leader.store(false, Ordering::Relaxed);
        self.metrics.is_leader.store(false, Ordering::Relaxed);
    }

    fn status(&self) -> StatusInfo {
        let status = self.raft.status();
        let db_size = i64::try_from(self.store.size_bytes()).unwrap_or(i64::MAX);
        StatusInfo {
            header: self.header(),
            version: SERVER_VERSION.to_string(),
            db_size,
            db_size_in_use: db_size,
            leader: status.leader.map_or(0, |id| id.0),
            raft_index: status.commit.0,
            raft_term: status.term.0,
            raft_applied_index: self.applied_index.0,
            errors: Vec::new(),
            is_learner: status.conf_state.learners.contains(&self.config.member_id),
        }
    }
}

/// Answers a request the driver will never process.
fn fail_request(request: NodeRequest, error: NodeError) {
    match request {
        NodeRequest::Propose { reply, .. } => drop(reply.send(Err(error))),
        NodeRequest::Read { read, .. } => read.fail(error),
        NodeRequest::LeaseKeepAlive { reply, .. } => drop(reply.send(Err(error))),
        NodeRequest::LeaseTimeToLive { reply, .. } => drop(reply.send(Err(error))),
        NodeRequest::WatchOpen { reply } => drop(reply.send(Err(error))),
        NodeRequest::WatchCreate { reply, .. } => drop(reply.send(Err(error))),
        NodeRequest::WatchCancel { reply, .. } => drop(reply.send(Err(error))),
        NodeRequest::WatchProgress { reply, .. } => drop(reply.send(Err(error))),
        NodeRequest::ChangeMembers { reply, .. } => drop(reply.send(Err(error))),
        NodeRequest::Status { reply } => drop(reply.send(Err(error))),
        NodeRequest::HashKv { reply, .. } => drop(reply.send(Err(error))),
        NodeRequest::Snapshot { reply } => drop(reply.send(Err(error))),
        NodeRequest::MoveLeader { reply, .. } => drop(reply.send(Err(error))),
        // A stopping node has stopped: that is what was asked.
        NodeRequest::Shutdown { reply } => drop(reply.send(Ok(()))),
    }
}

/// The client-facing error for a refused proposal or read.
fn propose_error(error: ProposeError) -> NodeError {
    match error {
        ProposeError::NotLeader { .. } => NodeError::NoLeader,
        ProposeError::TransferInProgress => NodeError::LeaderChanged,
        ProposeError::Overloaded { .. }
        | ProposeError::ConfChangePending
        | ProposeError::ReadsOverloaded { .. } => NodeError::Timeout,
        // change_members maps this one by the kind of change; a refusal
        // elsewhere means the member table and Raft disagree on a member.
        ProposeError::ConfChangeRefused { .. } => NodeError::MemberNotFound,
    }
}

fn encode_envelope(envelope: &Envelope) -> Vec<u8> {
    match bincode::serialize(envelope) {
        Ok(bytes) => bytes,
        Err(error) => panic!("envelope {} does not encode: {error}", envelope.request_id),
    }
}

fn encode_member(member: &Member) -> Vec<u8> {
    match bincode::serialize(member) {
        Ok(bytes) => bytes,
        Err(error) => panic!("member {:x} does not encode: {error}", member.id),
    }
}

/// The member a ConfChange context describes; a context that does not
/// decode (e.g. written by a tool) still yields a member with that ID.
fn decode_member(id: NodeId, context: &[u8]) -> Member {
    match bincode::deserialize::<Member>(context) {
        Ok(mut member) => {
            member.id = id.0;
            member
        }
        Err(error) => {
            warn!(member = %id, %error, "membership change context does not decode");
            Member {
                id: id.0,
                ..Member::default()
            }
        }
    }
}

/// A short form of a change for logs (contexts can be long).
fn conf_change_summary(change: &ConfChange) -> (&'static str, String) {
    match change {
        ConfChange::AddVoter { id, .. } => ("add-voter", id.to_string()),
        ConfChange::AddLearner { id, .. } => ("add-learner", id.to_string()),
        ConfChange::PromoteLearner { id } => ("promote", id.to_string()),
        ConfChange::RemoveNode { id } => ("remove", id.to_string()),
        ConfChange::UpdateNode { id, .. } => ("update", id.to_string()),
    }
}
