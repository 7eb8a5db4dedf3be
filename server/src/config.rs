//! [`ServerConfig`]: a `cairn` member's configuration, from etcd's command
//! line flags or from an etcd-style YAML `--config-file`, validated into
//! typed values with one-line errors that name the offending flag.
//!
//! As in etcd, when `--config-file` is given every other flag is ignored
//! (the loader reports which were given, so the binary can warn), and
//! unknown keys in the file are ignored (etcd's sample file has many keys
//! Cairn does not use, such as TLS and discovery settings).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use serde::Deserialize;

use crate::api::limits::{RequestLimits, REQUEST_BYTES_MAX_DEFAULT, TXN_OPS_MAX_DEFAULT};

/// etcd's default member name.
pub const NAME_DEFAULT: &str = "default";
/// etcd's default client URL.
pub const CLIENT_URL_DEFAULT: &str = "http://localhost:2379";
/// etcd's default peer URL.
pub const PEER_URL_DEFAULT: &str = "http://localhost:2380";
/// etcd's default cluster token.
pub const CLUSTER_TOKEN_DEFAULT: &str = "etcd-cluster";
/// The data directory's suffix after the member name (etcd: ".etcd").
pub const DATA_DIR_SUFFIX: &str = ".cairn";
/// Applied entries between snapshots (etcd 3.4 and 3.5's default: a snapshot
/// serializes the whole in-memory state, so fewer is cheaper).
pub const SNAPSHOT_COUNT_DEFAULT: u64 = 100_000;
/// Heartbeat interval in milliseconds.
pub const HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 100;
/// Election timeout in milliseconds.
pub const ELECTION_TIMEOUT_MS_DEFAULT: u64 = 1000;
/// etcd refuses election timeouts longer than this, in milliseconds.
pub const ELECTION_TIMEOUT_MS_MAX: u64 = 50_000;
/// etcd requires the election timeout to be at least this many heartbeats.
pub const ELECTION_TIMEOUT_HEARTBEATS_MIN: u64 = 5;
/// Backend quota when `--quota-backend-bytes` is 0 (etcd: 2 GiB).
pub const QUOTA_BACKEND_BYTES_DEFAULT: u64 = 2 * 1024 * 1024 * 1024;
/// etcd's default log level.
pub const LOG_LEVEL_DEFAULT: &str = "info";
const SECONDS_PER_HOUR: u64 = 3600;

/// A configuration that cannot be used; the message is one line naming the flag.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The command line could not be parsed (unknown flag, bad number, --help).
    #[error("{message}")]
    Flags {
        /// clap's rendered message.
        message: String,
        /// Whether this is --help/--version output rather than an error.
        is_help: bool,
    },
    /// The config file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    FileRead {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The config file is not valid YAML of the expected shape.
    #[error("cannot parse config file {path}: {reason}")]
    FileParse {
        /// The file.
        path: String,
        /// The parser's error.
        reason: String,
    },
    /// A URL that is not `http://host:port`.
    #[error("invalid URL {url:?} in --{flag}: {reason}")]
    Url {
        /// The flag.
        flag: &'static str,
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A listen URL whose host is a name, not an IP (etcd's rule).
    #[error("expected IP in URL for binding ({url}) in --{flag}")]
    ListenHostNotIp {
        /// The flag.
        flag: &'static str,
        /// The URL.
        url: String,
    },
    /// A malformed `--initial-cluster` entry.
    #[error("invalid --initial-cluster entry {entry:?}: expected name=url")]
    InitialClusterEntry {
        /// The entry.
        entry: String,
    },
    /// The member is not named in `--initial-cluster`.
    #[error("couldn't find local name {name:?} in the initial cluster configuration")]
    NameNotInCluster {
        /// The member name.
        name: String,
    },
    /// `--initial-cluster` and `--initial-advertise-peer-urls` disagree.
    #[error(
        "--initial-cluster has {name}={cluster_urls} but missing from \
         --initial-advertise-peer-urls={advertised_urls}"
    )]
    PeerUrlsMismatch {
        /// The member name.
        name: String,
        /// Its URLs in --initial-cluster.
        cluster_urls: String,
        /// The advertised peer URLs.
        advertised_urls: String,
    },
    /// The same peer URL for two members.
    #[error("--initial-cluster uses URL {url} more than once")]
    DuplicatePeerUrl {
        /// The URL.
        url: String,
    },
    /// Election timeout too short for the heartbeat.
    #[error(
        "--election-timeout[{election_ms}ms] should be at least as 5 times as \
         --heartbeat-interval[{heartbeat_ms}ms]"
    )]
    ElectionTimeoutTooShort {
        /// The election timeout.
        election_ms: u64,
        /// The heartbeat interval.
        heartbeat_ms: u64,
    },
    /// Election timeout beyond etcd's maximum.
    #[error(
        "--election-timeout[{election_ms}ms] is too long, and should be set less than 50000ms"
    )]
    ElectionTimeoutTooLong {
        /// The election timeout.
        election_ms: u64,
    },
    /// A value out of its range or of the wrong form.
    #[error("invalid value {value:?} for --{flag}: {reason}")]
    Value {
        /// The flag.
        flag: &'static str,
        /// The value.
        value: String,
        /// What is accepted.
        reason: String,
    },
}

