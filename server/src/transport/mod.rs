//! Peer-to-peer transport: framed bincode over TCP with a cluster handshake.
//!
//! Each member keeps one outbound connection per peer, owned by a task fed
//! from a bounded queue, and accepts the peers' outbound connections on its
//! peer listener. Traffic is one-way per connection: answers to a peer's
//! request travel back on our own outbound connection to it. Delivery is
//! best effort, as Raft expects: a full queue drops, a failed connection
//! reports the peer unreachable and reconnects with bounded backoff.
//! Under load, each link writes the messages already queued to it in one
//! batch and each inbound connection reads through a buffer, so the cost
//! in syscalls is per batch, not per Raft message.
//!
//! Everything here uses only the tokio APIs madsim simulates (TCP, timers,
//! spawn, channels), so the simulator runs this exact code.
//!
//! ```text
//! let (mut transport, mut events) = Transport::bind(config).await?;
//! transport.set_peers(peers);                      // member id -> peer URLs
//! transport.send(to, PeerMessage::Raft(message))?; // never blocks
//! while let Some(event) = events.recv().await { /* Received / Unreachable */ }
//! ```

pub mod address;
pub mod frame;
mod frame_batch;
pub mod handshake;
mod listener;
mod peer;
pub mod peer_message;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_core::raft::NodeId;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info};

pub use address::{socket_address, AddressError};
pub use frame::{FrameError, FRAME_BYTES_MAX};
pub use handshake::{Handshake, HandshakeReply};
pub use peer_message::{PeerError, PeerMessage, PeerRequest, PeerResponse};

use listener::InboundContext;
use peer::PeerLinkConfig;

/// Default bound of each peer's outbound queue, in messages.
pub const PEER_QUEUE_MESSAGES_MAX: usize = 1024;
/// Default bound of the queue of received messages awaiting the node loop.
pub const INBOUND_QUEUE_MESSAGES_MAX: usize = 4096;
/// Default bound on simultaneous inbound peer connections.
pub const INBOUND_CONNECTIONS_MAX: usize = 256;
/// Default time allowed for a TCP connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default time allowed for the handshake exchange.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);
/// Default first reconnect delay; it doubles per failure up to the maximum.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Default cap on the reconnect delay.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Default idle time after which a connection carries a ping.
pub const IDLE_PING_INTERVAL: Duration = Duration::from_secs(1);

/// How a transport is set up.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// The cluster ID both ends of a connection must share.
    pub cluster_id: u64,
    /// This member.
    pub member_id: NodeId,
    /// Where to listen for peers: a URL (`http://0.0.0.0:2380`) or `host:port`.
    pub listen_url: String,
    /// Bound of each peer's outbound queue, in messages.
    pub peer_queue_messages_max: usize,
    /// Bound of the queue of received messages, in messages.
    pub inbound_queue_messages_max: usize,
    /// Bound on simultaneous inbound connections.
    pub inbound_connections_max: usize,
    /// Time allowed for a TCP connect.
    pub connect_timeout: Duration,
    /// Time allowed for the handshake exchange.
    pub handshake_timeout: Duration,
    /// First reconnect delay.
    pub reconnect_backoff_min: Duration,
    /// Cap on the reconnect delay.
    pub reconnect_backoff_max: Duration,
    /// Idle time after which a connection carries a ping.
    pub idle_ping_interval: Duration,
}

impl TransportConfig {
    /// A configuration with the default bounds.
    pub fn new(cluster_id: u64, member_id: NodeId, listen_url: impl Into<String>) -> Self {
        TransportConfig {
            cluster_id,
            member_id,
            listen_url: listen_url.into(),
            peer_queue_messages_max: PEER_QUEUE_MESSAGES_MAX,
            inbound_queue_messages_max: INBOUND_QUEUE_MESSAGES_MAX,
            inbound_connections_max: INBOUND_CONNECTIONS_MAX,
            connect_timeout: CONNECT_TIMEOUT,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            reconnect_backoff_min: RECONNECT_BACKOFF_MIN,
            reconnect_backoff_max: RECONNECT_BACKOFF_MAX,
            idle_ping_interval: IDLE_PING_INTERVAL,
        }
    }
}

