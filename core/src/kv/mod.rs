//! etcd's MVCC key-value model as a pure, deterministic state machine:
//! revisions, key history, compaction, transactions, leases and the event
//! stream that watches are served from.
//!
//! How a node driver uses it (every member runs the same apply loop; only
//! the leader tracks lease deadlines):
//!
//! ```text
//! store.validate(&command)?;                     // before proposing (etcd's gRPC checks)
//! // ... Raft commits bincode(Envelope { request_id, command }) ...
//! let applied = store.apply(&command, now_ms);   // deterministic; errors included
//! hub.on_applied(&store, &applied.events);       // right after every apply
//! reply(request_id, applied.response, applied.revision);
//! for (stream, response) in hub.poll(&store, responses_max) { send(stream, response) }
//!
//! store.range(&request)                          // reads, at a revision or current
//! hub.create(&store, stream, request) / cancel / request_progress / close_stream
//! hub.progress_notify_all(&store)                // on a timer
//!
//! // leader only:
//! store.lease_promote(now_ms) on becoming leader, lease_demote() on losing it
//! store.lease_renew(id, now_ms)                  // LeaseKeepAlive
//! store.lease_expired(now_ms)   -> propose Command::LeaseRevoke { id } (once per retry interval)
//! store.lease_checkpoints(now_ms) -> propose Command::LeaseCheckpoint periodically
//! store.lease_renewal_checkpoints() -> propose Command::LeaseCheckpoint soon after keep-alives
//!
//! // snapshots: store.snapshot() / KvStore::restore(config, bytes), then
//! // hub.on_store_reset(&store) and, on the leader, store.lease_promote(now_ms).
//! ```
//!
//! Files: [`mvcc`] (key histories, revisions, compaction, change log),
//! [`range`] (Range semantics), [`txn`] (request checks, compares, the
//! write path), [`lease`], [`store`] (apply, snapshot, hash), [`watch`].

pub mod alarm;
pub mod command;
pub mod error;
pub mod lease;
pub mod mvcc;
pub mod range;
pub mod request;
pub mod store;
pub mod txn;
pub mod watch;

pub use alarm::{AlarmAction, AlarmMember, AlarmRequest, AlarmType};
pub use command::{Command, CommandResponse, Envelope, LeaseCheckpoint};
pub use error::{GrpcCode, KvError};
pub use request::*;
#[cfg(madsim)]
pub use store::PlantedKvBug;
pub use store::{Applied, KvConfig, KvStore};
pub use watch::{StreamId, WatchConfig, WatchHub, PROGRESS_WATCH_ID};
