//! [`FrameBatch`]: the frames one socket write carries. Under load Raft
//! queues many small messages to a peer at once (appends, heartbeats,
//! responses); sending each in its own write costs a syscall per message,
//! which on a small machine is what the cluster spends its CPU on. The peer
//! task encodes the message it woke for and whatever is already queued
//! behind it (never waiting for more, so latency is unchanged) into one
//! reused buffer, then writes the whole batch at once.

use std::sync::atomic::{AtomicU64, Ordering};

use cairn_core::raft::NodeId;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tracing::warn;

use super::frame::{encode_frame_into, FrameError};
use super::peer_message::PeerMessage;

/// A batch stops taking queued messages once it holds this many bytes, so
/// one write stays a bounded amount of memory and socket time. A single
/// message may take it past this, up to one frame's bound.
pub const BATCH_BYTES_MAX: usize = 256 * 1024;

/// A batch stops taking queued messages once it holds this many.
pub const BATCH_MESSAGES_MAX: usize = 1024;

/// After a write, a buffer that grew beyond this (one unusually large
/// message) gives the memory back rather than keep it for the link's life.
pub const BATCH_BUFFER_BYTES_RETAINED: usize = 1024 * 1024;

/// What the queue looked like when a batch stopped taking messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QueueState {
    /// Still open: empty for now, or the batch reached a bound.
    Open,
    /// Every sender is gone and the queue is drained: the link was removed.
    Closed,
}

/// Whole frames awaiting one write, in a buffer reused from batch to batch.
#[derive(Debug, Default)]
pub(crate) struct FrameBatch {
    /// Length-prefixed frames, back to back.
    /// Invariant: holds exactly `messages` whole frames.
    buffer: Vec<u8>,
    messages: usize,
}

impl FrameBatch {
    /// An empty batch. Its buffer grows with use, up to the batch bounds.
    pub(crate) fn new() -> Self {
        FrameBatch::default()
    }

    /// The messages encoded so far.
    pub(crate) fn messages(&self) -> usize {
        self.messages
    }

    /// The bytes encoded so far, prefixes included.
    pub(crate) fn bytes(&self) -> usize {
        self.buffer.len()
    }

    /// Whether the batch has reached a bound and should take no more.
    pub(crate) fn is_full(&self) -> bool {
        self.buffer.len() >= BATCH_BYTES_MAX || self.messages >= BATCH_MESSAGES_MAX
    }

    /// Appends `message` as one frame. On error the batch is unchanged.
    pub(crate) fn push(&mut self, message: &PeerMessage) -> Result<(), FrameError> {
        encode_frame_into(&mut self.buffer, message)?;
        self.messages += 1;
        Ok(())
    }

    /// Encodes `first` and then whatever is already waiting in `queue`,
    /// without waiting for more, until the queue is empty or the batch is
    /// full. A message that does not encode is dropped and counted.
    pub(crate) fn gather(
        &mut self,
        first: PeerMessage,
        queue: &mut mpsc::Receiver<PeerMessage>,
        peer: NodeId,
        dropped_messages: &AtomicU64,
    ) -> QueueState {
        self.push_or_drop(&first, peer, dropped_messages);
        while !self.is_full() {
            match queue.try_recv() {
                Ok(message) => self.push_or_drop(&message, peer, dropped_messages),
                Err(TryRecvError::Empty) => return QueueState::Open,
                Err(TryRecvError::Disconnected) => return QueueState::Closed,
            }
        }
        QueueState::Open
    }

