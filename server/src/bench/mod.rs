//! The load generator behind `make bench` (binary `cairn-bench`).
//!
//! It speaks etcd's v3 gRPC API only, so the same tool measures Cairn and
//! etcd alike, and its flags follow etcd's own `tools/benchmark` where they
//! apply (`--endpoints --conns --clients --total`, `put --key-size
//! --val-size --key-space-size --sequential-keys`, `range KEY
//! --consistency=l|s`, `txn-put`, `watch`). Two more commands serve the
//! orchestrator (`tests/bench.py`): `health` (time until a linearizable get
//! succeeds on every endpoint) and `failover` (kill -9 a member, time until
//! the first successful put issued after the kill).
//!
//! The shape of a run: [`connection::ConnectionPool`] dials `--conns`
//! HTTP/2 channels; `--clients` tokio tasks share them round-robin and draw
//! request tickets from one counter until `--total` is reached
//! ([`load`]); each success's latency goes into a per-client
//! [`latency::LatencyHistogram`] (microseconds, HDR), each failure is counted
//! by gRPC code; the merged result is a [`report::Report`], printed like
//! etcd's benchmark summary or as one JSON line (`--json`).
//!
//! Architecture invariant: nothing here knows Cairn's internals; only the
//! generated etcd client stubs in [`crate::api::proto`] are used.

pub mod command;
pub mod config;
pub mod connection;
pub mod error;
pub mod failover;
pub mod health;
pub mod key;
pub mod latency;
pub mod load;
pub mod report;
pub mod watch;

pub use command::run;
pub use config::BenchArgs;
pub use error::BenchError;
pub use report::Report;