/// What the transport tells the node loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportEvent {
    /// A message arrived from `from` (checked by the handshake).
    Received {
        /// The sending member.
        from: NodeId,
        /// The message.
        message: PeerMessage,
    },
    /// Sending to `peer` failed; Raft should fall back to probing it.
    Unreachable {
        /// The peer.
        peer: NodeId,
    },
    /// `peer`'s process is gone: nothing listens at its address any more
    /// (reported once per outage). Raft's followers use it to elect a new
    /// leader without waiting for an election timeout.
    PeerDown {
        /// The peer.
        peer: NodeId,
    },
    /// `peer` says this member was removed from the cluster.
    RemovedFromCluster {
        /// The member that said so.
        peer: NodeId,
    },
}

/// Members removed from the cluster, whose connections are refused.
pub(crate) type RemovedMembers = Arc<Mutex<BTreeSet<NodeId>>>;

/// Why the transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The listen URL is malformed.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// The listener could not bind.
    #[error("cannot listen for peers on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a message was not queued. Either way it is dropped; Raft retries.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No peer with that ID is known.
    #[error("no peer {peer} is known to the transport")]
    UnknownPeer {
        /// The peer.
        peer: NodeId,
    },
    /// The peer's queue is at its bound.
    #[error("the queue to peer {peer} is full ({queue_messages_max} messages)")]
    QueueFull {
        /// The peer.
        peer: NodeId,
        /// The bound.
        queue_messages_max: usize,
    },
}

/// One peer's outbound link.
#[derive(Debug)]
struct PeerLink {
    urls: Vec<String>,
    queue: mpsc::Sender<PeerMessage>,
    task: JoinHandle<()>,
}

/// The peer transport of one member. Dropping it stops every task it started.
#[derive(Debug)]
pub struct Transport {
    config: TransportConfig,
    local_address: SocketAddr,
    peers: BTreeMap<NodeId, PeerLink>,
    events: mpsc::Sender<TransportEvent>,
    listener_task: JoinHandle<()>,
    /// Dropped with the transport, which closes every inbound connection.
    _shutdown: watch::Sender<()>,
    removed_members: RemovedMembers,
    dropped_messages: Arc<AtomicU64>,
}

impl Transport {
    /// Binds the peer listener and starts accepting. Received messages and
    /// unreachable reports arrive on the returned receiver.
    pub async fn bind(
        config: TransportConfig,
    ) -> Result<(Transport, mpsc::Receiver<TransportEvent>), TransportError> {
        assert!(
            config.peer_queue_messages_max > 0,
            "peer queue bound must be positive"
        );
        assert!(
            config.inbound_queue_messages_max > 0,
            "inbound queue bound must be positive"
        );
        assert!(
            config.reconnect_backoff_min <= config.reconnect_backoff_max,
            "reconnect backoff min {:?} > max {:?}",
            config.reconnect_backoff_min,
            config.reconnect_backoff_max
        );
        let address = socket_address(&config.listen_url)?;
        let listener = TcpListener::bind(address.as_str())
            .await
            .map_err(|source| TransportError::Bind {
                address: address.clone(),
                source,
            })?;
        let local_address = listener
            .local_addr()
            .map_err(|source| TransportError::Bind {
                address: address.clone(),
                source,
            })?;
        let (events_sender, events) = mpsc::channel(config.inbound_queue_messages_max);
        let (shutdown, shutdown_receiver) = watch::channel(());
        let removed_members = RemovedMembers::default();
        let context = InboundContext {
            removed_members: removed_members.clone(),
            cluster_id: config.cluster_id,
            local: config.member_id,
            handshake_timeout: config.handshake_timeout,
            events: events_sender.clone(),
            shutdown: shutdown_receiver,
        };
        let connections = Arc::new(Semaphore::new(config.inbound_connections_max));
        let listener_task =
            tokio::task::spawn(listener::run_listener(listener, context, connections));
        info!(member = %config.member_id, address = %local_address, "listening for peers");
        let transport = Transport {
            config,
            local_address,
            peers: BTreeMap::new(),
            events: events_sender,
            listener_task,
            _shutdown: shutdown,
            removed_members,
            dropped_messages: Arc::new(AtomicU64::new(0)),
        };
        Ok((transport, events))
    }