/// Whether the member starts a new cluster or joins a running one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    /// All members in `initial_cluster` bootstrap together.
    New,
    /// The member was added with MemberAdd and joins an existing cluster.
    Existing,
}

/// etcd's automatic compaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep this much history (etcd's "periodic" mode).
    Periodic(Duration),
    /// Keep this many revisions (etcd's "revision" mode).
    Revision(i64),
}

/// What the node driver needs: identity, cluster bootstrap, Raft timing and
/// state machine limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// This member's name (`--name`).
    pub name: String,
    /// Where the WAL and snapshots live (`--data-dir`).
    pub data_dir: PathBuf,
    /// Addresses to accept peer connections on (`--listen-peer-urls`).
    pub listen_peer_addresses: Vec<SocketAddr>,
    /// Peer URLs announced to the cluster (`--initial-advertise-peer-urls`).
    pub advertise_peer_urls: Vec<String>,
    /// Client URLs announced to the cluster (`--advertise-client-urls`).
    pub advertise_client_urls: Vec<String>,
    /// Every bootstrap member's name and peer URLs (`--initial-cluster`).
    /// Invariant: contains `name`, with exactly `advertise_peer_urls`.
    pub initial_cluster: BTreeMap<String, Vec<String>>,
    /// New cluster or joining (`--initial-cluster-state`).
    pub initial_cluster_state: ClusterState,
    /// Distinguishes clusters bootstrapped from the same member list.
    pub initial_cluster_token: String,
    /// Applied entries between snapshots (`--snapshot-count`).
    pub snapshot_count: u64,
    /// Leader heartbeat interval (`--heartbeat-interval`).
    pub heartbeat_interval: Duration,
    /// Election timeout (`--election-timeout`).
    /// Invariant: at least 5 heartbeat intervals, at most 50 s.
    pub election_timeout: Duration,
    /// Automatic compaction, None when off.
    pub auto_compaction: Option<AutoCompaction>,
    /// Bytes the stored state may take before writes fail with NoSpace.
    pub quota_backend_bytes: u64,
    /// At most this many bytes per request (`--max-request-bytes`).
    pub request_bytes_max: usize,
    /// At most this many ops per txn level (`--max-txn-ops`).
    pub txn_ops_max: usize,
}

/// What the client API needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiConfig {
    /// Addresses serving gRPC, /health and /metrics (`--listen-client-urls`).
    pub listen_client_addresses: Vec<SocketAddr>,
    /// Extra addresses serving only /health and /metrics (`--listen-metrics-urls`).
    pub listen_metrics_addresses: Vec<SocketAddr>,
    /// Request bounds.
    pub limits: RequestLimits,
}

/// A validated member configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// The node driver's part.
    pub node: NodeConfig,
    /// The client API's part.
    pub api: ApiConfig,
    /// A tracing level: trace, debug, info, warn or error (etcd's panic and fatal map to error).
    pub log_level: tracing::Level,
}

/// A loaded configuration and the flags it ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedConfig {
    /// The configuration.
    pub config: ServerConfig,
    /// Flags given together with --config-file, which etcd (and Cairn) ignore.
    pub ignored_flags: Vec<String>,
}

/// The unvalidated settings, with etcd's names and defaults; both the
/// command line and the YAML file fill this.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "kebab-case")]
struct RawConfig {
    name: String,
    data_dir: Option<String>,
    listen_client_urls: String,
    advertise_client_urls: String,
    listen_peer_urls: String,
    initial_advertise_peer_urls: String,
    initial_cluster: Option<String>,
    initial_cluster_state: String,
    initial_cluster_token: String,
    snapshot_count: u64,
    heartbeat_interval: u64,
    election_timeout: u64,
    #[serde(deserialize_with = "string_or_number")]
    auto_compaction_retention: String,
    auto_compaction_mode: String,
    quota_backend_bytes: u64,
    max_request_bytes: u64,
    max_txn_ops: u64,
    log_level: String,
    listen_metrics_urls: String,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            name: NAME_DEFAULT.to_string(),
            data_dir: None,
            listen_client_urls: CLIENT_URL_DEFAULT.to_string(),
            advertise_client_urls: CLIENT_URL_DEFAULT.to_string(),
            listen_peer_urls: PEER_URL_DEFAULT.to_string(),
            initial_advertise_peer_urls: PEER_URL_DEFAULT.to_string(),
            initial_cluster: None,
            initial_cluster_state: "new".to_string(),
            initial_cluster_token: CLUSTER_TOKEN_DEFAULT.to_string(),
            snapshot_count: SNAPSHOT_COUNT_DEFAULT,
            heartbeat_interval: HEARTBEAT_INTERVAL_MS_DEFAULT,
            election_timeout: ELECTION_TIMEOUT_MS_DEFAULT,
            auto_compaction_retention: "0".to_string(),
            auto_compaction_mode: "periodic".to_string(),
            quota_backend_bytes: 0,
            max_request_bytes: REQUEST_BYTES_MAX_DEFAULT as u64,
            max_txn_ops: TXN_OPS_MAX_DEFAULT as u64,
            log_level: LOG_LEVEL_DEFAULT.to_string(),
            listen_metrics_urls: String::new(),
        }
    }
}

