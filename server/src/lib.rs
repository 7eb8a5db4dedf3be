//! cairn-server: the production runtime around `cairn-core`.
//!
//! - [`node`]: the node driver, the only caller of `Raft::ready`/`advance`.
//! - [`storage`]: the write-ahead log and snapshot files, behind a disk seam.
//! - [`transport`]: the peer-to-peer framed TCP protocol.
//! - [`api`]: etcd's v3 gRPC services and the HTTP endpoints.
//! - [`config`]: the member's configuration from etcd's flags or YAML file.
//! - `bench`: the `cairn-bench` load generator behind `make bench`.

pub mod api;
#[cfg(not(madsim))]
pub mod bench;
pub mod config;
pub mod node;
pub mod storage;
pub mod transport;
