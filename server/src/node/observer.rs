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

use cairn_core::kv::{Command, Event, KvStore, Revision};
use cairn_core::raft::{Entry, Index, NodeId, Status};

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
    /// The committed entries this Ready applied.
    pub committed: &'a [Entry],
    /// The index the key-value store reflects.
    pub applied: Index,
    /// The key-value store at `applied`.
    pub store: &'a KvStore,
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
}