/// YAML writes `auto-compaction-retention: 1` as a number; etcd reads a string.
fn string_or_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match serde_yaml::Value::deserialize(deserializer)? {
        serde_yaml::Value::String(text) => Ok(text),
        serde_yaml::Value::Number(number) => Ok(number.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or number, got {other:?}"
        ))),
    }
}

/// `cairn`'s command line: etcd's flag names and meanings.
#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "A member of a Cairn cluster (etcd v3 compatible)"
)]
struct Flags {
    /// Human-readable name for this member.
    #[arg(long)]
    name: Option<String>,
    /// Path to the data directory (default: ${name}.cairn).
    #[arg(long)]
    data_dir: Option<String>,
    /// List of URLs to listen on for client traffic.
    #[arg(long)]
    listen_client_urls: Option<String>,
    /// List of this member's client URLs to advertise to the public.
    #[arg(long)]
    advertise_client_urls: Option<String>,
    /// List of URLs to listen on for peer traffic.
    #[arg(long)]
    listen_peer_urls: Option<String>,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long)]
    initial_advertise_peer_urls: Option<String>,
    /// Initial cluster configuration for bootstrapping: name=url,name=url.
    #[arg(long)]
    initial_cluster: Option<String>,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long)]
    initial_cluster_state: Option<String>,
    /// Initial cluster token for the cluster during bootstrap.
    #[arg(long)]
    initial_cluster_token: Option<String>,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long)]
    snapshot_count: Option<u64>,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long)]
    heartbeat_interval: Option<u64>,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long)]
    election_timeout: Option<u64>,
    /// Auto compaction retention (hours or a duration for 'periodic', revisions for 'revision'); 0 disables.
    #[arg(long)]
    auto_compaction_retention: Option<String>,
    /// Interpret 'auto-compaction-retention' as 'periodic' or 'revision'.
    #[arg(long)]
    auto_compaction_mode: Option<String>,
    /// Raise alarms when backend size exceeds the given quota (0 defaults to 2 GiB).
    #[arg(long)]
    quota_backend_bytes: Option<u64>,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long)]
    max_request_bytes: Option<u64>,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long)]
    max_txn_ops: Option<u64>,
    /// Log level: debug, info, warn, error, panic or fatal.
    #[arg(long)]
    log_level: Option<String>,
    /// List of additional URLs to serve /metrics and /health on.
    #[arg(long)]
    listen_metrics_urls: Option<String>,
    /// Path to the server configuration file (YAML); other flags are then ignored.
    #[arg(long)]
    config_file: Option<PathBuf>,
}

impl Flags {
    fn apply(self, raw: &mut RawConfig) {
        let Flags {
            name,
            data_dir,
            listen_client_urls,
            advertise_client_urls,
            listen_peer_urls,
            initial_advertise_peer_urls,
            initial_cluster,
            initial_cluster_state,
            initial_cluster_token,
            snapshot_count,
            heartbeat_interval,
            election_timeout,
            auto_compaction_retention,
            auto_compaction_mode,
            quota_backend_bytes,
            max_request_bytes,
            max_txn_ops,
            log_level,
            listen_metrics_urls,
            config_file: _,
        } = self;
        fn set<T>(target: &mut T, value: Option<T>) {
            if let Some(value) = value {
                *target = value;
            }
        }
        set(&mut raw.name, name);
        raw.data_dir = data_dir.or(raw.data_dir.take());
        set(&mut raw.listen_client_urls, listen_client_urls);
        set(&mut raw.advertise_client_urls, advertise_client_urls);
        set(&mut raw.listen_peer_urls, listen_peer_urls);
        set(
            &mut raw.initial_advertise_peer_urls,
            initial_advertise_peer_urls,
        );
        raw.initial_cluster = initial_cluster.or(raw.initial_cluster.take());
        set(&mut raw.initial_cluster_state, initial_cluster_state);
        set(&mut raw.initial_cluster_token, initial_cluster_token);
        set(&mut raw.snapshot_count, snapshot_count);
        set(&mut raw.heartbeat_interval, heartbeat_interval);
        set(&mut raw.election_timeout, election_timeout);
        set(
            &mut raw.auto_compaction_retention,
            auto_compaction_retention,
        );
        set(&mut raw.auto_compaction_mode, auto_compaction_mode);
        set(&mut raw.quota_backend_bytes, quota_backend_bytes);
        set(&mut raw.max_request_bytes, max_request_bytes);
        set(&mut raw.max_txn_ops, max_txn_ops);
        set(&mut raw.log_level, log_level);
        set(&mut raw.listen_metrics_urls, listen_metrics_urls);
    }
}

