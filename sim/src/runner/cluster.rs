//! [`Cluster`]: the simulated members, each a madsim node (a "machine")
//! running the production driver (`start_on_disk`) on its own [`SimDisk`],
//! kept across kills and restarts, and the process, network and disk faults
//! applied to them.
//!
//! A member's madsim node re-runs its init closure at every restart, which
//! starts a new incarnation of the driver on the same disk with the
//! machine's current configuration. A kill drops every task of the node at
//! once (nothing more is written) and then crashes the disk, losing
//! whatever was not synced.
//!
//! Membership changes (see [`super::membership`]) add machines while the run
//! goes on and give a wiped machine a new identity: a new peer URL, hence a
//! new member ID, as the operator's `member add` would. Which machines may
//! run is the runner's [`Membership`] view: a removed member never runs
//! again, and a wiped member never runs again under its old identity.
//!
//! A slow fsync stalls the whole machine: the disk's stall hook pauses the
//! madsim node right after the sync returns, and a task on a separate,
//! never-paused node resumes it after the latency. The driver hands a
//! Ready's messages to the transport only after persisting, and the
//! transport's tasks are paused too, so those messages leave after the
//! stall, as they would behind a real fsync that blocks the driver thread.
//! That stall comes after the data is durable; a stall before it, with a
//! crash inside, goes through the node observer ([`FsyncFaults`]).

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cairn_core::raft::NodeId;
use cairn_server::node::{
    start_on_disk, InitialMember, Member as TableMember, NodeConfig, NodeHandle, StartMode,
};
use cairn_server::storage::sim_disk::SyncStallHook;
use cairn_server::storage::{Disk, DiskFile, SimDisk};
use madsim::net::NetSim;
use madsim::runtime::Handle;

use super::bug::Bug;
use super::fsync_faults::FsyncFaults;
use super::recorder::{SharedRecorder, SimObserver};
/// The founding members' peer port; each new identity of a wiped machine
/// listens on the next port, so its peer URL (and member ID) is new.
pub const PEER_PORT: u16 = 2380;
/// Every member's data dir on its own disk.
pub const DATA_DIR: &str = "/data/member.cairn";
/// The cluster token.
pub const CLUSTER_TOKEN: &str = "cairn-sim";
/// Applied entries between snapshots in the simulation: small, so snapshots
/// and log compaction happen within a run.
pub const SNAPSHOT_COUNT: u64 = 500;
/// How long a client request may wait inside the node.
pub const NODE_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Where a machine stands in the cluster's membership, as the runner (the
/// operator) knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    /// Created for a member add not yet confirmed: not started.
    Joining,
    /// A learner.
    Learner,
    /// A voter.
    Voter,
    /// Its data dir was wiped (`voter`: it was a voter). Its old identity
    /// is still in the member table until the operator removes it, and must
    /// never run again: with its hard state gone it could vote twice in a
    /// term it already voted in.
    Wiped {
        /// It was a voter when wiped.
        voter: bool,
    },
    /// Removed from the cluster: its process stops and never restarts.
    Removed,
    /// Its add was never confirmed: never started.
    Abandoned,
}

impl Membership {
    /// Whether a process may run under the machine's current identity.
    pub fn may_run(self) -> bool {
        matches!(self, Membership::Learner | Membership::Voter)
    }

    /// Whether the machine's identity counts in the quorum.
    pub fn is_voter(self) -> bool {
        matches!(self, Membership::Voter | Membership::Wiped { voter: true })
    }
}

/// What a member is doing, as the nemesis left it.
#[derive(Clone, Debug)]
pub struct MemberSlot {
    /// The handle of the running incarnation.
    pub handle: Option<NodeHandle>,
    /// Killed (not running until restarted).
    pub killed: bool,
    /// Paused by the nemesis.
    pub paused: bool,
    /// Stalled behind a slow fsync.
    pub stalled: bool,
    /// Bumped by every stall; a stall ends only if it is still the latest.
    pub stall_epoch: u64,
    /// Why the last incarnation stopped or could not start.
    pub failure: Option<String>,
    /// Its place in the membership.
    pub membership: Membership,
    /// How many identities the machine had before its current one.
    pub generation: u16,
}

