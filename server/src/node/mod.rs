//! The node driver: the only code that calls `Raft::ready` and `Raft::advance`.
//! It ticks, steps peer messages, proposes client requests, persists through
//! a [`LogStore`] (the WAL of [`crate::storage`] in production), sends
//! through [`crate::transport`], applies to the KV state machine, answers
//! waiters and feeds watchers.
//!
//! ```text
//! let (store, recovery) = MemoryDisk::new().open();      // or the WAL
//! let (handle, task) = start(config, Box::new(store), recovery).await?;
//! handle.put(request).await?;                              // any NodeHandle method
//! handle.shutdown().await?;                                // graceful
//! task.wait().await?;                                      // Err on storage failure
//! ```

pub mod config;
pub mod driver;
pub mod error;
pub mod handle;
pub mod log_store;
pub mod member;
pub mod metrics;
pub mod request;
pub mod snapshot_data;

pub use config::{ConfigError, InitialMember, NodeConfig, StartMode};
pub use driver::{start, start_on_disk, NodeFailure, NodeTask, StartError};
pub use error::NodeError;
pub use handle::{Member, NodeHandle, ResponseHeader, StatusInfo, WatchSession};
pub use log_store::{
    open_raft_storage, LogStore, LogStoreError, MemoryDisk, MemoryLogStore, Recovery,
};
pub use member::{cluster_id_for, member_id_for, MemberTable};
pub use metrics::{DurationHistogram, HistogramSnapshot, NodeMetrics};
pub use snapshot_data::{NodeMetadata, SnapshotData};