/// Flags given on the command line other than --config-file.
fn explicit_flags(matches: &ArgMatches) -> Vec<String> {
    Flags::command()
        .get_arguments()
        .filter(|argument| argument.get_id().as_str() != "config_file")
        .filter(|argument| {
            matches.value_source(argument.get_id().as_str()) == Some(ValueSource::CommandLine)
        })
        .filter_map(|argument| argument.get_long().map(|long| format!("--{long}")))
        .collect()
}

impl ServerConfig {
    /// Loads the configuration from command line arguments (the first is
    /// the program name), reading `--config-file` when given.
    pub fn load<I, T>(args: I) -> Result<LoadedConfig, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Flags::command()
            .try_get_matches_from(args)
            .map_err(|error| {
                let is_help = matches!(
                    error.kind(),
                    clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
                );
                ConfigError::Flags {
                    message: error.to_string(),
                    is_help,
                }
            })?;
        let flags = Flags::from_arg_matches(&matches).map_err(|error| ConfigError::Flags {
            message: error.to_string(),
            is_help: false,
        })?;
        if let Some(path) = flags.config_file.clone() {
            let text = std::fs::read_to_string(&path).map_err(|error| ConfigError::FileRead {
                path: path.display().to_string(),
                reason: error.to_string(),
            })?;
            let config = ServerConfig::from_yaml(&text).map_err(|error| match error {
                ConfigError::FileParse { reason, .. } => ConfigError::FileParse {
                    path: path.display().to_string(),
                    reason,
                },
                other => other,
            })?;
            return Ok(LoadedConfig {
                config,
                ignored_flags: explicit_flags(&matches),
            });
        }
        let mut raw = RawConfig::default();
        flags.apply(&mut raw);
        Ok(LoadedConfig {
            config: raw.validate()?,
            ignored_flags: Vec::new(),
        })
    }

    /// Parses and validates an etcd-style YAML configuration.
    pub fn from_yaml(text: &str) -> Result<ServerConfig, ConfigError> {
        // An empty file is an empty mapping: all defaults.
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_yaml::from_str(text).map_err(|error| ConfigError::FileParse {
                path: String::new(),
                reason: error.to_string(),
            })?
        };
        raw.validate()
    }
}

/// A parsed `http://host:port` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HttpUrl {
    host: String,
    port: u16,
}

