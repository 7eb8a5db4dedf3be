//! Raft consensus as a pure state machine (the Raft paper, Ongaro's
//! dissertation, and etcd-io/raft's Ready protocol).
//!
//! # Driving a node
//!
//! The core does no I/O, reads no clock and spawns nothing. The driver owns
//! a [`Raft`] and a loop: feed it ticks and messages, then carry out each
//! [`Ready`] in order (persist, send, apply, answer reads) and hand it back.
//!
//! ```no_run
//! use std::collections::BTreeSet;
//! use cairn_core::raft::{Config, Message, NodeId, Raft, Start};
//! # fn tick_elapsed() -> bool { true }
//! # fn receive() -> Option<Message> { None }
//! # fn persist(_: &cairn_core::raft::Ready) {}
//! # fn send(_: Message) {}
//! # fn apply(_: &cairn_core::raft::Entry) {}
//! # fn answer_read(_: &cairn_core::raft::ReadState) {}
//! let voters: BTreeSet<NodeId> = [NodeId(1), NodeId(2), NodeId(3)].into();
//! let mut raft = Raft::new(Config::new(NodeId(1), 42), Start::New { voters });
//! loop {
//!     if tick_elapsed() { raft.tick(); }              // e.g. every 100 ms
//!     while let Some(message) = receive() { raft.step(message); }
//!     let _ = raft.propose(b"put x=1".to_vec());      // or read_index, ...
//!     let Some(mut ready) = raft.ready() else { continue };
//!     persist(&ready);                                // 1. hard state, snapshot, entries; fsync
//!     ready.messages.drain(..).for_each(send);        // 2. only after the fsync
//!     ready.committed_entries.iter().for_each(apply); // 3. in order
//!     ready.read_states.iter().for_each(answer_read); // 4. once applied reaches them
//!     raft.advance(ready);
//! }
//! ```
//!
//! # Semantics the driver relies on
//!
//! - **Start.** `Start::New` founds a cluster: the first Ready carries a
//!   bootstrap snapshot at index 0 (empty data) holding the founding
//!   voters; persist it like any snapshot, it is how a restart recovers the
//!   configuration. `Start::Join` waits, with no configuration, for the
//!   leader to send that snapshot (or a later one) and the log.
//!   `Start::Restart` takes what was persisted; the driver restores its
//!   state machine from the persisted snapshot itself, and the core hands
//!   out the committed entries after it again.
//! - **Proposals.** On the leader, [`Raft::propose`] appends at once; all
//!   proposals made before the next [`Raft::ready`] leave in one append per
//!   follower. A follower forwards to the leader it knows (fire and forget:
//!   recognise your own proposals by an id inside the data when applied);
//!   with no known leader it returns `NotLeader`.
//! - **Commit.** By a majority of voters on an entry of the leader's own
//!   term (a new leader appends an empty no-op for this). A leader counts
//!   its own entries only once a Ready carrying them has been advanced.
//! - **Reads.** [`Raft::read_index`] yields a [`ReadState`] once leadership
//!   is confirmed by a heartbeat round; serve the read when the applied
//!   index reaches `ReadState::index`. Followers forward to the leader.
//! - **Snapshots.** Call [`Raft::compact`] with a snapshot of the state
//!   machine at an applied index; the core drops the log before it and
//!   streams the snapshot, in chunks, to followers that need it.
//! - **Membership.** One change at a time, effective on every node when
//!   the entry is appended to its log (see `membership.rs` for why); the
//!   driver also sees each change in `committed_entries`. A removed leader
//!   hands over and steps down once its removal commits.
//! - **Leader transfer.** [`Raft::transfer_leader`] (and
//!   [`Raft::transfer_target`] to pick the best voter) for a graceful
//!   shutdown: the target campaigns at once, skipping pre-vote.
//!
//! Safety invariants are asserted as the code runs: cheap ones always, the
//! O(n) `check_invariants` at the end of every entry point in debug builds.

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
#[cfg(madsim)]
pub use config::PlantedRaftBug;
pub use entry::{
    ConfChange, ConfState, Entry, EntryKind, HardState, Index, NodeId, Snapshot, SnapshotMetadata,
    Term,
};
pub use message::{Message, MessageBody};
pub use node::{PersistedState, ProposeError, Raft, Start, Status, READY_COMMITTED_BYTES_MAX};
pub use read_only::READS_PENDING_MAX;
pub use ready::{ReadState, Ready, Role, SoftState};
