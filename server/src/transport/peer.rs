//! The outbound half of the transport: one task per peer that owns the one
//! connection to it, fed by a bounded queue. When the queue is full the
//! message is dropped (Raft retries); when the connection fails the node
//! hears `Unreachable` so Raft probes instead of streaming, and the task
//! reconnects with bounded exponential backoff.
//!
//! The task writes in batches: the message it woke for plus whatever is
//! already queued behind it leave in one write (see [`FrameBatch`]), so a
//! busy link costs a syscall per batch rather than per message, and an idle
//! one still sends each message the moment it is queued.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_core::raft::NodeId;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, info, trace, warn};

use super::address::socket_address;
use super::frame::{decode, encode, read_frame, write_frame};
use super::frame_batch::{FrameBatch, QueueState};
use super::handshake::{Handshake, HandshakeReply};
use super::peer_message::PeerMessage;
use super::TransportEvent;

/// Everything a peer task needs to know, fixed for its lifetime (a change
/// of URLs replaces the task).
#[derive(Clone, Debug)]
pub(crate) struct PeerLinkConfig {
    pub cluster_id: u64,
    pub local: NodeId,
    pub peer: NodeId,
    pub urls: Vec<String>,
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    pub reconnect_backoff_min: Duration,
    pub reconnect_backoff_max: Duration,
    pub idle_ping_interval: Duration,
}

/// Runs until the queue's sender is dropped (the peer was removed or the
/// transport closed).
pub(crate) async fn run_peer(
    config: PeerLinkConfig,
    mut queue: mpsc::Receiver<PeerMessage>,
    events: mpsc::Sender<TransportEvent>,
    dropped_messages: Arc<AtomicU64>,
) {
    let peer = config.peer;
    let mut backoff = config.reconnect_backoff_min;
    let mut failures: u64 = 0;
    let mut ever_connected = false;
    // PeerDown was reported for the current outage.
    let mut reported_down = false;
    // One buffer for the link's life, reused by every batch.
    let mut batch = FrameBatch::new();
    loop {
        // Connect lazily the first time: an idle link to a peer that never
        // came up costs nothing. Once connected, stay connected (pinging
        // when idle) and reconnect eagerly.
        let first = if ever_connected {
            None
        } else {
            match queue.recv().await {
                Some(message) => Some(message),
                None => return,
            }
        };
        match connect(&config).await {
            Ok(mut stream) => {
                info!(peer = %peer, after_failures = failures, "connected to peer");
                failures = 0;
                reported_down = false;
                ever_connected = true;
                backoff = config.reconnect_backoff_min;
                let mut pending = first;
                // The peer never writes on this connection after the
                // handshake, so a read that returns is the connection
                // ending: a crashed peer's kernel closes it at once, and
                // reconnecting then tells a dead process (refused) from a
                // network fault, long before an election timeout would.
                let mut closed_probe = [0u8; 1];
                loop {
                    let message = match pending.take() {
                        Some(message) => message,
                        None => tokio::select! {
                            message = queue.recv() => match message {
                                Some(message) => message,
                                None => return,
                            },
                            () = tokio::time::sleep(config.idle_ping_interval) => PeerMessage::Ping,
                            read = stream.read(&mut closed_probe) => {
                                let reason = match read {
                                    Ok(0) => "closed by the peer".to_string(),
                                    Ok(_) => "the peer wrote after the handshake".to_string(),
                                    Err(error) => error.to_string(),
                                };
                                info!(peer = %peer, %reason, "lost the connection to peer");
                                report_unreachable(&events, peer);
                                break;
                            }
                        },
                    };
                    let queue_state = batch.gather(message, &mut queue, peer, &dropped_messages);
                    let messages = batch.messages();
                    if messages > 0 {
                        trace!(peer = %peer, messages, bytes = batch.bytes(), "writing a batch");
                        if let Err(error) = batch.write_to(&mut stream).await {
                            warn!(peer = %peer, %error, messages, "lost the connection to peer");
                            dropped_messages.fetch_add(messages as u64, Ordering::Relaxed);
                            report_unreachable(&events, peer);
                            break;
                        }
                    }
                    if queue_state == QueueState::Closed {
                        return;
                    }
                }
            }
            Err(ConnectError::Removed) => {
                warn!(peer = %peer, "peer says this member was removed from the cluster");
                if first.is_some() {
                    dropped_messages.fetch_add(1, Ordering::Relaxed);
                }
                let _ = events.try_send(TransportEvent::RemovedFromCluster { peer });
                backoff = config.reconnect_backoff_max;
                if !drain_during(&mut queue, backoff, &dropped_messages).await {
                    return;
                }
            }
            Err(ConnectError::Failed { error, refused }) => {
                failures += 1;
                if first.is_some() {
                    dropped_messages.fetch_add(1, Ordering::Relaxed);
                }
                // Warn on the first failure and then at powers of two, so a
                // peer that is down for long does not flood the log.
                if failures.is_power_of_two() {
                    warn!(peer = %peer, failures, backoff_ms = backoff.as_millis() as u64, %error,
                        "cannot reach peer");
                } else {
                    debug!(peer = %peer, failures, %error, "cannot reach peer");
                }
                report_unreachable(&events, peer);
                if refused && !reported_down {
                    reported_down = true;
                    // Nothing listens where the peer was: its process is
                    // gone (a paused or cut-off peer would not refuse).
                    let _ = events.try_send(TransportEvent::PeerDown { peer });
                }
                // Back off, dropping what is queued meanwhile: Raft resends.
                if !drain_during(&mut queue, backoff, &dropped_messages).await {
                    return;
                }
                backoff = (backoff * 2).min(config.reconnect_backoff_max);
            }
        }
    }
}