fn parse_url(flag: &'static str, url: &str) -> Result<HttpUrl, ConfigError> {
    let invalid = |reason: &str| ConfigError::Url {
        flag,
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(invalid("expected http://host:port"));
    };
    match scheme {
        "http" => {}
        "https" | "unixs" => return Err(invalid("TLS is not supported")),
        _ => return Err(invalid("the scheme must be http")),
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') {
        return Err(invalid("a path is not allowed"));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((host, port)) = bracketed.split_once("]:") else {
            return Err(invalid("expected [ipv6]:port"));
        };
        (host, port)
    } else {
        let Some((host, port)) = authority.rsplit_once(':') else {
            return Err(invalid("a port is required"));
        };
        (host, port)
    };
    if host.is_empty() {
        return Err(invalid("a host is required"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| invalid("the port must be a number 0-65535"))?;
    Ok(HttpUrl {
        host: host.to_string(),
        port,
    })
}

fn split_list(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .collect()
}

/// Every URL of a comma-separated list, parsed.
fn parse_urls(flag: &'static str, list: &str) -> Result<Vec<String>, ConfigError> {
    let urls = split_list(list);
    for url in &urls {
        parse_url(flag, url)?;
    }
    Ok(urls.into_iter().map(str::to_string).collect())
}

/// Listen URLs as socket addresses: the host must be an IP or "localhost".
fn listen_addresses(flag: &'static str, list: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    split_list(list)
        .into_iter()
        .map(|url| {
            let parsed = parse_url(flag, url)?;
            let ip = if parsed.host == "localhost" {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                parsed
                    .host
                    .parse::<IpAddr>()
                    .map_err(|_| ConfigError::ListenHostNotIp {
                        flag,
                        url: url.to_string(),
                    })?
            };
            Ok(SocketAddr::new(ip, parsed.port))
        })
        .collect()
}

fn parse_initial_cluster(text: &str) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
    let mut cluster: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen_urls = Vec::new();
    for entry in split_list(text) {
        let Some((name, url)) = entry.split_once('=') else {
            return Err(ConfigError::InitialClusterEntry {
                entry: entry.to_string(),
            });
        };
        if name.is_empty() {
            return Err(ConfigError::InitialClusterEntry {
                entry: entry.to_string(),
            });
        }
        parse_url("initial-cluster", url)?;
        if seen_urls.iter().any(|seen| seen == url) {
            return Err(ConfigError::DuplicatePeerUrl {
                url: url.to_string(),
            });
        }
        seen_urls.push(url.to_string());
        cluster
            .entry(name.to_string())
            .or_default()
            .push(url.to_string());
    }
    Ok(cluster)
}

fn parse_log_level(level: &str) -> Result<tracing::Level, ConfigError> {
    match level {
        "debug" => Ok(tracing::Level::DEBUG),
        "info" => Ok(tracing::Level::INFO),
        "warn" => Ok(tracing::Level::WARN),
        "error" | "dpanic" | "panic" | "fatal" => Ok(tracing::Level::ERROR),
        _ => Err(ConfigError::Value {
            flag: "log-level",
            value: level.to_string(),
            reason: "expected debug, info, warn, error, panic or fatal".to_string(),
        }),
    }
}

fn parse_auto_compaction(
    mode: &str,
    retention: &str,
) -> Result<Option<AutoCompaction>, ConfigError> {
    let invalid = |reason: &str| ConfigError::Value {
        flag: "auto-compaction-retention",
        value: retention.to_string(),
        reason: reason.to_string(),
    };
    match mode {
        "periodic" => {
            // A bare number is hours, as in etcd; otherwise a duration like 30m or 1h.
            let duration = if let Ok(hours) = retention.parse::<u64>() {
                Duration::from_secs(hours * SECONDS_PER_HOUR)
            } else {
                parse_duration(retention)
                    .ok_or_else(|| invalid("expected hours or a duration like 30m, 1h, 90s"))?
            };
            Ok((!duration.is_zero()).then_some(AutoCompaction::Periodic(duration)))
        }
        "revision" => {
            let revisions: i64 = retention
                .parse()
                .ok()
                .filter(|revisions| *revisions >= 0)
                .ok_or_else(|| invalid("expected a number of revisions"))?;
            Ok((revisions > 0).then_some(AutoCompaction::Revision(revisions)))
        }
        _ => Err(ConfigError::Value {
            flag: "auto-compaction-mode",
            value: mode.to_string(),
            reason: "expected periodic or revision".to_string(),
        }),
    }
}

/// A Go-style duration made of `<number><unit>` parts (h, m, s, ms).
fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let value: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_length = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_length] {
            "h" => Duration::from_secs(value.checked_mul(SECONDS_PER_HOUR)?),
            "m" => Duration::from_secs(value.checked_mul(60)?),
            "s" => Duration::from_secs(value),
            "ms" => Duration::from_millis(value),
            _ => return None,
        };
        total = total.checked_add(part)?;
        rest = &rest[unit_length..];
    }
    Some(total)
}

fn positive(flag: &'static str, value: u64) -> Result<u64, ConfigError> {
    if value == 0 {
        return Err(ConfigError::Value {
            flag,
            value: value.to_string(),
            reason: "must be greater than 0".to_string(),
        });
    }
    Ok(value)
}

fn to_usize(flag: &'static str, value: u64) -> Result<usize, ConfigError> {
    usize::try_from(value).map_err(|_| ConfigError::Value {
        flag,
        value: value.to_string(),
        reason: "too large".to_string(),
    })
}

