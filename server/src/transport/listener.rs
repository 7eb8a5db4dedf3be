//! The inbound half of the transport: accept peer connections, check each
//! handshake, then read frames and hand them to the node loop. A peer that
//! sends garbage, an oversized frame, or Raft messages in someone else's
//! name loses its connection with a warning; the listener carries on.
//!
//! Each connection is read through a buffer, so a burst of small frames
//! (the peer writes them in batches) costs one read rather than two or
//! three per frame, and every frame's payload lands in one reused buffer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cairn_core::raft::NodeId;
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::frame::{decode, encode, read_frame_into, write_frame, FrameError};
use super::handshake::{Handshake, HandshakeReply};
use super::peer_message::PeerMessage;
use super::{RemovedMembers, TransportEvent};

/// After a failed accept (e.g. out of file descriptors), wait this long
/// before the next, so the loop does not spin.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// The read buffer of each inbound connection: room for a few hundred
/// small Raft messages per read. Larger frames bypass it.
pub const INBOUND_READ_BUFFER_BYTES: usize = 64 * 1024;

/// After a frame, a payload buffer that grew beyond this (one unusually
/// large frame, such as a snapshot chunk) gives the memory back rather
/// than keep it for the connection's life.
pub const INBOUND_PAYLOAD_BYTES_RETAINED: usize = 1024 * 1024;

/// What every inbound connection task shares.
#[derive(Clone, Debug)]
pub(crate) struct InboundContext {
    pub cluster_id: u64,
    pub local: NodeId,
    pub handshake_timeout: Duration,
    pub events: mpsc::Sender<TransportEvent>,
    /// Changes (or closes) when the transport is dropped.
    pub shutdown: watch::Receiver<()>,
    /// Members whose connections are refused.
    pub removed_members: RemovedMembers,
}

impl InboundContext {
    fn is_removed(&self, member: NodeId) -> bool {
        self.removed_members
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&member)
    }
}

/// Why an inbound connection was closed.
#[derive(Debug, thiserror::Error)]
enum InboundError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("no handshake within {timeout_ms} ms")]
    HandshakeTimeout { timeout_ms: u64 },
    #[error("a raft message from {claimed} to {to} on member {peer}'s connection")]
    ForgedSender {
        peer: NodeId,
        claimed: NodeId,
        to: NodeId,
    },
}

/// Accepts connections until the task is aborted.
pub(crate) async fn run_listener(
    listener: TcpListener,
    context: InboundContext,
    connections: Arc<Semaphore>,
) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "accepting a peer connection failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            warn!(%remote, "too many inbound peer connections; closing the new one");
            continue;
        };
        tokio::task::spawn(serve(stream, remote, context.clone(), permit));
    }
}

async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    mut context: InboundContext,
    _permit: OwnedSemaphorePermit,
) {
    // Writes (the handshake reply) pass straight through the reader.
    let mut stream = BufReader::with_capacity(INBOUND_READ_BUFFER_BYTES, stream);
    let mut shutdown = context.shutdown.clone();
    tokio::select! {
        _ = shutdown.changed() => {}
        result = read_inbound(&mut stream, remote, &mut context) => match result {
            Ok(()) => debug!(%remote, "inbound peer connection closed"),
            Err(error) => warn!(%remote, %error, "closing inbound peer connection"),
        },
    }
}

async fn read_inbound(
    stream: &mut BufReader<TcpStream>,
    remote: SocketAddr,
    context: &mut InboundContext,
) -> Result<(), InboundError> {
    let handshake_timeout_ms = context.handshake_timeout.as_millis() as u64;
    let mut payload = Vec::new();
    match tokio::time::timeout(
        context.handshake_timeout,
        read_frame_into(stream, &mut payload),
    )
    .await
    {
        Ok(read) => read?,
        Err(_) => {
            return Err(InboundError::HandshakeTimeout {
                timeout_ms: handshake_timeout_ms,
            })
        }
    }
    let handshake: Handshake = decode(&payload)?;
    if let Err(reason) = handshake.check(context.cluster_id, context.local) {
        warn!(%remote, from = %handshake.from, %reason, "refused a peer connection");
        let reply = encode(&HandshakeReply::Refused { reason })?;
        // The refusal is a courtesy; the connection closes either way.
        let _ = tokio::time::timeout(context.handshake_timeout, write_frame(stream, &reply)).await;
        return Ok(());
    }
    let peer = handshake.from;
    if context.is_removed(peer) {
        warn!(%remote, from = %peer, "refused a member removed from the cluster");
        let reply = encode(&HandshakeReply::Removed)?;
        let _ = tokio::time::timeout(context.handshake_timeout, write_frame(stream, &reply)).await;
        return Ok(());
    }
    let reply = encode(&HandshakeReply::Accepted)?;
    write_frame(stream, &reply).await?;
    debug!(%remote, peer = %peer, "accepted a peer connection");
    loop {
        match read_frame_into(stream, &mut payload).await {
            Ok(()) => {}
            Err(FrameError::Closed) => return Ok(()),
            Err(error) => return Err(error.into()),
        }
        if context.is_removed(peer) {
            // Closing makes it reconnect, and the handshake tells it why.
            debug!(%remote, peer = %peer, "closing the connection of a removed member");
            return Ok(());
        }
        let message: PeerMessage = decode(&payload)?;
        if payload.capacity() > INBOUND_PAYLOAD_BYTES_RETAINED {
            payload = Vec::new();
        }
        if message == PeerMessage::Ping {
            continue;
        }
        if let PeerMessage::Raft(raft) = &message {
            if raft.from != peer || raft.to != context.local {
                return Err(InboundError::ForgedSender {
                    peer,
                    claimed: raft.from,
                    to: raft.to,
                });
            }
        }
        let event = TransportEvent::Received {
            from: peer,
            message,
        };
        if context.events.send(event).await.is_err() {
            // The node is gone.
            return Ok(());
        }
    }
}