    fn push_or_drop(&mut self, message: &PeerMessage, peer: NodeId, dropped_messages: &AtomicU64) {
        if let Err(error) = self.push(message) {
            warn!(peer = %peer, %error, "dropping a message that does not encode");
            dropped_messages.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes the whole batch with one `write_all` and flushes it (a no-op
    /// for a kernel socket; the simulator's streams send on flush). The
    /// batch is empty afterwards, whether or not the write succeeded.
    pub(crate) async fn write_to<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
    ) -> Result<(), FrameError> {
        let written = async {
            writer.write_all(&self.buffer).await?;
            writer.flush().await
        }
        .await;
        self.clear();
        written.map_err(FrameError::Io)
    }

    /// Empties the batch, keeping its buffer unless it grew unusually large.
    pub(crate) fn clear(&mut self) {
        self.buffer.clear();
        self.messages = 0;
        if self.buffer.capacity() > BATCH_BUFFER_BYTES_RETAINED {
            self.buffer.shrink_to(BATCH_BYTES_MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use cairn_core::raft::{Entry, EntryKind, Index, Message, MessageBody, Term};
    use tokio::io::BufReader;

    use super::*;
    use crate::transport::frame::{decode, read_frame_into, FrameError, FRAME_BYTES_MAX};
    use crate::transport::listener::INBOUND_READ_BUFFER_BYTES;

    /// Collects what is written and counts the write calls it took.
    #[derive(Default)]
    struct CountingWriter {
        written: Vec<u8>,
        write_calls: usize,
        flush_calls: usize,
    }

    impl AsyncWrite for CountingWriter {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _context: &mut Context<'_>,
            bytes: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.write_calls += 1;
            self.written.extend_from_slice(bytes);
            Poll::Ready(Ok(bytes.len()))
        }

        fn poll_flush(
            mut self: Pin<&mut Self>,
            _context: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            self.flush_calls += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: Pin<&mut Self>,
            _context: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn heartbeat(commit: u64) -> PeerMessage {
        PeerMessage::Raft(Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(1),
            body: MessageBody::Heartbeat {
                commit: Index(commit),
                context: Vec::new(),
            },
        })
    }

    fn append(index: u64, data_bytes: usize) -> PeerMessage {
        PeerMessage::Raft(Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(1),
            body: MessageBody::Append {
                prev_log_index: Index(index - 1),
                prev_log_term: Term(1),
                entries: vec![Entry {
                    term: Term(1),
                    index: Index(index),
                    kind: EntryKind::Normal,
                    data: vec![7; data_bytes],
                }],
                commit: Index(index - 1),
            },
        })
    }

    /// Decodes every frame in `bytes`, in order, through a buffered reader.
    async fn read_all(bytes: Vec<u8>) -> Vec<PeerMessage> {
        let mut reader = BufReader::with_capacity(INBOUND_READ_BUFFER_BYTES, bytes.as_slice());
        let mut payload = Vec::new();
        let mut messages = Vec::new();
        loop {
            match read_frame_into(&mut reader, &mut payload).await {
                Ok(()) => messages.push(decode(&payload).unwrap()),
                Err(FrameError::Closed) => return messages,
                Err(error) => panic!("frame {} does not read: {error}", messages.len()),
            }
        }
    }

    #[tokio::test]
    async fn a_queued_burst_leaves_in_one_write() {
        let (sender, mut queue) = mpsc::channel(256);
        for commit in 0..100 {
            sender.try_send(heartbeat(commit)).unwrap();
        }
        let dropped = AtomicU64::new(0);
        let first = queue.try_recv().unwrap();
        let mut batch = FrameBatch::new();
        let state = batch.gather(first, &mut queue, NodeId(2), &dropped);
        assert_eq!(state, QueueState::Open);
        assert_eq!(batch.messages(), 100);
        let mut writer = CountingWriter::default();
        batch.write_to(&mut writer).await.unwrap();
        assert_eq!(writer.write_calls, 1, "the burst took several writes");
        assert_eq!(writer.flush_calls, 1);
        assert_eq!(batch.messages(), 0);
        assert_eq!(batch.bytes(), 0);
        assert!(queue.try_recv().is_err(), "messages were left queued");
        let expected: Vec<PeerMessage> = (0..100).map(heartbeat).collect();
        assert_eq!(read_all(writer.written).await, expected);
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_batch_stops_at_its_message_bound_and_the_rest_follows_in_order() {
        let total = BATCH_MESSAGES_MAX * 2 + 5;
        let (sender, mut queue) = mpsc::channel(total);
        for commit in 0..total as u64 {
            sender.try_send(heartbeat(commit)).unwrap();
        }
        let dropped = AtomicU64::new(0);
        let mut batch = FrameBatch::new();
        let mut writer = CountingWriter::default();
        let mut batch_sizes = Vec::new();
        while let Ok(first) = queue.try_recv() {
            batch.gather(first, &mut queue, NodeId(2), &dropped);
            batch_sizes.push(batch.messages());
            batch.write_to(&mut writer).await.unwrap();
        }
        assert_eq!(batch_sizes, vec![BATCH_MESSAGES_MAX, BATCH_MESSAGES_MAX, 5]);
        assert_eq!(writer.write_calls, 3);
        let expected: Vec<PeerMessage> = (0..total as u64).map(heartbeat).collect();
        assert_eq!(read_all(writer.written).await, expected);
    }

    #[tokio::test]
    async fn a_batch_stops_at_its_byte_bound() {
        let data_bytes = 100 * 1024;
        let (sender, mut queue) = mpsc::channel(16);
        for index in 1..=10 {
            sender.try_send(append(index, data_bytes)).unwrap();
        }
        let dropped = AtomicU64::new(0);
        let mut batch = FrameBatch::new();
        let first = queue.try_recv().unwrap();
        batch.gather(first, &mut queue, NodeId(2), &dropped);
        // Two appends stay under the bound; the third crosses it.
        assert_eq!(batch.messages(), 3);
        assert!(batch.bytes() >= BATCH_BYTES_MAX, "{} bytes", batch.bytes());
        assert!(batch.bytes() < BATCH_BYTES_MAX + data_bytes + 1024);
    }

    #[tokio::test]
    async fn a_closed_queue_is_reported_after_what_it_held() {
        let (sender, mut queue) = mpsc::channel(8);
        for commit in 0..3 {
            sender.try_send(heartbeat(commit)).unwrap();
        }
        drop(sender);
        let dropped = AtomicU64::new(0);
        let mut batch = FrameBatch::new();
        let first = queue.try_recv().unwrap();
        assert_eq!(
            batch.gather(first, &mut queue, NodeId(2), &dropped),
            QueueState::Closed
        );
        assert_eq!(batch.messages(), 3);
    }

    #[tokio::test]
    async fn a_message_that_does_not_encode_is_dropped_and_the_rest_kept() {
        let (sender, mut queue) = mpsc::channel(8);
        sender
            .try_send(append(2, FRAME_BYTES_MAX as usize))
            .unwrap();
        sender.try_send(heartbeat(9)).unwrap();
        let dropped = AtomicU64::new(0);
        let mut batch = FrameBatch::new();
        batch.gather(heartbeat(8), &mut queue, NodeId(2), &dropped);
        assert_eq!(dropped.load(Ordering::Relaxed), 1);
        assert_eq!(batch.messages(), 2);
        let mut writer = CountingWriter::default();
        batch.write_to(&mut writer).await.unwrap();
        assert_eq!(
            read_all(writer.written).await,
            vec![heartbeat(8), heartbeat(9)]
        );
        assert!(
            batch.buffer.capacity() <= BATCH_BUFFER_BYTES_RETAINED,
            "the buffer kept {} bytes",
            batch.buffer.capacity()
        );
    }
}