/// Waits `duration`, dropping what is queued meanwhile. False when the
/// queue closed (the link was removed).
async fn drain_during(
    queue: &mut mpsc::Receiver<PeerMessage>,
    duration: Duration,
    dropped_messages: &AtomicU64,
) -> bool {
    let deadline = tokio::time::Instant::now() + duration;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return true,
            message = queue.recv() => match message {
                Some(_) => {
                    dropped_messages.fetch_add(1, Ordering::Relaxed);
                }
                None => return false,
            },
        }
    }
}

/// Why no connection was made.
enum ConnectError {
    /// The peer refused us as a removed member.
    Removed,
    /// Anything else, described; `refused` when nothing listens at any of
    /// the peer's addresses (its process is gone).
    Failed { error: String, refused: bool },
}

impl ConnectError {
    fn failed(error: String) -> ConnectError {
        ConnectError::Failed {
            error,
            refused: false,
        }
    }
}

fn report_unreachable(events: &mpsc::Sender<TransportEvent>, peer: NodeId) {
    // Best effort: if the node is busy it will hear from the next failure.
    let _ = events.try_send(TransportEvent::Unreachable { peer });
}

/// Tries each URL in turn; returns a connection whose handshake was accepted.
async fn connect(config: &PeerLinkConfig) -> Result<TcpStream, ConnectError> {
    let mut errors = Vec::new();
    let mut all_refused = true;
    for url in &config.urls {
        match connect_and_handshake(config, url).await {
            Ok(stream) => return Ok(stream),
            Err(ConnectError::Removed) => return Err(ConnectError::Removed),
            Err(ConnectError::Failed { error, refused }) => {
                all_refused &= refused;
                errors.push(format!("{url}: {error}"));
            }
        }
    }
    if errors.is_empty() {
        return Err(ConnectError::failed("the peer has no URLs".to_string()));
    }
    Err(ConnectError::Failed {
        error: errors.join("; "),
        refused: all_refused,
    })
}

/// Connects and handshakes.
async fn connect_and_handshake(
    config: &PeerLinkConfig,
    url: &str,
) -> Result<TcpStream, ConnectError> {
    let address = socket_address(url).map_err(|error| ConnectError::failed(error.to_string()))?;
    let mut stream =
        match tokio::time::timeout(config.connect_timeout, TcpStream::connect(address.as_str()))
            .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(ConnectError::Failed {
                    error: format!("connect failed: {error}"),
                    refused: true,
                })
            }
            Ok(Err(error)) => return Err(ConnectError::failed(format!("connect failed: {error}"))),
            Err(_) => {
                return Err(ConnectError::failed(format!(
                    "connect timed out after {} ms",
                    config.connect_timeout.as_millis()
                )))
            }
        };
    stream
        .set_nodelay(true)
        .map_err(|error| ConnectError::failed(format!("set_nodelay failed: {error}")))?;
    let handshake = Handshake::new(config.cluster_id, config.local, config.peer);
    let exchange = async {
        let payload = encode(&handshake).map_err(|error| error.to_string())?;
        write_frame(&mut stream, &payload)
            .await
            .map_err(|error| error.to_string())?;
        let reply = read_frame(&mut stream)
            .await
            .map_err(|error| error.to_string())?;
        decode::<HandshakeReply>(&reply).map_err(|error| error.to_string())
    };
    match tokio::time::timeout(config.handshake_timeout, exchange).await {
        Ok(Ok(HandshakeReply::Accepted)) => Ok(stream),
        Ok(Ok(HandshakeReply::Refused { reason })) => {
            warn!(peer = %config.peer, %url, %reason, "peer refused our handshake");
            Err(ConnectError::failed(format!("handshake refused: {reason}")))
        }
        Ok(Ok(HandshakeReply::Removed)) => Err(ConnectError::Removed),
        Ok(Err(error)) => Err(ConnectError::failed(format!("handshake failed: {error}"))),
        Err(_) => Err(ConnectError::failed(format!(
            "handshake timed out after {} ms",
            config.handshake_timeout.as_millis()
        ))),
    }
}