impl MemberSlot {
    fn new(membership: Membership) -> MemberSlot {
        MemberSlot {
            handle: None,
            killed: membership != Membership::Voter,
            paused: false,
            stalled: false,
            stall_epoch: 0,
            failure: None,
            membership,
            generation: 0,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One machine.
#[derive(Debug)]
pub struct Member {
    /// 1-based, as scenarios number members; never reused.
    pub number: u32,
    /// Its madsim node.
    pub node: madsim::task::NodeId,
    /// Its disk (shared with every incarnation).
    pub disk: SimDisk,
    /// Its state.
    pub slot: Arc<Mutex<MemberSlot>>,
    /// The configuration the next incarnation starts with.
    config: Arc<Mutex<NodeConfig>>,
}

impl Member {
    /// Locks its slot.
    pub fn slot(&self) -> MutexGuard<'_, MemberSlot> {
        lock(&self.slot)
    }

    /// Its current Raft ID.
    pub fn id(&self) -> NodeId {
        lock(&self.config).member_id
    }

    /// Its place in the membership.
    pub fn membership(&self) -> Membership {
        self.slot().membership
    }

    /// The handle clients use: a running voter's only. etcd's learners
    /// refuse client requests ("rpc not supported for learner"); Cairn's
    /// serve them from a state that may lag far behind while they catch
    /// up, so the simulated clients, like etcd's, leave learners alone.
    pub fn client_handle(&self) -> Option<NodeHandle> {
        if self.membership() != Membership::Voter {
            return None;
        }
        self.handle()
    }

    /// The running incarnation's handle, if it is up, not paused, and a
    /// member.
    pub fn handle(&self) -> Option<NodeHandle> {
        let slot = self.slot();
        if slot.killed || slot.paused || !slot.membership.may_run() {
            return None;
        }
        slot.handle.clone()
    }
}

/// A disk whose file syncs do nothing: the planted "skip the WAL fsync" bug.
#[derive(Debug)]
struct UnsyncedDisk(SimDisk);

#[derive(Debug)]
struct UnsyncedFile(Box<dyn DiskFile>);

impl DiskFile for UnsyncedFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.append(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Disk for UnsyncedDisk {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.0.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.0.list_dir(path)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.0.exists(path)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.0.read(path)
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        self.0.file_len(path)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        Ok(Box::new(UnsyncedFile(self.0.create(path)?)))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        Ok(Box::new(UnsyncedFile(self.0.open_append(path)?)))
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.0.truncate(path, len)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.0.remove(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.0.sync_dir(path)
    }
}

/// The simulated cluster.
pub struct Cluster {
    /// Machines in number order.
    members: Mutex<Vec<Arc<Member>>>,
    recorder: SharedRecorder,
    seed: u64,
    bug: Option<Bug>,
    tick_rates_percent: Vec<u32>,
    lease_checkpoint_interval: Duration,
    observer: Arc<SimObserver>,
    /// A node that is never paused or killed: it ends fsync stalls.
    staller: madsim::runtime::NodeHandle,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("members", &self.members())
            .field("seed", &self.seed)
            .field("bug", &self.bug)
            .finish_non_exhaustive()
    }
}

/// The IP of member `number`.
pub fn member_ip(number: u32) -> IpAddr {
    let low = u8::try_from(number).expect("at most 255 members");
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, low))
}

/// The peer URLs of machine `number` under its identity `generation`.
pub fn peer_urls(number: u32, generation: u16) -> Vec<String> {
    vec![format!(
        "http://{}:{}",
        member_ip(number),
        peer_port(generation)
    )]
}

fn peer_port(generation: u16) -> u16 {
    PEER_PORT + generation
}

/// The name of machine `number` (kept across identities, as an operator
/// re-adding a replaced machine keeps its name).
pub fn member_name(number: u32) -> String {
    format!("member-{number}")
}

/// The --initial-cluster of machine `number` joining, as member `joiner`
/// with `joiner_urls`, a cluster whose table is `table` (which holds the
/// joiner, unnamed until it starts, unless the table was read from a member
/// that has not applied the add yet).
pub fn joining_cluster(
    table: &[TableMember],
    number: u32,
    joiner: NodeId,
    joiner_urls: &[String],
) -> Vec<InitialMember> {
    let mut initial: Vec<InitialMember> = table
        .iter()
        .filter(|member| member.id != joiner.0)
        .map(|member| InitialMember {
            name: if member.name.is_empty() {
                format!("unstarted-{:x}", member.id)
            } else {
                member.name.clone()
            },
            peer_urls: member.peer_urls.clone(),
        })
        .collect();
    initial.push(InitialMember {
        name: member_name(number),
        peer_urls: joiner_urls.to_vec(),
    });
    initial
}