impl RawConfig {
    fn validate(self) -> Result<ServerConfig, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::Value {
                flag: "name",
                value: self.name,
                reason: "must not be empty".to_string(),
            });
        }
        let data_dir = PathBuf::from(
            self.data_dir
                .clone()
                .unwrap_or_else(|| format!("{}{DATA_DIR_SUFFIX}", self.name)),
        );
        let listen_client_addresses =
            listen_addresses("listen-client-urls", &self.listen_client_urls)?;
        if listen_client_addresses.is_empty() {
            return Err(ConfigError::Value {
                flag: "listen-client-urls",
                value: self.listen_client_urls,
                reason: "at least one URL is required".to_string(),
            });
        }
        let listen_peer_addresses = listen_addresses("listen-peer-urls", &self.listen_peer_urls)?;
        let listen_metrics_addresses =
            listen_addresses("listen-metrics-urls", &self.listen_metrics_urls)?;
        let advertise_client_urls =
            parse_urls("advertise-client-urls", &self.advertise_client_urls)?;
        let advertise_peer_urls = parse_urls(
            "initial-advertise-peer-urls",
            &self.initial_advertise_peer_urls,
        )?;

        // etcd's default initial cluster is this member at its advertised peer URLs.
        let initial_cluster_text = self.initial_cluster.clone().unwrap_or_else(|| {
            advertise_peer_urls
                .iter()
                .map(|url| format!("{}={url}", self.name))
                .collect::<Vec<_>>()
                .join(",")
        });
        let initial_cluster = parse_initial_cluster(&initial_cluster_text)?;
        let Some(cluster_urls) = initial_cluster.get(&self.name) else {
            return Err(ConfigError::NameNotInCluster { name: self.name });
        };
        let mut sorted_cluster_urls = cluster_urls.clone();
        sorted_cluster_urls.sort();
        let mut sorted_advertised = advertise_peer_urls.clone();
        sorted_advertised.sort();
        if sorted_cluster_urls != sorted_advertised {
            return Err(ConfigError::PeerUrlsMismatch {
                name: self.name.clone(),
                cluster_urls: cluster_urls.join(","),
                advertised_urls: advertise_peer_urls.join(","),
            });
        }

        let initial_cluster_state = match self.initial_cluster_state.as_str() {
            "new" => ClusterState::New,
            "existing" => ClusterState::Existing,
            other => {
                return Err(ConfigError::Value {
                    flag: "initial-cluster-state",
                    value: other.to_string(),
                    reason: "expected new or existing".to_string(),
                })
            }
        };

        let heartbeat_ms = positive("heartbeat-interval", self.heartbeat_interval)?;
        let election_ms = positive("election-timeout", self.election_timeout)?;
        if election_ms < ELECTION_TIMEOUT_HEARTBEATS_MIN.saturating_mul(heartbeat_ms) {
            return Err(ConfigError::ElectionTimeoutTooShort {
                election_ms,
                heartbeat_ms,
            });
        }
        if election_ms > ELECTION_TIMEOUT_MS_MAX {
            return Err(ConfigError::ElectionTimeoutTooLong { election_ms });
        }

        let auto_compaction =
            parse_auto_compaction(&self.auto_compaction_mode, &self.auto_compaction_retention)?;
        let snapshot_count = positive("snapshot-count", self.snapshot_count)?;
        let request_bytes_max = to_usize(
            "max-request-bytes",
            positive("max-request-bytes", self.max_request_bytes)?,
        )?;
        let txn_ops_max = to_usize("max-txn-ops", positive("max-txn-ops", self.max_txn_ops)?)?;
        let quota_backend_bytes = if self.quota_backend_bytes == 0 {
            QUOTA_BACKEND_BYTES_DEFAULT
        } else {
            self.quota_backend_bytes
        };
        let log_level = parse_log_level(&self.log_level)?;

        Ok(ServerConfig {
            node: NodeConfig {
                name: self.name,
                data_dir,
                listen_peer_addresses,
                advertise_peer_urls,
                advertise_client_urls,
                initial_cluster,
                initial_cluster_state,
                initial_cluster_token: self.initial_cluster_token,
                snapshot_count,
                heartbeat_interval: Duration::from_millis(heartbeat_ms),
                election_timeout: Duration::from_millis(election_ms),
                auto_compaction,
                quota_backend_bytes,
                request_bytes_max,
                txn_ops_max,
            },
            api: ApiConfig {
                listen_client_addresses,
                listen_metrics_addresses,
                limits: RequestLimits {
                    request_bytes_max,
                    txn_ops_max,
                },
            },
            log_level,
        })
    }
}

#[cfg(test)]
mod tests {
    //! Guards the command line and file contract: etcd's names and defaults,
    //! and one-line errors (never a panic) for every bad input.

    use super::*;

    fn load(args: &[&str]) -> Result<ServerConfig, ConfigError> {
        let mut all = vec!["cairn"];
        all.extend_from_slice(args);
        ServerConfig::load(all).map(|loaded| loaded.config)
    }

