//! A cluster of real server processes on 127.0.0.1, started the way an
//! operator starts etcd: one process per member, `--initial-cluster`
//! listing them all, a data directory each.
//!
//! Members can be killed with SIGKILL (no chance to flush anything) and
//! restarted with the same flags and data directory, which is exactly the
//! crash-recovery path cairn's write-ahead log must survive. Dropping the
//! cluster kills every member, also when the test panics; on a panic the
//! tail of every member's log is printed first.

use std::fs::{self, File, OpenOptions};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use crate::etcdctl::Etcdctl;
use crate::port_block::{PortBlock, PORTS_PER_BLOCK};
use crate::scratch_directory::ScratchDirectory;
use crate::server_binary::{ServerBinary, ServerKind};
use crate::wait::wait_until;

/// Bound on a member becoming healthy after a (re)start; generous because
/// the test machine is shared with compilers.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on the cluster agreeing on a leader.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of each member's log printed when a test panics.
pub const LOG_TAIL_LINES: usize = 60;
/// Largest cluster a port block can hold (a client and a peer port each).
pub const MEMBERS_MAX: usize = PORTS_PER_BLOCK as usize / 2;

/// Tunables passed to every member as etcd flags.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Number of members.
    pub size: usize,
    /// `--heartbeat-interval`, milliseconds.
    pub heartbeat_interval_milliseconds: u64,
    /// `--election-timeout`, milliseconds.
    pub election_timeout_milliseconds: u64,
    /// `--snapshot-count`; `None` keeps the server's default.
    pub snapshot_count: Option<u64>,
    /// `--log-level`.
    pub log_level: String,
}

impl ClusterConfig {
    /// etcd's default timing for a cluster of `size` members.
    pub fn with_size(size: usize) -> ClusterConfig {
        ClusterConfig {
            size,
            heartbeat_interval_milliseconds: 100,
            election_timeout_milliseconds: 1000,
            snapshot_count: None,
            log_level: "info".to_owned(),
        }
    }
}

/// One member's identity, fixed for the life of the cluster.
#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_directory: PathBuf,
    log_path: PathBuf,
    // Invariant: Some while the member runs (started and not killed).
    process: Option<Child>,
}

/// What `endpoint status -w json` reports for one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointStatus {
    /// The endpoint asked.
    pub endpoint: String,
    /// The answering member's id (header.member_id).
    pub member_id: u64,
    /// The member's view of the leader's id; 0 when it knows none.
    pub leader: u64,
    /// Current Raft term.
    pub raft_term: u64,
    /// Last Raft log index.
    pub raft_index: u64,
    /// Store revision (header.revision).
    pub revision: i64,
    /// Server version string.
    pub version: String,
}

/// Running members plus everything needed to restart them.
pub struct Cluster {
    binary: ServerBinary,
    config: ClusterConfig,
    members: Vec<Member>,
    initial_cluster: String,
    token: String,
    // Field order matters for drop: members die (Drop) before the scratch
    // directory and the port claim go away. The claim is only held, never
    // read: it keeps parallel tests off these ports until the end.
    scratch: ScratchDirectory,
    _port_claim: PortBlock,
}

impl Cluster {
    /// Starts `size` members with default timing and waits until each is
    /// healthy.
    pub fn start(size: usize) -> Cluster {
        Cluster::start_with(ClusterConfig::with_size(size))
    }