    /// The address the peer listener is bound to (useful with port 0).
    pub fn local_address(&self) -> SocketAddr {
        self.local_address
    }

    /// The peers known, in ID order.
    pub fn peers(&self) -> Vec<NodeId> {
        self.peers.keys().copied().collect()
    }

    /// Messages dropped so far: queue full, encoding failures, or written
    /// while the peer was unreachable.
    pub fn dropped_messages(&self) -> u64 {
        self.dropped_messages.load(Ordering::Relaxed)
    }

    /// Replaces the peer set: new peers get a link, removed ones lose theirs,
    /// peers whose URLs changed are reconnected. This member is skipped.
    pub fn set_peers(&mut self, peers: &BTreeMap<NodeId, Vec<String>>) {
        let removed: Vec<NodeId> = self
            .peers
            .keys()
            .filter(|id| !peers.contains_key(id))
            .copied()
            .collect();
        for id in removed {
            self.remove_peer(id);
        }
        for (&id, urls) in peers {
            self.add_peer(id, urls.clone());
        }
    }

    /// Adds a peer, or reconnects it if its URLs changed. No-op for this
    /// member or unchanged URLs.
    pub fn add_peer(&mut self, id: NodeId, urls: Vec<String>) {
        if id == self.config.member_id {
            return;
        }
        if let Some(link) = self.peers.get(&id) {
            if link.urls == urls {
                return;
            }
            self.remove_peer(id);
        }
        debug!(peer = %id, ?urls, "adding peer");
        let (queue, receiver) = mpsc::channel(self.config.peer_queue_messages_max);
        let link_config = PeerLinkConfig {
            cluster_id: self.config.cluster_id,
            local: self.config.member_id,
            peer: id,
            urls: urls.clone(),
            connect_timeout: self.config.connect_timeout,
            handshake_timeout: self.config.handshake_timeout,
            reconnect_backoff_min: self.config.reconnect_backoff_min,
            reconnect_backoff_max: self.config.reconnect_backoff_max,
            idle_ping_interval: self.config.idle_ping_interval,
        };
        let task = tokio::task::spawn(peer::run_peer(
            link_config,
            receiver,
            self.events.clone(),
            self.dropped_messages.clone(),
        ));
        self.peers.insert(id, PeerLink { urls, queue, task });
    }

    /// Forgets a peer and closes its link.
    pub fn remove_peer(&mut self, id: NodeId) {
        if let Some(link) = self.peers.remove(&id) {
            debug!(peer = %id, "removing peer");
            link.task.abort();
        }
    }

    /// Forgets a member removed from the cluster and refuses its
    /// connections from now on, telling it it was removed.
    pub fn mark_removed(&mut self, id: NodeId) {
        self.remove_peer(id);
        let mut removed = self
            .removed_members
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if removed.insert(id) {
            info!(member = %id, "refusing the connections of a removed member");
        }
    }

    /// Queues `message` for `to` without waiting. Dropped (with the reason
    /// returned) if the peer is unknown or its queue is full.
    pub fn send(&self, to: NodeId, message: PeerMessage) -> Result<(), SendError> {
        let Some(link) = self.peers.get(&to) else {
            self.dropped_messages.fetch_add(1, Ordering::Relaxed);
            return Err(SendError::UnknownPeer { peer: to });
        };
        match link.queue.try_send(message) {
            Ok(()) => Ok(()),
            Err(_) => {
                // Closed only if the task ended, which it does only when the
                // link is removed; full is the real case. Both drop.
                self.dropped_messages.fetch_add(1, Ordering::Relaxed);
                Err(SendError::QueueFull {
                    peer: to,
                    queue_messages_max: self.config.peer_queue_messages_max,
                })
            }
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.listener_task.abort();
        for link in self.peers.values() {
            link.task.abort();
        }
    }
}