    #[test]
    fn no_flags_is_a_one_member_cluster_on_localhost() {
        let config = load(&[]).expect("defaults are valid");
        assert_eq!(config.node.name, "default");
        assert_eq!(config.node.data_dir, PathBuf::from("default.cairn"));
        assert_eq!(
            config.api.listen_client_addresses,
            vec!["127.0.0.1:2379".parse().unwrap()]
        );
        assert_eq!(
            config.node.listen_peer_addresses,
            vec!["127.0.0.1:2380".parse().unwrap()]
        );
        assert_eq!(
            config.node.initial_cluster,
            BTreeMap::from([("default".to_string(), vec![PEER_URL_DEFAULT.to_string()])])
        );
        assert_eq!(config.node.initial_cluster_state, ClusterState::New);
        assert_eq!(config.node.heartbeat_interval, Duration::from_millis(100));
        assert_eq!(config.node.election_timeout, Duration::from_millis(1000));
        assert_eq!(config.node.snapshot_count, 100_000);
        assert_eq!(config.node.quota_backend_bytes, 2 * 1024 * 1024 * 1024);
        assert_eq!(config.api.limits, RequestLimits::default());
        assert_eq!(config.node.auto_compaction, None);
        assert_eq!(config.log_level, tracing::Level::INFO);
        assert!(config.api.listen_metrics_addresses.is_empty());
    }

    #[test]
    fn three_member_flags_parse() {
        let config = load(&[
            "--name",
            "n2",
            "--data-dir",
            "/tmp/n2",
            "--listen-client-urls",
            "http://127.0.0.1:22379,http://[::1]:22379",
            "--advertise-client-urls",
            "http://n2.example:22379",
            "--listen-peer-urls",
            "http://0.0.0.0:22380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:22380",
            "--initial-cluster",
            "n1=http://127.0.0.1:12380,n2=http://127.0.0.1:22380,n3=http://127.0.0.1:32380",
            "--initial-cluster-state",
            "existing",
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
            "--max-txn-ops",
            "64",
            "--max-request-bytes",
            "1048576",
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "1000",
            "--listen-metrics-urls",
            "http://127.0.0.1:9090",
            "--log-level",
            "debug",
        ])
        .expect("valid");
        assert_eq!(config.node.name, "n2");
        assert_eq!(config.node.data_dir, PathBuf::from("/tmp/n2"));
        assert_eq!(config.api.listen_client_addresses.len(), 2);
        assert_eq!(
            config.api.listen_client_addresses[1],
            "[::1]:22379".parse().unwrap()
        );
        assert_eq!(config.node.initial_cluster.len(), 3);
        assert_eq!(config.node.initial_cluster_state, ClusterState::Existing);
        assert_eq!(config.node.election_timeout, Duration::from_millis(500));
        assert_eq!(
            config.api.limits,
            RequestLimits {
                request_bytes_max: 1 << 20,
                txn_ops_max: 64
            }
        );
        assert_eq!(
            config.node.auto_compaction,
            Some(AutoCompaction::Revision(1000))
        );
        assert_eq!(
            config.api.listen_metrics_addresses,
            vec!["127.0.0.1:9090".parse().unwrap()]
        );
        assert_eq!(config.log_level, tracing::Level::DEBUG);
    }

    #[test]
    fn name_flag_names_the_data_dir() {
        let config = load(&[
            "--name",
            "infra1",
            "--initial-cluster",
            "infra1=http://localhost:2380",
        ])
        .expect("valid");
        assert_eq!(config.node.data_dir, PathBuf::from("infra1.cairn"));
    }

