//! etcd's MVCC key-value model as a pure, deterministic state machine:
//! revisions, key history, compaction, transactions, leases and the event
//! stream that watches are served from.

pub mod command;
pub mod error;
pub mod lease;
pub mod mvcc;
pub mod range;
pub mod request;
pub mod store;
pub mod txn;
pub mod watch;

pub use command::{Command, CommandResponse, Envelope, LeaseCheckpoint};
pub use error::{GrpcCode, KvError};
pub use request::*;
pub use store::{Applied, KvConfig, KvStore};
pub use watch::{StreamId, WatchHub};