impl Cluster {
    /// Creates `size` founding members and starts them.
    pub fn start(
        size: u32,
        seed: u64,
        tick_rates_percent: &[u32],
        lease_checkpoint_interval: Duration,
        bug: Option<Bug>,
        recorder: SharedRecorder,
    ) -> Cluster {
        let initial: Vec<InitialMember> = (1..=size)
            .map(|number| InitialMember {
                name: member_name(number),
                peer_urls: peer_urls(number, 0),
            })
            .collect();
        let observer = Arc::new(SimObserver {
            recorder: recorder.clone(),
            fsync_faults: FsyncFaults::default(),
        });
        let members = Mutex::new(Vec::new());
        let staller = Handle::current().create_node().name("sync-stalls").build();
        let cluster = Cluster {
            members,
            recorder,
            seed,
            bug,
            tick_rates_percent: tick_rates_percent.to_vec(),
            lease_checkpoint_interval,
            observer,
            staller,
        };
        for number in 1..=size {
            let config = cluster.node_config(number, 0, initial.clone(), StartMode::New);
            cluster.create_machine(number, config, Membership::Voter);
        }
        cluster
    }

    /// The configuration of machine `number` under identity `generation`.
    fn node_config(
        &self,
        number: u32,
        generation: u16,
        initial: Vec<InitialMember>,
        start_mode: StartMode,
    ) -> NodeConfig {
        let mut config = NodeConfig::new(
            member_name(number),
            CLUSTER_TOKEN,
            initial,
            start_mode,
            format!("http://0.0.0.0:{}", peer_port(generation)),
            vec![format!("http://{}:2379", member_ip(number))],
            DATA_DIR,
        )
        .expect("the simulated cluster's configuration is valid");
        let rate = self
            .tick_rates_percent
            .get(number as usize - 1)
            .copied()
            .unwrap_or(100)
            .max(1);
        // A clock running at `rate` percent ticks that much more often.
        config.tick_interval = config.tick_interval * 100 / rate;
        config.snapshot_count = SNAPSHOT_COUNT;
        config.request_timeout = NODE_REQUEST_TIMEOUT;
        // Drawn by the seed (the scenario's `lease_checkpoint_interval`):
        // etcd's default of five minutes would never fire in a run.
        config.lease_checkpoint_interval = self.lease_checkpoint_interval;
        // The run's seed as is: every consumer mixes in the member ID
        // (Raft seeds its election timeouts with `seed ^ id`), so mixing it
        // in here as well cancelled out and gave every member the same
        // timeouts: split votes until message jitter broke the tie, and
        // kill-and-wipe seed 42 never elected a leader.
        config.seed = self.seed;
        config.observer = Some(self.observer.clone());
        config.planted_bug = self.bug.and_then(Bug::driver_bug);
        config
    }

    /// Creates machine `number`; it starts at once if `membership` lets it run.
    fn create_machine(
        &self,
        number: u32,
        config: NodeConfig,
        membership: Membership,
    ) -> Arc<Member> {
        let disk = SimDisk::new(self.seed.wrapping_add(u64::from(number)));
        let slot = Arc::new(Mutex::new(MemberSlot::new(membership)));
        let config = Arc::new(Mutex::new(config));
        let init = {
            let disk = disk.clone();
            let slot = slot.clone();
            let config = config.clone();
            let recorder = self.recorder.clone();
            let unsynced = self.bug == Some(Bug::SkipWalFsync);
            move || {
                let config = lock(&config).clone();
                let disk: Arc<dyn Disk> = if unsynced {
                    Arc::new(UnsyncedDisk(disk.clone()))
                } else {
                    Arc::new(disk.clone())
                };
                let may_run = lock(&slot).membership.may_run();
                let slot = slot.clone();
                let recorder = recorder.clone();
                async move {
                    if may_run {
                        run_incarnation(config, disk, slot, recorder).await;
                    }
                }
            }
        };
        let node = Handle::current()
            .create_node()
            .name(member_name(number))
            .ip(member_ip(number))
            .init(init)
            .build()
            .id();
        let hook = {
            let slot = slot.clone();
            let staller = self.staller.clone();
            SyncStallHook::new(move |latency| stall(&slot, node, &staller, latency))
        };
        disk.set_sync_stall_hook(hook);
        let member = Arc::new(Member {
            number,
            node,
            disk,
            slot,
            config,
        });
        lock(&self.members).push(member.clone());
        member
    }