    /// Starts a cluster as configured and waits until each member is healthy.
    pub fn start_with(config: ClusterConfig) -> Cluster {
        assert!(
            config.size >= 1,
            "a cluster needs at least one member, got {}",
            config.size
        );
        assert!(
            config.size <= MEMBERS_MAX,
            "cluster size {} exceeds {MEMBERS_MAX}",
            config.size
        );
        let binary = ServerBinary::locate();
        let ports = PortBlock::claim();
        let scratch = ScratchDirectory::new(&format!("cluster{}", config.size));
        let members: Vec<Member> = (0..config.size)
            .map(|index| {
                let name = format!("infra{}", index + 1);
                Member {
                    client_port: ports.port(2 * index as u16),
                    peer_port: ports.port(2 * index as u16 + 1),
                    data_directory: scratch.path().join(format!("{name}.data")),
                    log_path: scratch.path().join(format!("{name}.log")),
                    name,
                    process: None,
                }
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|member| format!("{}=http://127.0.0.1:{}", member.name, member.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("cairn-e2e-{}", ports.port(0));
        let mut cluster = Cluster {
            binary,
            config,
            members,
            initial_cluster,
            token,
            scratch,
            _port_claim: ports,
        };
        for index in 0..cluster.members.len() {
            cluster.spawn_member(index);
        }
        cluster.wait_healthy();
        cluster
    }

    /// Which server implementation the members run.
    pub fn server_kind(&self) -> ServerKind {
        self.binary.kind
    }

    /// Number of members (running or not).
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// The member's `--name`.
    pub fn name(&self, index: usize) -> &str {
        &self.members[index].name
    }

    /// `127.0.0.1:<client port>` of a member, as etcdctl takes it.
    pub fn endpoint(&self, index: usize) -> String {
        format!("127.0.0.1:{}", self.members[index].client_port)
    }

    /// The member's advertised client URL.
    pub fn client_url(&self, index: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[index].client_port)
    }

    /// The member's advertised peer URL.
    pub fn peer_url(&self, index: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[index].peer_port)
    }

    /// Comma-separated endpoints of all members.
    pub fn endpoints(&self) -> String {
        (0..self.size())
            .map(|index| self.endpoint(index))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// An etcdctl talking to all members.
    pub fn etcdctl(&self) -> Etcdctl {
        Etcdctl::new(&self.endpoints())
    }

    /// An etcdctl talking to one member only.
    pub fn etcdctl_for(&self, index: usize) -> Etcdctl {
        Etcdctl::new(&self.endpoint(index))
    }

    /// A directory the test may use for its own files; removed with the
    /// cluster.
    pub fn scratch_path(&self) -> PathBuf {
        self.scratch.path().to_path_buf()
    }

    /// Whether the member's process is running.
    pub fn is_running(&mut self, index: usize) -> bool {
        let member = &mut self.members[index];
        match member.process.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_))) | Some(Err(_)) | None => false,
        }
    }

    /// Kills a member with SIGKILL and reaps it; its data directory stays.
    pub fn kill(&mut self, index: usize) {
        let member = &mut self.members[index];
        let mut process = member
            .process
            .take()
            .unwrap_or_else(|| panic!("member {} is not running", member.name));
        let _ = process.kill();
        let _ = process.wait();
    }

    /// Restarts a killed member with the same flags and data directory and
    /// waits until it is healthy again.
    pub fn restart(&mut self, index: usize) {
        self.spawn_member(index);
        self.wait_member_healthy(index);
    }

    /// Kills every running member (SIGKILL).
    pub fn kill_all(&mut self) {
        for index in 0..self.size() {
            if self.members[index].process.is_some() {
                self.kill(index);
            }
        }
    }

    /// Restarts every member that is not running, all at once (a lone
    /// member of a multi-member cluster cannot become healthy), then waits
    /// until all are healthy.
    pub fn restart_all(&mut self) {
        for index in 0..self.size() {
            if self.members[index].process.is_none() {
                self.spawn_member(index);
            }
        }
        self.wait_healthy();
    }

    /// Waits until every running member answers `endpoint health`.
    pub fn wait_healthy(&mut self) {
        for index in 0..self.size() {
            if self.members[index].process.is_some() {
                self.wait_member_healthy(index);
            }
        }
    }

    /// Waits until one member answers `endpoint health` (a quorum read of
    /// key "health"); panics with its log if it exits or the deadline
    /// passes.
    pub fn wait_member_healthy(&mut self, index: usize) {
        let etcdctl = self.etcdctl_for(index);
        let name = self.members[index].name.clone();
        let description = format!("member {name} at {} is healthy", etcdctl.endpoints());
        let mut last_output = String::new();
        let mut exited = None;
        let healthy = wait_until_or_give_up(STARTUP_TIMEOUT, || {
            if !self.is_running(index) {
                exited = Some(());
                return Some(false);
            }
            let output = etcdctl.run(&[
                "endpoint",
                "health",
                "--dial-timeout=1s",
                "--command-timeout=2s",
            ]);
            if output.success() {
                return Some(true);
            }
            last_output = output.to_string();
            None
        });
        if healthy != Some(true) {
            let reason = if exited.is_some() {
                "the process exited"
            } else {
                "timed out"
            };
            panic!(
                "waiting until {description}: {reason}\nlast health check:\n{last_output}\n{}",
                self.log_tail(index)
            );
        }
    }

    /// `endpoint status` of one member, or `None` if it does not answer.
    pub fn status(&self, index: usize) -> Option<EndpointStatus> {
        let output = self.etcdctl_for(index).run(&[
            "endpoint",
            "status",
            "-w",
            "json",
            "--dial-timeout=1s",
            "--command-timeout=2s",
        ]);
        if !output.success() {
            return None;
        }
        let json = output.json();
        let entry = &json[0];
        let status = &entry["Status"];
        Some(EndpointStatus {
            endpoint: entry["Endpoint"].as_str().unwrap_or_default().to_owned(),
            member_id: status["header"]["member_id"].as_u64().unwrap_or(0),
            leader: status["leader"].as_u64().unwrap_or(0),
            raft_term: status["raftTerm"].as_u64().unwrap_or(0),
            raft_index: status["raftIndex"].as_u64().unwrap_or(0),
            revision: status["header"]["revision"].as_i64().unwrap_or(0),
            version: status["version"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// Index of the leader, once every running member answers and all name
    /// the same leader, which is itself running.
    pub fn leader_index(&mut self) -> usize {
        let running: Vec<usize> = (0..self.size())
            .filter(|&index| self.is_running(index))
            .collect();
        wait_until(
            "the running members agree on a running leader",
            LEADER_TIMEOUT,
            || {
                let statuses: Option<Vec<(usize, EndpointStatus)>> = running
                    .iter()
                    .map(|&index| self.status(index).map(|status| (index, status)))
                    .collect();
                let statuses = statuses?;
                let leader = statuses.first()?.1.leader;
                if leader == 0 || statuses.iter().any(|(_, status)| status.leader != leader) {
                    return None;
                }
                statuses
                    .iter()
                    .find(|(_, status)| status.member_id == leader)
                    .map(|(index, _)| *index)
            },
        )
    }

    /// The last [`LOG_TAIL_LINES`] lines of a member's log.
    pub fn log_tail(&self, index: usize) -> String {
        let member = &self.members[index];
        let log = fs::read_to_string(&member.log_path).unwrap_or_else(|error| {
            format!("(cannot read {}: {error})", member.log_path.display())
        });
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        format!(
            "--- last {} lines of {} ({}) ---\n{}",
            tail.len(),
            member.name,
            member.log_path.display(),
            tail.join("\n")
        )
    }

    /// The server flags of a member: etcd's names, accepted by both servers.
    fn member_arguments(&self, index: usize) -> Vec<String> {
        let member = &self.members[index];
        let client_url = self.client_url(index);
        let peer_url = self.peer_url(index);
        let mut arguments = vec![
            format!("--name={}", member.name),
            format!("--data-dir={}", member.data_directory.display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster={}", self.initial_cluster),
            "--initial-cluster-state=new".to_owned(),
            format!("--initial-cluster-token={}", self.token),
            format!(
                "--heartbeat-interval={}",
                self.config.heartbeat_interval_milliseconds
            ),
            format!(
                "--election-timeout={}",
                self.config.election_timeout_milliseconds
            ),
            format!("--log-level={}", self.config.log_level),
        ];
        if let Some(snapshot_count) = self.config.snapshot_count {
            arguments.push(format!("--snapshot-count={snapshot_count}"));
        }
        arguments
    }

    /// Spawns a member process (without waiting for health), appending its
    /// output to its log file.
    fn spawn_member(&mut self, index: usize) {
        assert!(
            self.members[index].process.is_none(),
            "member {} is already running",
            self.members[index].name
        );
        let arguments = self.member_arguments(index);
        let member = &self.members[index];
        let log = open_log(member);
        let log_for_stderr = log
            .try_clone()
            .unwrap_or_else(|error| panic!("cannot clone {}: {error}", member.log_path.display()));
        let mut command = Command::new(&self.binary.path);
        command.args(&arguments);
        // etcd reads ETCD_* variables as flags and refuses conflicts; cairn
        // may do the same. Only the flags above configure a member.
        for (name, _) in std::env::vars_os() {
            let name_text = name.to_string_lossy();
            if name_text.starts_with("ETCD_") || name_text.starts_with("CAIRN_") {
                command.env_remove(&name);
            }
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_for_stderr));
        let process = command.spawn().unwrap_or_else(|error| {
            panic!(
                "cannot spawn {} {}: {error}",
                self.binary.path.display(),
                arguments.join(" ")
            )
        });
        self.members[index].process = Some(process);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        for index in 0..self.members.len() {
            if let Some(mut process) = self.members[index].process.take() {
                let _ = process.kill();
                let _ = process.wait();
            }
            if panicking {
                eprintln!("{}", self.log_tail(index));
            }
        }
    }
}

fn open_log(member: &Member) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&member.log_path)
        .unwrap_or_else(|error| panic!("cannot open {}: {error}", member.log_path.display()))
}

/// Like [`wait_until`] but returns `None` on timeout instead of panicking,
/// so the caller can attach the member's log to its own message.
fn wait_until_or_give_up<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        thread::sleep(crate::wait::POLL_INTERVAL);
    }
}
