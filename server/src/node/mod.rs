//! The node driver: the only code that calls `Raft::ready` and `Raft::advance`.
//! It ticks, steps peer messages, proposes client requests, persists through
//! a [`LogStore`] (the WAL of [`crate::storage`] in production), sends
//! through [`crate::transport`], applies to the KV state machine, answers
//! waiters and feeds watchers.
//!
//! ```text
//! let config = NodeConfig::new(name, token, initial_cluster, StartMode::New,
//!                              listen_peer_url, advertise_client_urls, data_dir)?;
//! let (handle, task) = start_on_disk(config, Arc::new(OsDisk)).await?;  // the WAL
//! handle.put(request).await?;             // any NodeHandle method; clone freely
//! handle.shutdown().await?;               // graceful: hands leadership over first
//! task.wait().await?;                     // Err(NodeFailure) after a storage failure
//! ```
//!
//! Inside, one task owns everything and loops: wait for a tick, a peer
//! message or a client request; drain what else is queued; then for each
//! Ready persist (one fsync), send, apply, answer reads, advance; then route
//! watch responses. Tests and the simulator may use [`start`] with any
//! [`LogStore`] (e.g. [`MemoryDisk`]).

pub mod config;
pub mod driver;
pub mod error;
pub mod handle;
pub mod log_store;
pub mod member;
pub mod metrics;
pub mod observer;
#[cfg(madsim)]
pub mod planted_bug;
pub mod request;
pub mod snapshot_data;

pub use config::{AutoCompaction, ConfigError, InitialMember, NodeConfig, StartMode};
pub use driver::{start, start_on_disk, NodeFailure, NodeTask, StartError};
pub use error::NodeError;
pub use handle::{Member, NodeHandle, ResponseHeader, StatusInfo, WatchSession};
pub use log_store::{
    open_raft_storage, LogStore, LogStoreError, MemoryDisk, MemoryLogStore, Recovery,
};
pub use member::{cluster_id_for, member_id_for, MemberTable};
pub use metrics::{DurationHistogram, HistogramSnapshot, NodeMetrics};
pub use observer::{
    AppliedCommand, MessageFate, NodeObserver, ReadyObservation, RecoveryObservation,
};
#[cfg(madsim)]
pub use planted_bug::PlantedBug;
pub use snapshot_data::{NodeMetadata, SnapshotData};
