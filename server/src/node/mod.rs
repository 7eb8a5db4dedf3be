//! The node driver: the only code that calls `Raft::ready` and `Raft::advance`.
//! It ticks, steps peer messages, proposes client requests, persists through
//! [`crate::storage`], sends through [`crate::transport`], applies to the KV
//! state machine, answers waiters and feeds watchers.

pub mod error;
pub mod handle;

pub use error::NodeError;
pub use handle::{Member, NodeHandle, ResponseHeader, StatusInfo, WatchSession};
