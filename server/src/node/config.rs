//! [`NodeConfig`]: everything one member needs to start, with etcd's
//! defaults. The binary builds it from flags; the simulator from its seed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cairn_core::raft::NodeId;

use super::member::{cluster_id_for, member_id_for};
use super::metrics::NodeMetrics;
use super::observer::NodeObserver;
#[cfg(madsim)]
use super::planted_bug::PlantedBug;

/// etcd's heartbeat interval: one Raft tick.
pub const TICK_INTERVAL_DEFAULT: Duration = Duration::from_millis(100);
/// etcd's election timeout (1000 ms) in 100 ms ticks.
pub const ELECTION_TIMEOUT_TICKS_DEFAULT: u64 = 10;
/// etcd 3.4 and 3.5's --snapshot-count (a snapshot serializes the whole state).
pub const SNAPSHOT_COUNT_DEFAULT: u64 = 100_000;
/// How long a client request may wait for its answer.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// etcd's --max-request-bytes (1.5 MiB).
pub const REQUEST_BYTES_MAX_DEFAULT: usize = 1024 * 1024 + 512 * 1024;
/// etcd's --max-txn-ops.
pub const TXN_OPS_MAX_DEFAULT: usize = 128;
/// How often the leader records remaining lease TTLs in the log (etcd's
/// `--experimental-lease-checkpoint-interval` default).
pub const LEASE_CHECKPOINT_INTERVAL_DEFAULT: Duration = Duration::from_secs(300);
/// How often the revision-mode auto compactor looks at the revision
/// (etcd's revision compactor checks every 5 minutes).
pub const AUTO_COMPACTION_REVISION_INTERVAL_DEFAULT: Duration = Duration::from_secs(300);
/// etcd's default --quota-backend-bytes (2 GiB), used when 0 is configured.
pub const QUOTA_BACKEND_BYTES_DEFAULT: u64 = 2 * 1024 * 1024 * 1024;
/// The seed when none is configured (the simulator draws its own).
pub const SEED_DEFAULT: u64 = 0;

/// Whether this member founds a cluster or joins a running one (etcd's
/// --initial-cluster-state). Ignored when the data dir holds state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartMode {
    /// A founding member of a new cluster.
    New,
    /// A member added to a running cluster with MemberAdd.
    Existing,
}

/// etcd's automatic compaction (--auto-compaction-mode and -retention).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCompaction {
    /// "periodic": keep about this much history.
    Periodic(Duration),
    /// "revision": keep this many revisions.
    Revision(i64),
}

/// One entry of --initial-cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialMember {
    /// Its name.
    pub name: String,
    /// Its peer URLs.
    pub peer_urls: Vec<String>,
}

/// Why a configuration is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// --name is not in --initial-cluster.
    #[error("member {name:?} is not in the initial cluster {names:?}")]
    NameNotInCluster {
        /// This member's name.
        name: String,
        /// The names in the initial cluster.
        names: Vec<String>,
    },
    /// Two initial members hash to the same ID (same URLs).
    #[error("initial members {first:?} and {second:?} have the same member ID {id}")]
    DuplicateMember {
        /// One name.
        first: String,
        /// The other.
        second: String,
        /// The shared ID.
        id: NodeId,
    },
    /// A member with no peer URL.
    #[error("initial member {name:?} has no peer URL")]
    NoPeerUrl {
        /// Its name.
        name: String,
    },
}

/// How one member runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// --name.
    pub name: String,
    /// This member's ID (derived from its peer URLs and the token).
    pub member_id: NodeId,
    /// --initial-cluster-token.
    pub cluster_token: String,
    /// The cluster ID (derived from the token); peers of another cluster
    /// are refused at the handshake.
    pub cluster_id: u64,
    /// --initial-cluster, by member ID.
    pub initial_cluster: BTreeMap<NodeId, InitialMember>,
    /// --initial-cluster-state.
    pub start_mode: StartMode,
    /// Where to listen for peers (--listen-peer-urls, first URL).
    pub listen_peer_url: String,
    /// --advertise-client-urls, published in the member table.
    pub advertise_client_urls: Vec<String>,
    /// --data-dir.
    pub data_dir: PathBuf,
    /// One Raft tick (--heartbeat-interval).
    pub tick_interval: Duration,
    /// --election-timeout in ticks.
    pub election_timeout_ticks: u64,
    /// Applied entries between snapshots (--snapshot-count).
    pub snapshot_count: u64,
    /// How long a client request may wait.
    pub request_timeout: Duration,
    /// --max-request-bytes.
    pub request_bytes_max: usize,
    /// --max-txn-ops.
    pub txn_ops_max: usize,
    /// How often the leader checkpoints every lease's remaining TTL, so a
    /// new leader resumes from it instead of the full TTL
    /// (--experimental-lease-checkpoint-interval).
    pub lease_checkpoint_interval: Duration,
    /// Automatic compaction, run by the leader; None when off.
    pub auto_compaction: Option<AutoCompaction>,
    /// How often revision-mode auto compaction runs.
    pub auto_compaction_revision_interval: Duration,
    /// --quota-backend-bytes: beyond this state size the member raises the
    /// NOSPACE alarm and writes that grow the state are refused.
    pub quota_backend_bytes: u64,
    /// The only source of randomness (election timeouts, lease IDs). Every
    /// consumer mixes in the member ID, so members may share a seed.
    pub seed: u64,
    /// Where the node reports what it observes.
    pub metrics: Arc<NodeMetrics>,
    /// The simulator's window into the driver; `None` in production.
    pub observer: Option<Arc<dyn NodeObserver>>,
    /// A deliberate bug to switch on (simulator build only).
    #[cfg(madsim)]
    pub planted_bug: Option<PlantedBug>,
}

