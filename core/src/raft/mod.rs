//! Raft consensus as a pure state machine (the Raft paper, Ongaro's
//! dissertation, and etcd-io/raft's Ready protocol).

pub mod config;
pub mod entry;
pub mod message;
pub mod node;
pub mod ready;

pub use config::Config;
pub use entry::{
    ConfChange, ConfState, Entry, EntryKind, HardState, Index, NodeId, Snapshot, SnapshotMetadata,
    Term,
};
pub use message::{Message, MessageBody};
pub use node::{PersistedState, ProposeError, Raft, Start, Status};
pub use ready::{ReadState, Ready, Role, SoftState};