    #[test]
    fn bad_inputs_are_one_line_errors() {
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (vec!["--listen-client-urls", "127.0.0.1:2379"], "invalid URL \"127.0.0.1:2379\" in --listen-client-urls: expected http://host:port"),
            (vec!["--listen-client-urls", "https://127.0.0.1:2379"], "TLS is not supported"),
            (vec!["--listen-client-urls", "http://example.com:2379"], "expected IP in URL for binding (http://example.com:2379) in --listen-client-urls"),
            (vec!["--listen-peer-urls", "http://127.0.0.1:99999"], "the port must be a number 0-65535"),
            (vec!["--name", "n9", "--initial-cluster", "a=http://localhost:2380"], "couldn't find local name \"n9\" in the initial cluster configuration"),
            (vec!["--initial-cluster", "default"], "invalid --initial-cluster entry \"default\": expected name=url"),
            (vec!["--initial-cluster", "default=http://localhost:2381"], "--initial-cluster has default=http://localhost:2381 but missing from --initial-advertise-peer-urls=http://localhost:2380"),
            (vec!["--initial-cluster", "default=http://localhost:2380,b=http://localhost:2380"], "--initial-cluster uses URL http://localhost:2380 more than once"),
            (vec!["--heartbeat-interval", "300"], "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[300ms]"),
            (vec!["--election-timeout", "60000"], "--election-timeout[60000ms] is too long, and should be set less than 50000ms"),
            (vec!["--initial-cluster-state", "old"], "invalid value \"old\" for --initial-cluster-state: expected new or existing"),
            (vec!["--log-level", "loud"], "invalid value \"loud\" for --log-level"),
            (vec!["--max-txn-ops", "0"], "invalid value \"0\" for --max-txn-ops: must be greater than 0"),
            (vec!["--auto-compaction-retention", "soon"], "invalid value \"soon\" for --auto-compaction-retention"),
            (vec!["--auto-compaction-mode", "weekly"], "invalid value \"weekly\" for --auto-compaction-mode"),
        ];
        for (args, expected) in cases {
            let error = load(&args).expect_err(&format!("{args:?} must be refused"));
            let message = error.to_string();
            assert!(
                message.contains(expected),
                "{args:?}: got {message:?}, want {expected:?}"
            );
            assert!(
                !message.contains('\n'),
                "{args:?}: message is not one line: {message:?}"
            );
        }
    }

    #[test]
    fn unknown_flag_and_bad_number_are_flag_errors() {
        assert!(matches!(
            load(&["--frobnicate"]),
            Err(ConfigError::Flags { is_help: false, .. })
        ));
        assert!(matches!(
            load(&["--snapshot-count", "many"]),
            Err(ConfigError::Flags { is_help: false, .. })
        ));
        assert!(matches!(
            load(&["--help"]),
            Err(ConfigError::Flags { is_help: true, .. })
        ));
    }

    #[test]
    fn periodic_retention_takes_hours_or_durations() {
        let hours = load(&["--auto-compaction-retention", "2"]).expect("valid");
        assert_eq!(
            hours.node.auto_compaction,
            Some(AutoCompaction::Periodic(Duration::from_secs(7200)))
        );
        let minutes = load(&["--auto-compaction-retention", "1h30m"]).expect("valid");
        assert_eq!(
            minutes.node.auto_compaction,
            Some(AutoCompaction::Periodic(Duration::from_secs(5400)))
        );
    }

    #[test]
    fn yaml_file_uses_etcds_keys_and_ignores_unknown_ones() {
        let yaml = "\
name: 'infra1'
data-dir: /var/lib/cairn
wal-dir:
snapshot-count: 5000
heartbeat-interval: 50
election-timeout: 250
quota-backend-bytes: 0
listen-peer-urls: http://127.0.0.1:12380
listen-client-urls: http://127.0.0.1:12379,http://localhost:12479
max-snapshots: 5
initial-advertise-peer-urls: http://127.0.0.1:12380
advertise-client-urls: http://127.0.0.1:12379
initial-cluster: infra1=http://127.0.0.1:12380,infra2=http://127.0.0.1:22380
initial-cluster-token: 'tok'
initial-cluster-state: 'new'
auto-compaction-mode: periodic
auto-compaction-retention: 1
client-transport-security:
  client-cert-auth: false
log-level: warn
";
        let config = ServerConfig::from_yaml(yaml).expect("valid file");
        assert_eq!(config.node.name, "infra1");
        assert_eq!(config.node.data_dir, PathBuf::from("/var/lib/cairn"));
        assert_eq!(config.node.snapshot_count, 5000);
        assert_eq!(config.node.heartbeat_interval, Duration::from_millis(50));
        assert_eq!(config.api.listen_client_addresses.len(), 2);
        assert_eq!(config.node.initial_cluster.len(), 2);
        assert_eq!(config.node.initial_cluster_token, "tok");
        assert_eq!(
            config.node.auto_compaction,
            Some(AutoCompaction::Periodic(Duration::from_secs(3600)))
        );
        assert_eq!(config.log_level, tracing::Level::WARN);
    }

    #[test]
    fn config_file_wins_and_reports_ignored_flags() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("cairn.conf.yml");
        std::fs::write(
            &path,
            "name: filed\ninitial-cluster: filed=http://localhost:2380\n",
        )
        .expect("write");
        let loaded = ServerConfig::load([
            "cairn",
            "--name",
            "flagged",
            "--config-file",
            path.to_str().expect("utf-8 path"),
        ])
        .expect("valid");
        assert_eq!(loaded.config.node.name, "filed");
        assert_eq!(loaded.ignored_flags, vec!["--name".to_string()]);
    }

    #[test]
    fn bad_files_are_one_line_errors() {
        let missing = ServerConfig::load(["cairn", "--config-file", "/nonexistent/cairn.yml"]);
        let message = missing.expect_err("missing file").to_string();
        assert!(
            message.starts_with("cannot read config file /nonexistent/cairn.yml"),
            "{message}"
        );
        let error = ServerConfig::from_yaml("heartbeat-interval: fast\n").expect_err("bad type");
        assert!(matches!(error, ConfigError::FileParse { .. }), "{error:?}");
        let error = ServerConfig::from_yaml("election-timeout: 100\n").expect_err("too short");
        assert!(
            matches!(error, ConfigError::ElectionTimeoutTooShort { .. }),
            "{error:?}"
        );
    }
}