    /// Creates the next machine for a member add, not started: its
    /// configuration is set once the add is confirmed.
    pub fn add_machine(&self) -> Arc<Member> {
        let number = self.size() + 1;
        let own = vec![InitialMember {
            name: member_name(number),
            peer_urls: peer_urls(number, 0),
        }];
        let config = self.node_config(number, 0, own, StartMode::Existing);
        self.create_machine(number, config, Membership::Joining)
    }

    /// Gives machine `number` its next identity (a new peer URL, hence a new
    /// member ID), not yet in the cluster; returns its peer URLs.
    pub fn next_identity(&self, number: u32) -> Vec<String> {
        let member = self.member(number);
        let generation = {
            let mut slot = member.slot();
            slot.generation += 1;
            slot.membership = Membership::Joining;
            slot.generation
        };
        let urls = peer_urls(number, generation);
        let own = vec![InitialMember {
            name: member_name(number),
            peer_urls: urls.clone(),
        }];
        *lock(&member.config) = self.node_config(number, generation, own, StartMode::Existing);
        urls
    }

    /// Machine `number`'s add was confirmed with the member table `table`:
    /// it starts, joining, as a learner.
    pub fn start_joined(&self, number: u32, table: &[TableMember]) {
        let member = self.member(number);
        let generation = member.slot().generation;
        let initial = joining_cluster(table, number, member.id(), &peer_urls(number, generation));
        *lock(&member.config) = self.node_config(number, generation, initial, StartMode::Existing);
        member.slot().membership = Membership::Learner;
        self.restart(number);
    }

    /// The fsyncs the nemesis stretches (see [`FsyncFaults`]).
    pub fn fsync_faults(&self) -> &FsyncFaults {
        &self.observer.fsync_faults
    }

    /// Traces one line in the run's trace.
    pub fn trace(&self, line: &str) {
        self.recorder.lock().trace(line);
    }

    /// Records machine `number`'s place in the membership.
    pub fn set_membership(&self, number: u32, membership: Membership) {
        self.member(number).slot().membership = membership;
        self.recorder
            .lock()
            .trace(&format!("member {number} is now {membership:?}"));
    }

    /// The largest minimum lease TTL any machine's configuration derives
    /// (drifting clocks have longer or shorter ticks, hence minimums).
    pub fn lease_ttl_min_seconds_max(&self) -> i64 {
        self.members()
            .iter()
            .map(|member| lock(&member.config).lease_ttl_min_seconds())
            .max()
            .unwrap_or(1)
    }

    /// Machine `number` (1-based).
    pub fn member(&self, number: u32) -> Arc<Member> {
        lock(&self.members)[number as usize - 1].clone()
    }

    /// Every machine, in number order.
    pub fn members(&self) -> Vec<Arc<Member>> {
        lock(&self.members).clone()
    }

    /// How many machines (the highest member number).
    pub fn size(&self) -> u32 {
        lock(&self.members).len() as u32
    }

    /// The machines that are members (voters or learners), in number order.
    pub fn active_numbers(&self) -> Vec<u32> {
        self.members()
            .iter()
            .filter(|member| member.membership().may_run())
            .map(|member| member.number)
            .collect()
    }

    /// The running members' handles, in number order.
    pub fn handles(&self) -> Vec<(u32, NodeHandle)> {
        self.members()
            .iter()
            .filter_map(|member| member.handle().map(|handle| (member.number, handle)))
            .collect()
    }

    /// The member that believes it leads in the highest term, if any.
    pub fn leader(&self) -> Option<u32> {
        self.handles()
            .into_iter()
            .filter(|(_, handle)| handle.metrics().is_leader.load(Ordering::Relaxed))
            .max_by_key(|(number, handle)| (handle.metrics().term.load(Ordering::Relaxed), *number))
            .map(|(number, _)| number)
    }

    /// Kills member `number` (a crash: tasks dropped, unsynced data lost
    /// according to `crash`).
    pub fn kill(&self, number: u32, crash: impl FnOnce(&SimDisk)) {
        let member = self.member(number);
        {
            let mut slot = member.slot();
            if slot.killed {
                return;
            }
            slot.killed = true;
            slot.paused = false;
            slot.stalled = false;
            slot.handle = None;
        }
        Handle::current().kill(member.node);
        crash(&member.disk);
        self.recorder.lock().trace(&format!("kill member {number}"));
    }

    /// Restarts member `number` if it is killed or its process stopped, and
    /// it may run.
    pub fn restart(&self, number: u32) {
        let member = self.member(number);
        {
            let mut slot = member.slot();
            let stopped = slot.handle.is_none();
            if !slot.killed && !stopped {
                return;
            }
            if !slot.membership.may_run() {
                return;
            }
            slot.killed = false;
            slot.paused = false;
            slot.stalled = false;
            slot.handle = None;
        }
        self.recorder
            .lock()
            .trace(&format!("restart member {number}"));
        Handle::current().restart(member.node);
    }