impl NodeConfig {
    /// A configuration with etcd's defaults for member `name` of
    /// `initial_cluster`; member and cluster IDs are derived from the peer
    /// URLs and the token.
    pub fn new(
        name: impl Into<String>,
        cluster_token: impl Into<String>,
        initial_cluster: Vec<InitialMember>,
        start_mode: StartMode,
        listen_peer_url: impl Into<String>,
        advertise_client_urls: Vec<String>,
        data_dir: impl Into<PathBuf>,
    ) -> Result<NodeConfig, ConfigError> {
        let name = name.into();
        let cluster_token = cluster_token.into();
        let mut members: BTreeMap<NodeId, InitialMember> = BTreeMap::new();
        for member in initial_cluster {
            if member.peer_urls.is_empty() {
                return Err(ConfigError::NoPeerUrl { name: member.name });
            }
            let id = member_id_for(&member.peer_urls, &cluster_token);
            if let Some(existing) = members.get(&id) {
                return Err(ConfigError::DuplicateMember {
                    first: existing.name.clone(),
                    second: member.name,
                    id,
                });
            }
            members.insert(id, member);
        }
        let Some((&member_id, _)) = members.iter().find(|(_, member)| member.name == name) else {
            return Err(ConfigError::NameNotInCluster {
                name,
                names: members.values().map(|member| member.name.clone()).collect(),
            });
        };
        let cluster_id = cluster_id_for(&cluster_token);
        Ok(NodeConfig {
            name,
            member_id,
            cluster_token,
            cluster_id,
            initial_cluster: members,
            start_mode,
            listen_peer_url: listen_peer_url.into(),
            advertise_client_urls,
            data_dir: data_dir.into(),
            tick_interval: TICK_INTERVAL_DEFAULT,
            election_timeout_ticks: ELECTION_TIMEOUT_TICKS_DEFAULT,
            snapshot_count: SNAPSHOT_COUNT_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            request_bytes_max: REQUEST_BYTES_MAX_DEFAULT,
            txn_ops_max: TXN_OPS_MAX_DEFAULT,
            lease_checkpoint_interval: LEASE_CHECKPOINT_INTERVAL_DEFAULT,
            auto_compaction: None,
            auto_compaction_revision_interval: AUTO_COMPACTION_REVISION_INTERVAL_DEFAULT,
            quota_backend_bytes: QUOTA_BACKEND_BYTES_DEFAULT,
            seed: SEED_DEFAULT,
            metrics: Arc::new(NodeMetrics::default()),
            observer: None,
            #[cfg(madsim)]
            planted_bug: None,
        })
    }

    /// The minimum lease TTL: etcd raises TTLs to about 1.5 × the election
    /// timeout, rounded up to whole seconds.
    pub fn lease_ttl_min_seconds(&self) -> i64 {
        let election_ms = self.tick_interval.as_millis() as u64 * self.election_timeout_ticks;
        let minimum_ms = election_ms * 3 / 2;
        minimum_ms.div_ceil(1000).max(1) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, port: u16) -> InitialMember {
        InitialMember {
            name: name.to_string(),
            peer_urls: vec![format!("http://127.0.0.1:{port}")],
        }
    }

    #[test]
    fn ids_are_derived_and_the_name_must_be_present() {
        let cluster = vec![member("a", 1), member("b", 2)];
        let config = NodeConfig::new(
            "b",
            "token",
            cluster.clone(),
            StartMode::New,
            "http://127.0.0.1:2",
            vec![],
            "/tmp/b",
        )
        .unwrap();
        assert_eq!(
            config.member_id,
            member_id_for(&cluster[1].peer_urls, "token")
        );
        assert_eq!(config.initial_cluster.len(), 2);
        assert_eq!(config.lease_ttl_min_seconds(), 2);
        let error = NodeConfig::new(
            "c",
            "token",
            cluster,
            StartMode::New,
            "x:1",
            vec![],
            "/tmp/c",
        )
        .unwrap_err();
        assert!(
            matches!(error, ConfigError::NameNotInCluster { .. }),
            "{error}"
        );
    }

    #[test]
    fn duplicate_urls_are_refused() {
        let error = NodeConfig::new(
            "a",
            "token",
            vec![member("a", 1), member("b", 1)],
            StartMode::New,
            "x:1",
            vec![],
            "/tmp/a",
        )
        .unwrap_err();
        assert!(
            matches!(error, ConfigError::DuplicateMember { .. }),
            "{error}"
        );
    }
}
