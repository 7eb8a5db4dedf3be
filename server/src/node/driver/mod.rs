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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cairn_core::kv::{
    AlarmAction, AlarmMember, AlarmRequest, AlarmType, Command, CommandResponse, Envelope,
    KvConfig, KvError, KvStore, LeaseCheckpoint, LeaseId, StreamId, WatchHub, WatchResponse,
};
use cairn_core::raft::{
    ConfChange, Config, Entry, EntryKind, Index, Message, NodeId, ProposeError, Raft, ReadState,
    Ready, Role, Snapshot, Start, Term,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, error, info, trace, warn};

use crate::storage::{Disk, Durability};
use crate::transport::{
    PeerError, PeerMessage, PeerRequest, PeerResponse, SendError, Transport, TransportConfig,
    TransportError, TransportEvent,
};

mod compactor;
mod leadership;
mod lease;
mod membership;
mod read;
mod waiter;
mod watch;

use self::compactor::AutoCompactor;
use self::waiter::{
    ConfChangeWaiter, ForwardReply, ForwardWaiter, LeaderMoveWaiter, ProposalWaiter, ReadBatch,
    ShutdownState,
};

use super::config::{NodeConfig, StartMode};
use super::error::NodeError;
use super::handle::{Member, NodeHandle, ResponseHeader, StatusInfo};
use super::log_store::{open_raft_storage, LogStore, LogStoreError, Recovery};
use super::member::{
    member_id_for, member_using_peer_url, peer_urls_by_member, stable_hash, MemberTable,
};
use super::metrics::NodeMetrics;
use super::observer::{AppliedCommand, MessageFate, ReadyObservation, RecoveryObservation};
#[cfg(madsim)]
use super::planted_bug::PlantedBug;
use super::request::{MemberChange, NodeRequest, ReadRequest, Reply};
use super::snapshot_data::{NodeMetadata, SnapshotData};

