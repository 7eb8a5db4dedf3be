//! End-to-end test harness: real server processes driven by the real etcdctl.
//!
//! Cairn promises that etcdctl and every etcd client work against it
//! unchanged. The only honest proof is to run etcdctl against real processes
//! and compare with what etcd itself does. So every test here runs against
//! either server, chosen by an environment variable:
//!
//! | variable             | meaning                                                        |
//! |----------------------|----------------------------------------------------------------|
//! | `CAIRN_E2E_SERVER`   | `cairn` (default) or `etcd`                                    |
//! | `CAIRN_BIN`          | the cairn binary (default: `target/<profile>/cairn`)           |
//! | `CAIRN_E2E_ETCD_BIN` | the etcd binary (default: `etcd` on `PATH`, else /usr/bin/etcd)|
//! | `CAIRN_E2E_ETCDCTL`  | the etcdctl binary (default: `etcdctl` on `PATH`)              |
//! | `CAIRN_E2E_KEEP_DIRS`| set to keep data directories and server logs after the test    |
//!
//! A missing binary fails the test with a message saying what to build or
//! install; nothing is ever skipped silently.
//!
//! A test reads like this:
//!
//! ```no_run
//! use cairn_tests::Cluster;
//!
//! let mut cluster = Cluster::start(3); // spawns, waits until every member is healthy
//! let etcdctl = cluster.etcdctl(); // talks to all members
//! etcdctl.run(&["put", "greeting", "hello"]).expect_success();
//! let reply = cluster.etcdctl_for(2).get(&["greeting"]);
//! assert_eq!(reply.kvs[0].value, "hello");
//! cluster.kill(0); // kill -9, keeps the data directory
//! cluster.restart(0); // same flags, same data directory
//! // Dropping the cluster kills every member, even when the test panics.
//! ```
//!
//! Every member gets ports from a [`PortBlock`] claimed for the life of the
//! test and a data directory inside a [`ScratchDirectory`], so tests run in
//! parallel under cargo-nextest. Every wait is bounded by a deadline and
//! polls a condition; none relies on a fixed sleep.

mod base64;
mod cluster;
mod command;
mod etcdctl;
mod port_block;
mod scratch_directory;
mod server_binary;
mod wait;

pub use base64::decode_base64;
pub use cluster::{Cluster, ClusterConfig, EndpointStatus};
pub use command::{BackgroundCommand, CommandOutput};
pub use etcdctl::{Etcdctl, KeyValue, RangeReply};
pub use port_block::PortBlock;
pub use scratch_directory::ScratchDirectory;
pub use server_binary::{ServerBinary, ServerKind};
pub use wait::{wait_until, POLL_INTERVAL};
