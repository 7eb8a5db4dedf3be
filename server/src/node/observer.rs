//! [`NodeObserver`]: an optional hook through which a simulator watches one
//! member from the inside and decides the fate of its outgoing messages.
//!
//! The production binary never sets it (`NodeConfig::observer` is `None`),
//! and the driver then does no extra work. The simulator sets it to feed its
//! checkers (Raft invariants after every Ready, every applied revision into
//! the committed event log) and to inject message loss and duplication on
//! specific links, so the code under test is exactly the production code.
//! Every callback runs synchronously on the driver task and must not block.

use std::fmt;
use std::time::Duration;

use cairn_core::kv::{Command, Event, KvStore, Revision};
use cairn_core::raft::{Entry, Index, NodeId, SnapshotMetadata, Status, Term};

use crate::transport::PeerMessage;

/// What happens to one outgoing peer message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageFate {
    /// Hand it to the transport as usual.
    Deliver,
    /// Lose it.
    Drop,
    /// Hand it to the transport twice.
    Duplicate,
}

/// What a member looks like right after it processed one Ready.
#[derive(Debug)]
pub struct ReadyObservation<'a> {
    /// The member.
    pub member: NodeId,
    /// Raft's status after the Ready was persisted, sent and applied.
    pub status: Status,
    /// The entries this Ready appended to the log (now persisted), preceded
    /// by the entry before them when the log still holds it (so that a
    /// checker sees the link: log matching).
    pub appended: &'a [Entry],
    /// The snapshot this Ready persisted (it replaced the log up to its
    /// index), if any; `appended` follows it.
    pub snapshot: Option<&'a SnapshotMetadata>,
    /// The committed entries this Ready applied.
    pub committed: &'a [Entry],
    /// The index the key-value store reflects.
    pub applied: Index,
    /// The key-value store at `applied`.
    pub store: &'a KvStore,
}

/// What a restarting member recovered from its disk: exactly the log the
/// Raft core starts from (after a crash, what the disk had made durable).
#[derive(Debug)]
pub struct RecoveryObservation<'a> {
    /// The member.
    pub member: NodeId,
    /// The term of the recovered hard state.
    pub term: Term,
    /// The recovered snapshot, if any: the log up to its index.
    pub snapshot: Option<&'a SnapshotMetadata>,
    /// The recovered entries after the snapshot, in index order.
    pub entries: &'a [Entry],
}

/// One command as a member applied it.
#[derive(Debug)]
pub struct AppliedCommand<'a> {
    /// The member.
    pub member: NodeId,
    /// The log index of the entry.
    pub index: Index,
    /// The command.
    pub command: &'a Command,
    /// The store's revision after it.
    pub revision: Revision,
    /// The events of the new revision (empty when nothing changed).
    pub events: &'a [Event],
}

/// Callbacks from the driver task. Implementations must be cheap and must
/// not block: they run inside the driver loop.
pub trait NodeObserver: Send + Sync + fmt::Debug {
    /// After every processed Ready.
    fn on_ready(&self, observation: &ReadyObservation<'_>);
    /// After every applied command.
    fn on_applied(&self, applied: &AppliedCommand<'_>);
    /// Before a peer message goes to the transport.
    fn on_send(&self, from: NodeId, to: NodeId, message: &PeerMessage) -> MessageFate;
    /// Before `member` makes a Ready's `entries` (and hard state) durable
    /// with an fsync: `Some(delay)` makes that fsync take `delay` of
    /// simulated time *before* the data is durable. The batch is written
    /// but unsynced meanwhile; the driver task sleeps while the member's
    /// other tasks (transport, client API) run on, and a crash in that
    /// window loses or tears the batch, as a process killed inside
    /// fdatasync would. `None` (the default) syncs at once.
    fn fsync_delay(&self, member: NodeId, entries: &[Entry]) -> Option<Duration> {
        let _ = (member, entries);
        None
    }
    /// When a member restarts on a data dir that held state, before its
    /// first Ready.
    fn on_recovered(&self, _recovery: &RecoveryObservation<'_>) {}
}
