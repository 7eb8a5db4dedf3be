//! The command line of `cairn-bench`, after etcd's `tools/benchmark`: the
//! connection and load-shape flags are global (`--endpoints --conns
//! --clients --total --rate`), each workload is a subcommand with etcd's
//! flag names and defaults.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Default client endpoint, as in etcd's benchmark.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:2379";
/// Default per-request deadline; a request still pending then is an error.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Default bound on dialing one connection.
pub const DEFAULT_DIAL_TIMEOUT_MS: u64 = 5_000;

/// `cairn-bench`: a load generator for etcd's v3 gRPC API.
#[derive(Debug, Parser)]
#[command(
    name = "cairn-bench",
    version,
    about = "A load generator for etcd's v3 gRPC API (Cairn or etcd), after etcd's tools/benchmark"
)]
pub struct BenchArgs {
    /// Flags shared by every workload.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The workload.
    #[command(subcommand)]
    pub command: Command,
}

/// Connection and load-shape flags.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Comma-separated client endpoints (host:port or http://host:port);
    /// connections are spread over them round-robin.
    #[arg(long, global = true, value_delimiter = ',', default_value = DEFAULT_ENDPOINT)]
    pub endpoints: Vec<String>,
    /// Number of gRPC connections (HTTP/2 channels).
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: usize,
    /// Number of concurrent clients, sharing the connections round-robin.
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: usize,
    /// Total number of requests, split among the clients.
    #[arg(long, global = true, default_value_t = 10_000)]
    pub total: u64,
    /// Maximum requests per second over all clients (0: no cap).
    #[arg(long, global = true, default_value_t = 0)]
    pub rate: u64,
    /// Per-request deadline in milliseconds.
    #[arg(long, global = true, default_value_t = DEFAULT_REQUEST_TIMEOUT_MS)]
    pub request_timeout_ms: u64,
    /// Bound on dialing each connection, in milliseconds.
    #[arg(long, global = true, default_value_t = DEFAULT_DIAL_TIMEOUT_MS)]
    pub dial_timeout_ms: u64,
    /// Seed of the key and value generators (runs are reproducible).
    #[arg(long, global = true, default_value_t = 0)]
    pub seed: u64,
    /// Print the report as one JSON line instead of etcd's text summary.
    #[arg(long, global = true)]
    pub json: bool,
    /// Tokio worker threads. 1 (the default) runs every client on tokio's
    /// current-thread scheduler, which batches the requests of a
    /// connection's clients into one write as grpc-go does (its numbers
    /// then match etcd's benchmark); 0 means one per core, for loads one
    /// core cannot generate.
    #[arg(long, global = true, default_value_t = 1)]
    pub worker_threads: usize,
}

impl GlobalArgs {
    /// The per-request deadline.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The bound on dialing one connection.
    pub fn dial_timeout(&self) -> Duration {
        Duration::from_millis(self.dial_timeout_ms)
    }
}

/// The workloads.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Put keys (etcd `benchmark put`).
    Put(PutArgs),
    /// Range one key or key range (etcd `benchmark range`).
    Range(RangeArgs),
    /// Transactions of puts (etcd `benchmark txn-put`).
    TxnPut(TxnPutArgs),
    /// Many watchers on one prefix, one putter; measures event fan-out.
    Watch(WatchArgs),
    /// Time until a linearizable get succeeds on every endpoint.
    Health(HealthArgs),
    /// Put every interval, SIGKILL a member, time until the first
    /// successful put sent after the kill.
    Failover(FailoverArgs),
}

/// The shape of generated keys and values.
#[derive(Debug, Clone, Args)]
pub struct KeyValueShape {
    /// Key size in bytes.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
    /// Use sequential keys (request number modulo the key space) instead of
    /// random ones.
    #[arg(long)]
    pub sequential_keys: bool,
}

/// `put` flags.
#[derive(Debug, Clone, Args)]
pub struct PutArgs {
    /// Keys and values.
    #[command(flatten)]
    pub shape: KeyValueShape,
}

/// Read consistency, etcd's `--consistency=l|s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    /// Linearizable: read through the leader's read index.
    #[value(name = "l")]
    Linearizable,
    /// Serializable: served from the member's local state.
    #[value(name = "s")]
    Serializable,
}

/// `range` flags.
#[derive(Debug, Clone, Args)]
pub struct RangeArgs {
    /// The key to read.
    pub key: String,
    /// Optional end of the range (exclusive).
    pub end_key: Option<String>,
    /// Linearizable (`l`) or serializable (`s`).
    #[arg(long, value_enum, default_value = "l")]
    pub consistency: Consistency,
    /// Maximum keys per response (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
}

/// `txn-put` flags.
#[derive(Debug, Clone, Args)]
pub struct TxnPutArgs {
    /// Keys and values.
    #[command(flatten)]
    pub shape: KeyValueShape,
    /// Puts per transaction.
    #[arg(long, default_value_t = 1)]
    pub txn_ops: usize,
}

/// `watch` flags.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Watch streams, spread over the connections.
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    /// Watchers created on each stream, all on the same key prefix.
    #[arg(long, default_value_t = 10)]
    pub watchers_per_stream: usize,
    /// Puts issued by the putter (each fans out to every watcher).
    #[arg(long, default_value_t = 1_000)]
    pub put_total: u64,
    /// Puts per second (0: as fast as one sequential putter goes).
    #[arg(long, default_value_t = 100)]
    pub put_rate: u64,
    /// Value size in bytes (at least the 8-byte send timestamp).
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// The watched key prefix; put keys are this prefix plus a number.
    #[arg(long, default_value = "/cairn-bench/watch/")]
    pub prefix: String,
    /// How long to wait for missing events after the last put, in ms.
    #[arg(long, default_value_t = 10_000)]
    pub drain_timeout_ms: u64,
}

/// `health` flags.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// Pause between rounds of probes, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub interval_ms: u64,
    /// The key read by the probe.
    #[arg(long, default_value = "health")]
    pub key: String,
}

/// `failover` flags.
#[derive(Debug, Clone, Args)]
pub struct FailoverArgs {
    /// The member to SIGKILL (its endpoint should not be in --endpoints).
    #[arg(long)]
    pub kill_pid: u32,
    /// Put successfully for this long before the kill, in milliseconds.
    #[arg(long, default_value_t = 300)]
    pub kill_after_ms: u64,
    /// Interval between puts, in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub interval_ms: u64,
    /// Deadline of each put, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub put_timeout_ms: u64,
    /// Give up if no put succeeds this long after the kill, in milliseconds.
    #[arg(long, default_value_t = 15_000)]
    pub recover_timeout_ms: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
}
