//! Raft consensus as a pure state machine (the Raft paper, Ongaro's
//! dissertation, and etcd-io/raft's Ready protocol).
//!
//! PLACEHOLDER_MANUAL

pub mod config;
pub mod entry;
pub mod message;
pub mod node;
pub mod ready;

mod election;
mod inflights;
mod log;
mod membership;
mod progress;
mod quorum;
mod read_only;
mod replication;

pub use config::Config;
pub use entry::{
    ConfChange, ConfState, Entry, EntryKind, HardState, Index, NodeId, Snapshot, SnapshotMetadata,
    Term,
};
pub use message::{Message, MessageBody};
pub use node::{PersistedState, ProposeError, Raft, Start, Status, READY_COMMITTED_BYTES_MAX};
pub use read_only::READS_PENDING_MAX;
pub use ready::{ReadState, Ready, Role, SoftState};