    /// Pauses member `number`.
    pub fn pause(&self, number: u32) {
        let member = self.member(number);
        let mut slot = member.slot();
        if slot.killed || slot.paused {
            return;
        }
        slot.paused = true;
        drop(slot);
        Handle::current().pause(member.node);
        self.recorder
            .lock()
            .trace(&format!("pause member {number}"));
    }

    /// Resumes member `number` (it stays stalled if a slow fsync holds it).
    pub fn resume(&self, number: u32) {
        let member = self.member(number);
        let mut slot = member.slot();
        if !slot.paused {
            return;
        }
        slot.paused = false;
        let stalled = slot.stalled;
        drop(slot);
        if !stalled {
            Handle::current().resume(member.node);
        }
        self.recorder
            .lock()
            .trace(&format!("resume member {number}"));
    }

    /// Cuts the links from every member of `from` to every member of `to`.
    pub fn cut(&self, from: &BTreeSet<u32>, to: &BTreeSet<u32>) {
        let net = NetSim::current();
        for &source in from {
            for &destination in to {
                if source != destination {
                    net.clog_link(self.member(source).node, self.member(destination).node);
                }
            }
        }
        self.recorder
            .lock()
            .trace(&format!("cut {from:?} -> {to:?}"));
    }

    /// Kills every machine and the staller node and erases every disk, once
    /// the run is over and its outcome taken (see `runner::tear_down`).
    pub fn tear_down(&self) {
        for member in self.members() {
            member.slot().handle = None;
            Handle::current().kill(member.node);
            // The hook holds the staller's node handle, hence the runtime.
            member.disk.set_sync_stall_hook(SyncStallHook::new(|_| {}));
            member.disk.wipe();
        }
        Handle::current().kill(self.staller.id());
    }

    /// Restores every link between members.
    pub fn heal_network(&self) {
        let net = NetSim::current();
        let members = self.members();
        for source in &members {
            for destination in &members {
                if source.number != destination.number {
                    net.unclog_link(source.node, destination.node);
                }
            }
        }
        self.recorder.lock().trace("heal network");
    }
}

/// A slow fsync just returned on the machine running on `node`: pause it
/// (its current task runs on until it yields) and resume it after
/// `latency`, unless a later stall, a kill or the nemesis's own pause took
/// over in between.
fn stall(
    slot: &Arc<Mutex<MemberSlot>>,
    node: madsim::task::NodeId,
    staller: &madsim::runtime::NodeHandle,
    latency: Duration,
) {
    let epoch = {
        let mut slot = lock(slot);
        if slot.killed {
            return;
        }
        slot.stall_epoch += 1;
        slot.stalled = true;
        slot.stall_epoch
    };
    Handle::current().pause(node);
    let slot = slot.clone();
    staller.spawn(async move {
        tokio::time::sleep(latency).await;
        let mut guard = lock(&slot);
        if guard.stall_epoch != epoch || !guard.stalled {
            return;
        }
        guard.stalled = false;
        let resume = !guard.paused && !guard.killed;
        drop(guard);
        if resume {
            Handle::current().resume(node);
        }
    });
}

/// One incarnation of a member: start the driver on the disk, publish the
/// handle, and wait for the driver to stop.
async fn run_incarnation(
    config: NodeConfig,
    disk: Arc<dyn Disk>,
    slot: Arc<Mutex<MemberSlot>>,
    recorder: SharedRecorder,
) {
    let member = config.member_id;
    recorder.lock().new_incarnation(member);
    match start_on_disk(config, disk).await {
        Ok((handle, task)) => {
            {
                let mut guard = lock(&slot);
                guard.handle = Some(handle);
                guard.failure = None;
            }
            let result = task.wait().await;
            let reason = match result {
                Ok(()) => "stopped".to_string(),
                Err(failure) => format!("failed: {failure}"),
            };
            recorder.lock().trace(&format!("member {member} {reason}"));
            let mut guard = lock(&slot);
            guard.handle = None;
            guard.failure = Some(reason);
        }
        Err(error) => {
            recorder
                .lock()
                .trace(&format!("member {member} refused to start: {error}"));
            let mut guard = lock(&slot);
            guard.handle = None;
            guard.failure = Some(format!("refused to start: {error}"));
        }
    }
}
