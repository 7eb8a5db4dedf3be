//! [`Cluster`]: the simulated members, each a madsim node running the
//! production driver (`start_on_disk`) on its own [`SimDisk`], kept across
//! kills and restarts, and the process, network and disk faults applied to
//! them.
//!
//! A member's madsim node re-runs its init closure at every restart, which
//! starts a new incarnation of the driver on the same disk. A kill drops
//! every task of the node at once (nothing more is written) and then crashes
//! the disk, losing whatever was not synced.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cairn_core::raft::NodeId;
use cairn_server::node::{start_on_disk, InitialMember, NodeConfig, NodeHandle, StartMode};
use cairn_server::storage::{Disk, DiskFile, SimDisk};
use madsim::net::NetSim;
use madsim::runtime::Handle;

use super::bug::Bug;
use super::recorder::{SharedRecorder, SimObserver};

/// The members' peer port.
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

/// What a member is doing, as the nemesis left it.
#[derive(Clone, Debug, Default)]
pub struct MemberSlot {
    /// The handle of the running incarnation.
    pub handle: Option<NodeHandle>,
    /// Killed (not running until restarted).
    pub killed: bool,
    /// Paused.
    pub paused: bool,
    /// Why the last incarnation stopped or could not start.
    pub failure: Option<String>,
}

/// One member.
#[derive(Debug)]
pub struct Member {
    /// 1-based, as scenarios number members.
    pub number: u32,
    /// Its Raft ID.
    pub id: NodeId,
    /// Its madsim node.
    pub node: madsim::task::NodeId,
    /// Its disk (shared with every incarnation).
    pub disk: SimDisk,
    /// Its state.
    pub slot: Arc<Mutex<MemberSlot>>,
}

impl Member {
    /// Locks its slot.
    pub fn slot(&self) -> MutexGuard<'_, MemberSlot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The running incarnation's handle, if it is up and not paused.
    pub fn handle(&self) -> Option<NodeHandle> {
        let slot = self.slot();
        if slot.killed || slot.paused {
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
#[derive(Debug)]
pub struct Cluster {
    /// Members in number order.
    pub members: Vec<Member>,
    recorder: SharedRecorder,
}

/// The IP of member `number`.
pub fn member_ip(number: u32) -> IpAddr {
    let low = u8::try_from(number).expect("at most 255 members");
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, low))
}

impl Cluster {
    /// Creates `size` members and starts them.
    pub fn start(
        size: u32,
        seed: u64,
        tick_rates_percent: &[u32],
        bug: Option<Bug>,
        recorder: SharedRecorder,
    ) -> Cluster {
        let initial: Vec<InitialMember> = (1..=size)
            .map(|number| InitialMember {
                name: format!("member-{number}"),
                peer_urls: vec![format!("http://{}:{PEER_PORT}", member_ip(number))],
            })
            .collect();
        let runtime = Handle::current();
        let observer = Arc::new(SimObserver {
            recorder: recorder.clone(),
        });
        let mut members = Vec::new();
        for number in 1..=size {
            let name = format!("member-{number}");
            let mut config = NodeConfig::new(
                name.clone(),
                CLUSTER_TOKEN,
                initial.clone(),
                StartMode::New,
                format!("http://0.0.0.0:{PEER_PORT}"),
                vec![format!("http://{}:2379", member_ip(number))],
                DATA_DIR,
            )
            .expect("the simulated cluster's configuration is valid");
            let rate = tick_rates_percent
                .get(number as usize - 1)
                .copied()
                .unwrap_or(100)
                .max(1);
            // A clock running at `rate` percent ticks that much more often.
            config.tick_interval = config.tick_interval * 100 / rate;
            config.snapshot_count = SNAPSHOT_COUNT;
            config.request_timeout = NODE_REQUEST_TIMEOUT;
            config.seed = seed ^ config.member_id.0;
            config.observer = Some(observer.clone());
            config.planted_bug = bug.and_then(Bug::driver_bug);
            let id = config.member_id;
            let disk = SimDisk::new(seed.wrapping_add(u64::from(number)));
            let slot = Arc::new(Mutex::new(MemberSlot::default()));
            let init = {
                let disk = disk.clone();
                let slot = slot.clone();
                let recorder = recorder.clone();
                let unsynced = bug == Some(Bug::SkipWalFsync);
                move || {
                    let config = config.clone();
                    let disk: Arc<dyn Disk> = if unsynced {
                        Arc::new(UnsyncedDisk(disk.clone()))
                    } else {
                        Arc::new(disk.clone())
                    };
                    let slot = slot.clone();
                    let recorder = recorder.clone();
                    async move { run_incarnation(config, disk, slot, recorder).await }
                }
            };
            let node = runtime
                .create_node()
                .name(name)
                .ip(member_ip(number))
                .init(init)
                .build()
                .id();
            members.push(Member {
                number,
                id,
                node,
                disk,
                slot,
            });
        }
        Cluster { members, recorder }
    }

    /// Member `number` (1-based).
    pub fn member(&self, number: u32) -> &Member {
        &self.members[number as usize - 1]
    }

    /// How many members.
    pub fn size(&self) -> u32 {
        self.members.len() as u32
    }

    /// The running members' handles, in number order.
    pub fn handles(&self) -> Vec<(u32, NodeHandle)> {
        self.members
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
            slot.handle = None;
        }
        Handle::current().kill(member.node);
        crash(&member.disk);
        self.recorder.lock().trace(&format!("kill member {number}"));
    }

    /// Restarts member `number` if it is killed or its process stopped.
    pub fn restart(&self, number: u32) {
        let member = self.member(number);
        {
            let mut slot = member.slot();
            let stopped = slot.handle.is_none();
            if !slot.killed && !stopped {
                return;
            }
            slot.killed = false;
            slot.paused = false;
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

    /// Resumes member `number`.
    pub fn resume(&self, number: u32) {
        let member = self.member(number);
        let mut slot = member.slot();
        if !slot.paused {
            return;
        }
        slot.paused = false;
        drop(slot);
        Handle::current().resume(member.node);
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

    /// Restores every link between members.
    pub fn heal_network(&self) {
        let net = NetSim::current();
        for source in &self.members {
            for destination in &self.members {
                if source.number != destination.number {
                    net.unclog_link(source.node, destination.node);
                }
            }
        }
        self.recorder.lock().trace("heal network");
    }
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
                let mut guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
                guard.handle = Some(handle);
                guard.failure = None;
            }
            let result = task.wait().await;
            let reason = match result {
                Ok(()) => "stopped".to_string(),
                Err(failure) => format!("failed: {failure}"),
            };
            recorder.lock().trace(&format!("member {member} {reason}"));
            let mut guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
            guard.handle = None;
            guard.failure = Some(reason);
        }
        Err(error) => {
            recorder
                .lock()
                .trace(&format!("member {member} refused to start: {error}"));
            let mut guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
            guard.handle = None;
            guard.failure = Some(format!("refused to start: {error}"));
        }
    }
}