/// Bound of the queue of client requests to the driver.
pub const REQUEST_QUEUE_MAX: usize = 4096;
/// At most this many client proposals and reads may wait on the driver;
/// beyond it requests fail at once with "too many requests" (etcd's answer
/// when its apply lags).
pub const PENDING_REQUESTS_MAX: usize = 16_384;
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
    #[cfg_attr(not(madsim), allow(unused_mut))] mut recovery: Recovery,
) -> Result<(NodeHandle, NodeTask), StartError> {
    let metadata = read_metadata(&config, &recovery)?;
    log_store.write_metadata(&metadata.encode())?;

    let kv_config = KvConfig {
        txn_ops_max: config.txn_ops_max,
        request_bytes_max: config.request_bytes_max,
        lease_ttl_min_seconds: config.lease_ttl_min_seconds(),
        #[cfg(madsim)]
        planted_bug: (config.planted_bug == Some(PlantedBug::CompareLessInclusive))
            .then_some(cairn_core::kv::PlantedKvBug::CompareLessInclusive),
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
    // The configured cluster's peers stay reachable even when the
    // snapshot's member table predates them (etcd's bootstrap "remotes"):
    // a joiner's snapshot may not list the leader that sent it.
    let configured_peers = peer_urls_by_member(&members, config.member_id);
    let mut removed_members = BTreeSet::new();
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
                removed_members = data.removed_members;
            }
            applied_index = snapshot.metadata.index;
        }
    }
    #[cfg(madsim)]
    if !recovery.fresh && config.planted_bug == Some(PlantedBug::DropUncommittedTailOnRestart) {
        let commit = recovery.persisted.hard_state.commit;
        let before = recovery.persisted.entries.len();
        recovery
            .persisted
            .entries
            .retain(|entry| entry.index <= commit);
        warn!(
            commit = commit.0,
            dropped = before - recovery.persisted.entries.len(),
            "planted bug: recovered entries above the commit index dropped"
        );
    }
    if let (Some(observer), false) = (&config.observer, recovery.fresh) {
        observer.on_recovered(&RecoveryObservation {
            member: config.member_id,
            term: recovery.persisted.hard_state.term,
            snapshot: recovery
                .persisted
                .snapshot
                .as_ref()
                .map(|snapshot| &snapshot.metadata),
            entries: &recovery.persisted.entries,
        });
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
    #[cfg(madsim)]
    {
        use cairn_core::raft::PlantedRaftBug;
        raft_config.planted_bug = match config.planted_bug {
            Some(PlantedBug::VoteIgnoringLog) => Some(PlantedRaftBug::VoteIgnoringLog),
            Some(PlantedBug::CommitWithoutQuorum) => Some(PlantedRaftBug::CommitWithoutQuorum),
            Some(PlantedBug::AppendIgnoringPrevTerm) => {
                Some(PlantedRaftBug::AppendIgnoringPrevTerm)
            }
            _ => None,
        };
    }

    let transport_config = TransportConfig::new(
        config.cluster_id,
        config.member_id,
        config.listen_peer_url.clone(),
    );
    let (mut transport, transport_events) = Transport::bind(transport_config).await?;
    let mut peers = configured_peers;
    peers.extend(peer_urls_by_member(&members, config.member_id));
    transport.set_peers(&peers);
    for &id in &removed_members {
        transport.mark_removed(NodeId(id));
    }
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
    let (published, published_receiver) = tokio::sync::watch::channel(false);
    let handle = NodeHandle::new(
        requests_sender,
        config.cluster_id,
        config.member_id,
        metrics.clone(),
        config.request_timeout,
        published_receiver,
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
    let checkpoint_ticks = ticks_in(config.lease_checkpoint_interval);
    let progress_notify_ticks = ticks_in(WATCH_PROGRESS_NOTIFY_INTERVAL);
    let compactor = AutoCompactor::new(
        config.auto_compaction,
        config.auto_compaction_revision_interval,
        ticks_in,
    );
    let driver = Driver {
        published,
        raft,
        store,
        watch_hub: WatchHub::default(),
        log_store,
        transport,
        transport_events,
        requests,
        requests_open: true,
        members,
        removed_members,
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
        read_round_tick: 0,
        reads_awaiting_apply: Vec::new(),
        keep_alives_awaiting_checkpoint: Vec::new(),
        periodic_checkpoint_index: Index(0),
        pending_forwards: BTreeMap::new(),
        pending_conf_changes: Vec::new(),
        pending_leader_moves: Vec::new(),
        shutdown: None,
        lease_revokes_pending: BTreeMap::new(),
        ticks: 0,
        checkpoint_ticks,
        progress_notify_ticks,
        compactor,
        next_publish_tick: 0,
        watch_streams: BTreeMap::new(),
        next_stream_id: 1,
        more_work: false,
        removed: false,
        #[cfg(madsim)]
        apply_twice_pending: !recovery.fresh
            && config.planted_bug == Some(PlantedBug::ApplyTwiceAfterRestart),
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

/// How a turn of the loop ended.
enum Turn {
    Continue,
    Stop,
}

struct Driver {
    /// Set once this member's attributes are in the replicated member table.
    published: tokio::sync::watch::Sender<bool>,
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
    /// IDs of members removed from the cluster; replicated like `members`.
    removed_members: BTreeSet<u64>,
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
    /// The tick the last ReadIndex round started in.
    read_round_tick: u64,
    /// Reads whose read index is known, in ReadState order.
    reads_awaiting_apply: Vec<(Index, ReadBatch)>,
    /// Keep-alives waiting for the checkpoint of 0 that clears their
    /// lease's stale remaining TTL.
    keep_alives_awaiting_checkpoint: Vec<lease::KeepAliveWaiter>,
    /// Where the latest periodic lease checkpoint was proposed.
    periodic_checkpoint_index: Index,
    pending_forwards: BTreeMap<u64, ForwardWaiter>,
    pending_conf_changes: Vec<ConfChangeWaiter>,
    pending_leader_moves: Vec<LeaderMoveWaiter>,
    shutdown: Option<ShutdownState>,
    /// Leases this leader proposed to revoke, with when to try again.
    lease_revokes_pending: BTreeMap<LeaseId, Instant>,
    ticks: u64,
    checkpoint_ticks: u64,
    progress_notify_ticks: u64,
    compactor: AutoCompactor,
    next_publish_tick: u64,
    /// Each watch stream's channel to its session.
    watch_streams: BTreeMap<StreamId, mpsc::Sender<WatchResponse>>,
    next_stream_id: StreamId,
    /// A bound cut a turn short; start the next one without waiting.
    more_work: bool,
    /// This member was removed from the cluster.
    removed: bool,
    /// Planted bug: the next command applied is applied twice.
    #[cfg(madsim)]
    apply_twice_pending: bool,
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
        if let Turn::Stop = self.process_readies().await? {
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
            if let Turn::Stop = self.process_readies().await? {
                return Ok(());
            }
            self.route_watch_responses();
            #[cfg(debug_assertions)]
            self.check_invariants();
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

    /// Whether the simulator switched on this deliberate bug.
    #[cfg(madsim)]
    fn planted(&self, bug: PlantedBug) -> bool {
        self.config.planted_bug == Some(bug)
    }

    // ----- events -----

    fn on_tick(&mut self) {
        self.ticks += 1;
        self.raft.tick();
        // The data dir's size takes a directory listing and a stat per
        // file: refreshed once a tick, off the per-Ready write path.
        self.metrics
            .wal_size_bytes
            .store(self.log_store.size_bytes(), Ordering::Relaxed);
        self.expire_waiters();
        self.propose_waiting_conf_changes();
        if self.is_leader() {
            self.revoke_expired_leases();
            if self.ticks.is_multiple_of(self.checkpoint_ticks) {
                self.checkpoint_leases();
            }
        }
        self.auto_compact();
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
                // The listener filters pings; nothing to do if one gets here.
                PeerMessage::Ping => {}
            },
            TransportEvent::Unreachable { peer } => {
                debug!(peer = %peer, "peer unreachable");
                self.raft.report_unreachable(peer);
            }
            TransportEvent::PeerDown { peer } => {
                debug!(peer = %peer, "peer down");
                self.raft.report_unreachable(peer);
                self.raft.report_leader_down(peer);
            }
            TransportEvent::RemovedFromCluster { peer } => {
                // Only a member of this cluster could say so (the handshake
                // checked the cluster ID); it applied our removal.
                warn!(peer = %peer, "this member was removed from the cluster; stopping");
                self.removed = true;
            }
        }
    }

    fn on_request(&mut self, request: NodeRequest) {
        match request {
            NodeRequest::Propose { command, reply } => self.propose(command, reply),
            NodeRequest::Read { serializable, read } => {
                #[cfg(madsim)]
                let serializable = serializable || self.planted(PlantedBug::ReadWithoutReadIndex);
                if serializable {
                    self.answer_read(read);
                } else if self.pending_requests() >= PENDING_REQUESTS_MAX {
                    read.fail(NodeError::TooManyRequests);
                } else {
                    self.reads_unsent.push(read);
                }
            }
            NodeRequest::LeaseKeepAlive { id, reply } => {
                if self.is_leader() {
                    self.lease_keep_alive_on_leader(id, lease::KeepAliveAnswer::Local(reply));
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
                    removed_members: self.removed_members.clone(),
                };
                let _ = reply.send(Ok((self.header(), data.encode())));
            }
            NodeRequest::MoveLeader { target, reply } => self.move_leader(target, reply),
            NodeRequest::AppliedHash { reply } => {
                let _ = reply.send(Ok((self.applied_index.0, self.store.hash())));
            }
            NodeRequest::RaftStatus { reply } => {
                let _ = reply.send(Ok(self.raft.status()));
            }
            NodeRequest::Shutdown { reply } => self.begin_shutdown(reply),
        }
    }

    // ----- writes -----

    fn propose(&mut self, mut command: Command, reply: Reply<(ResponseHeader, CommandResponse)>) {
        if self.pending_requests() >= PENDING_REQUESTS_MAX {
            self.metrics
                .proposals_failed
                .fetch_add(1, Ordering::Relaxed);
            let _ = reply.send(Err(NodeError::TooManyRequests));
            return;
        }
        if let Err(error) = self.store.validate(&command) {
            debug!(%error, "proposal refused by validation");
            self.metrics
                .proposals_failed
                .fetch_add(1, Ordering::Relaxed);
            let _ = reply.send(Err(NodeError::Kv(error)));
            return;
        }
        if let Err(error) = self.check_quota(&command) {
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

    /// etcd's quota check before proposing: a write that grows the state
    /// fails with NoSpace while a NOSPACE alarm is active, or when it would
    /// take the state past --quota-backend-bytes, in which case this member
    /// raises the alarm through the log.
    fn check_quota(&mut self, command: &Command) -> Result<(), KvError> {
        if !KvStore::grows_state(command) {
            return Ok(());
        }
        if self.store.is_out_of_space() {
            return Err(KvError::NoSpace);
        }
        let quota = self.quota_backend_bytes();
        let size = self.store.size_bytes();
        let cost = bincode::serialized_size(command).unwrap_or(u64::MAX);
        if size.saturating_add(cost) <= quota {
            return Ok(());
        }
        warn!(
            size_bytes = size,
            cost_bytes = cost,
            quota_bytes = quota,
            "database space exceeded; raising the NOSPACE alarm"
        );
        let alarm = Command::Alarm(AlarmRequest {
            action: AlarmAction::Activate,
            member: AlarmMember {
                member_id: self.config.member_id.0,
                alarm: AlarmType::NoSpace,
            },
        });
        self.propose_internal(alarm);
        Err(KvError::NoSpace)
    }

    /// The configured quota; 0 means etcd's default.
    fn quota_backend_bytes(&self) -> u64 {
        match self.config.quota_backend_bytes {
            0 => super::config::QUOTA_BACKEND_BYTES_DEFAULT,
            quota => quota,
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

    // ----- the Ready -----

    async fn process_readies(&mut self) -> Result<Turn, NodeFailure> {
        for _ in 0..READIES_PER_TURN_MAX {
            let Some(ready) = self.raft.ready() else {
                return Ok(if self.removed {
                    Turn::Stop
                } else {
                    Turn::Continue
                });
            };
            self.process_ready(ready).await?;
            self.maybe_snapshot()?;
        }
        self.more_work = true;
        Ok(Turn::Continue)
    }

    async fn process_ready(&mut self, mut ready: Ready) -> Result<(), NodeFailure> {
        self.term = ready.term;
        self.metrics.term.store(ready.term.0, Ordering::Relaxed);
        if let Some(soft_state) = ready.soft_state {
            self.on_soft_state(soft_state.leader, soft_state.role);
        }

        // A leader's messages go out first, so that its own write overlaps
        // the followers' (Raft thesis §10.2.1); anyone else's wait for
        // duty 1, which they vouch for.
        #[cfg(not(madsim))]
        let send_first = ready.from_leader;
        #[cfg(madsim)]
        let send_first = ready.from_leader || self.planted(PlantedBug::FollowerAcksBeforeFsync);
        if send_first {
            self.send_messages(std::mem::take(&mut ready.messages));
        }

        // Duty 1: persist, with one write and (unless only the commit index
        // moved) one fsync.
        if ready.must_write() {
            let durability = if ready.must_sync() {
                Durability::Synced
            } else {
                Durability::Written
            };
            let started = Instant::now();
            #[cfg(madsim)]
            if self.planted(PlantedBug::ForgetVote) {
                if let Some(hard_state) = &mut ready.hard_state {
                    hard_state.vote = None;
                }
            }
            let fsync_delay = match (&self.config.observer, durability) {
                (Some(observer), Durability::Synced) => {
                    observer.fsync_delay(self.config.member_id, &ready.entries)
                }
                _ => None,
            };
            match fsync_delay {
                None => self.log_store.persist(
                    ready.hard_state.as_ref(),
                    &ready.entries,
                    ready.snapshot.as_ref(),
                    durability,
                )?,
                Some(delay) => {
                    // The simulator's slow fsync: written, not yet durable,
                    // while the rest of the member runs on (production
                    // has no observer and never gets here).
                    self.log_store.write_unsynced(
                        ready.hard_state.as_ref(),
                        &ready.entries,
                        ready.snapshot.as_ref(),
                    )?;
                    tokio::time::sleep(delay).await;
                    self.log_store.sync()?;
                }
            }
            if durability == Durability::Synced {
                self.metrics.fsync_durations.observe(started.elapsed());
            }
        }
        for entry in &ready.entries {
            add_peer_from_entry(&mut self.transport, entry);
        }
        if let Some(snapshot) = &ready.snapshot {
            self.install_snapshot(snapshot)?;
        }

        // Duty 2: send, now that what the messages depend on is durable.
        self.send_messages(std::mem::take(&mut ready.messages));

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
            .store(self.raft.commit_index().0, Ordering::Relaxed);
        self.metrics
            .proposals_applied
            .store(self.applied_index.0, Ordering::Relaxed);
        self.metrics
            .revision
            .store(self.store.revision(), Ordering::Relaxed);

        // Duty 4: reads.
        self.on_read_states(std::mem::take(&mut ready.read_states));
        self.answer_applied_reads();
        self.answer_checkpointed_keep_alives();

        let observed = self.config.observer.as_ref().map(|_| {
            // The entry before the appended ones too, so that the checker
            // sees the link between them and what the log already held.
            let mut appended = Vec::with_capacity(ready.entries.len() + 1);
            if let Some(first) = ready.entries.first() {
                let before = Index(first.index.0.saturating_sub(1));
                appended.extend(self.raft.entries(before, first.index));
            }
            appended.extend(ready.entries.iter().cloned());
            (
                appended,
                ready.committed_entries.clone(),
                ready
                    .snapshot
                    .as_ref()
                    .map(|snapshot| snapshot.metadata.clone()),
            )
        });
        self.raft.advance(ready);
        if let (Some(observer), Some((appended, committed, snapshot))) =
            (&self.config.observer, observed)
        {
            observer.on_ready(&ReadyObservation {
                member: self.config.member_id,
                status: self.raft.status(),
                appended: &appended,
                snapshot: snapshot.as_ref(),
                committed: &committed,
                applied: self.applied_index,
                store: &self.store,
            });
        }
        Ok(())
    }

    /// Hands Raft messages to the transport (through the simulator's
    /// observer, which may drop or duplicate them).
    fn send_messages(&mut self, messages: Vec<Message>) {
        for message in messages {
            let to = message.to;
            let message = PeerMessage::Raft(message);
            let copies = match &self.config.observer {
                None => 1,
                Some(observer) => match observer.on_send(self.config.member_id, to, &message) {
                    MessageFate::Deliver => 1,
                    MessageFate::Drop => 0,
                    MessageFate::Duplicate => 2,
                },
            };
            // The message (entries and all) is cloned only for a duplicate.
            for message in std::iter::repeat_n(message, copies) {
                match self.transport.send(to, message) {
                    Ok(()) => {}
                    Err(SendError::UnknownPeer { peer }) => {
                        debug!(peer = %peer, "no address for peer");
                        self.raft.report_unreachable(peer);
                    }
                    Err(error @ SendError::QueueFull { .. }) => debug!(%error, "message dropped"),
                }
            }
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
        // Peers the snapshot's table lacks were added after its index (the
        // leader that sent it may be one: swarm seed 30 left a rejoined
        // learner unable to answer it, stuck at the snapshot for good).
        // They stay, as etcd keeps its "remotes"; the entries after the
        // snapshot add or remove them again.
        for (id, urls) in peer_urls_by_member(&self.members, self.config.member_id) {
            self.transport.add_peer(id, urls);
        }
        for &id in &data.removed_members {
            self.transport.mark_removed(NodeId(id));
        }
        self.removed_members = data.removed_members;
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
        #[cfg(madsim)]
        if std::mem::take(&mut self.apply_twice_pending) {
            let twice = self.store.apply(&envelope.command, self.now_ms());
            warn!(
                index = index.0,
                revision = twice.revision,
                "planted bug: applied twice"
            );
        }
        let applied = self.store.apply(&envelope.command, self.now_ms());
        if let Some(observer) = &self.config.observer {
            observer.on_applied(&AppliedCommand {
                member: self.config.member_id,
                index,
                command: &envelope.command,
                revision: applied.revision,
                events: &applied.events,
            });
        }
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
        if let Err(error) = &applied.response {
            // Internal proposals have nobody to tell (e.g. an auto
            // compaction behind a client's compaction).
            debug!(index = index.0, %error, "applied command failed");
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
            removed_members: self.removed_members.clone(),
        }
        .encode();
        self.raft.compact(applied, data);
        // The core fills the term and the configuration as of `applied`.
        // Borrowed, not cloned: the snapshot is the whole state.
        let Some(snapshot) = self.raft.snapshot() else {
            panic!("no snapshot after compacting at {applied}");
        };
        assert!(
            snapshot.metadata.index == applied,
            "compacted at {applied}, snapshot at {}",
            snapshot.metadata.index
        );
        let started = Instant::now();
        self.log_store.save_snapshot(snapshot)?;
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

    /// Client requests waiting on the driver.
    fn pending_requests(&self) -> usize {
        let reads_in_flight: usize = self.reads_in_flight.values().map(|b| b.reads.len()).sum();
        let reads_awaiting: usize = self
            .reads_awaiting_apply
            .iter()
            .map(|(_, b)| b.reads.len())
            .sum();
        self.pending_proposals.len()
            + self.keep_alives_awaiting_checkpoint.len()
            + self.reads_unsent.len()
            + reads_in_flight
            + reads_awaiting
            + self.pending_forwards.len()
            + self.pending_conf_changes.len()
    }

    /// O(n) consistency checks, run after every turn in debug builds.
    #[cfg(debug_assertions)]
    fn check_invariants(&self) {
        let commit = self.raft.commit_index();
        assert!(
            self.applied_index <= commit,
            "applied {} > commit {commit}",
            self.applied_index
        );
        assert!(
            self.snapshot_index <= self.applied_index,
            "snapshot {} > applied {}",
            self.snapshot_index,
            self.applied_index
        );
        assert!(
            self.proposal_deadlines.len() >= self.pending_proposals.len(),
            "{} proposals pending, {} deadlines",
            self.pending_proposals.len(),
            self.proposal_deadlines.len()
        );
        let with_deadline: BTreeSet<u64> =
            self.proposal_deadlines.iter().map(|(_, id)| *id).collect();
        for request_id in self.pending_proposals.keys() {
            assert!(
                with_deadline.contains(request_id),
                "pending proposal {request_id} has no deadline"
            );
        }
        for (index, _) in &self.reads_awaiting_apply {
            assert!(
                *index > self.applied_index,
                "read at {index} left waiting with applied {}",
                self.applied_index
            );
        }
        let pending = self.pending_requests();
        assert!(
            pending <= PENDING_REQUESTS_MAX,
            "{pending} pending requests above {PENDING_REQUESTS_MAX}"
        );
    }

    fn status(&self) -> StatusInfo {
        let status = self.raft.status();
        // etcd's dbSize is the backend file's size on disk; ours is the data
        // dir's (WAL segments and snapshots). In use: the live state.
        let db_size_in_use = i64::try_from(self.store.size_bytes()).unwrap_or(i64::MAX);
        let on_disk = i64::try_from(self.metrics.wal_size_bytes()).unwrap_or(i64::MAX);
        StatusInfo {
            header: self.header(),
            version: SERVER_VERSION.to_string(),
            db_size: on_disk.max(db_size_in_use),
            db_size_in_use,
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
        NodeRequest::AppliedHash { reply } => drop(reply.send(Err(error))),
        NodeRequest::RaftStatus { reply } => drop(reply.send(Err(error))),
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
