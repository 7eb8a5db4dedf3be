//! etcd's v3 client API over a running node: the gRPC services (KV, Watch,
//! Lease, Cluster, Maintenance, Auth, Lock, Election, Health), each mapping
//! protobuf messages one-to-one onto `cairn_core::kv` requests and calling
//! [`crate::node::NodeHandle`]; the HTTP endpoints `/health` and `/metrics`
//! beside them; and [`serve`], which runs it all on the configured listeners.
//!
//! Every failure reaches the client as etcd's gRPC code and message string
//! ([`status`]), because etcdctl and the client libraries switch on them.

pub mod auth;
pub mod backend;
pub mod cluster;
pub mod concurrency;
pub mod election;
pub mod health;
#[cfg(not(madsim))]
pub mod http;
pub mod kv;
pub mod leader;
pub mod lease;
pub mod limits;
pub mod lock;
pub mod maintenance;
pub mod metrics;
#[cfg(test)]
pub mod model;
pub mod proto;
pub mod server;
pub mod status;
pub mod stream;
pub mod watch;
pub mod wire;

pub use limits::RequestLimits;
pub use metrics::Metrics;
pub use server::{serve, ServeError};
