//! The nemesis: injects the drawn fault schedule into the running cluster
//! and undoes each fault after its `for` duration. Schedule times count from
//! the start of the workload, i.e. once the new cluster elected its first
//! leader. Every fault that was
//! actually injected is counted by kind for the run summary; a fault that
//! could not be (no leader to isolate, a kind the runner does not model) is
//! traced as skipped and not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use madsim::net::NetSim;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::cluster::{Cluster, DATA_DIR};
use super::workload::Workload;
use crate::scenario::{Fault, FaultOption, PartitionKind, Quantity, Target};
use crate::swarm::ScheduledFault;

/// madsim's default message latency, restored after a delay fault.
pub const LATENCY_DEFAULT: std::ops::Range<Duration> =
    Duration::from_millis(1)..Duration::from_millis(10);
/// A disk fault that crashes a member restarts it after this long when the
/// fault names no duration.
pub const CRASH_RESTART_DELAY_DEFAULT: Duration = Duration::from_secs(1);
/// Loss and duplication probability when the fault names none.
pub const PROBABILITY_DEFAULT_PERCENT: u32 = 10;
/// Delay-spike latency when the fault names none.
pub const LATENCY_SPIKE_DEFAULT: Duration = Duration::from_millis(200);

/// How to undo an injected fault.
#[derive(Clone, Debug)]
enum Undo {
    Restart(Vec<u32>),
    Resume(Vec<u32>),
    HealNetwork,
    ResetLoss,
    ResetDuplication,
    ResetLatency,
    /// Clear the disk faults of these members and restart any that stopped.
    ClearDisk(Vec<u32>),
    Nothing,
}

/// Counts of injected faults, by kind.
pub type FaultCounts = Arc<Mutex<BTreeMap<&'static str, usize>>>;

/// Injects `schedule` (sorted by time) from the start of the run.
pub async fn run_nemesis(
    workload: Arc<Workload>,
    schedule: Vec<ScheduledFault>,
    seed: u64,
    counts: FaultCounts,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6e65_6d65);
    let origin = tokio::time::Instant::now();
    let mut bit_flipped: BTreeSet<u32> = BTreeSet::new();
    for fault in schedule {
        tokio::time::sleep_until(origin + fault.at).await;
        let undo = inject(&workload, &fault, &mut rng, &mut bit_flipped).await;
        let Some(undo) = undo else {
            workload
                .recorder
                .lock()
                .trace(&format!("nemesis skipped: {fault}"));
            continue;
        };
        workload.recorder.lock().trace(&format!("nemesis: {fault}"));
        *counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(fault.fault.name())
            .or_insert(0) += 1;
        let lasting = match (&undo, fault.lasting) {
            (_, Some(lasting)) => Some(lasting),
            (Undo::Restart(_), None) => Some(CRASH_RESTART_DELAY_DEFAULT),
            _ => None,
        };
        if let Some(lasting) = lasting {
            let workload = workload.clone();
            tokio::spawn(async move {
                tokio::time::sleep(lasting).await;
                undo_fault(&workload.cluster, &workload, undo);
            });
        }
    }
}

/// Undoes every fault: heals the network, clears disk faults, resumes and
/// restarts every member.
pub fn heal_everything(workload: &Workload) {
    let cluster = &workload.cluster;
    cluster.heal_network();
    undo_fault(cluster, workload, Undo::ResetLoss);
    undo_fault(cluster, workload, Undo::ResetDuplication);
    undo_fault(cluster, workload, Undo::ResetLatency);
    let all: Vec<u32> = (1..=cluster.size()).collect();
    undo_fault(cluster, workload, Undo::Resume(all.clone()));
    undo_fault(cluster, workload, Undo::ClearDisk(all.clone()));
    undo_fault(cluster, workload, Undo::Restart(all));
}

fn undo_fault(cluster: &Cluster, workload: &Workload, undo: Undo) {
    match undo {
        Undo::Restart(members) => {
            for number in members {
                cluster.restart(number);
            }
        }
        Undo::Resume(members) => {
            for number in members {
                cluster.resume(number);
            }
        }
        Undo::HealNetwork => cluster.heal_network(),
        Undo::ResetLoss => workload.recorder.lock().links.loss_percent = 0,
        Undo::ResetDuplication => workload.recorder.lock().links.duplicate_percent = 0,
        Undo::ResetLatency => {
            NetSim::current().update_config(|config| config.send_latency = LATENCY_DEFAULT);
        }
        Undo::ClearDisk(members) => {
            for number in members {
                let member = cluster.member(number);
                member.disk.set_fail_syncs(false);
                member.disk.set_full(false);
                let stopped = {
                    let slot = member.slot();
                    !slot.killed && slot.handle.is_none() && slot.failure.is_some()
                };
                if stopped {
                    // A member that stopped on a disk error restarts from
                    // what its disk made durable.
                    cluster.kill(number, |disk| disk.crash());
                    cluster.restart(number);
                }
            }
        }
        Undo::Nothing => {}
    }
}

fn percent(fault: &ScheduledFault, default: u32) -> u32 {
    match fault.options.get(&FaultOption::Probability) {
        Some(Quantity::Percent(percent)) => *percent,
        _ => default,
    }
}

fn latency(fault: &ScheduledFault, default: Duration) -> Duration {
    match fault.options.get(&FaultOption::Latency) {
        Some(Quantity::Duration(latency)) => *latency,
        _ => default,
    }
}

/// The members a target names right now.
fn members_of(cluster: &Cluster, target: Option<Target>, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let size = cluster.size();
    let mut all: Vec<u32> = (1..=size).collect();
    match target {
        None | Some(Target::All) => all,
        Some(Target::Leader) => cluster.leader().into_iter().collect(),
        Some(Target::Follower) => {
            let leader = cluster.leader();
            let followers: Vec<u32> = cluster
                .handles()
                .into_iter()
                .map(|(number, _)| number)
                .filter(|number| Some(*number) != leader)
                .collect();
            followers.choose(rng).copied().into_iter().collect()
        }
        Some(Target::Random) => vec![rng.gen_range(1..=size)],
        Some(Target::Node(number)) => vec![number.clamp(1, size)],
        Some(Target::Minority) => {
            all.shuffle(rng);
            all.truncate(((size - 1) / 2).max(1) as usize);
            all.sort_unstable();
            all
        }
        Some(Target::Majority) => {
            all.shuffle(rng);
            all.truncate((size / 2 + 1) as usize);
            all.sort_unstable();
            all
        }
    }
}

async fn inject(
    workload: &Arc<Workload>,
    fault: &ScheduledFault,
    rng: &mut ChaCha8Rng,
    bit_flipped: &mut BTreeSet<u32>,
) -> Option<Undo> {
    let cluster = &workload.cluster;
    let size = cluster.size();
    let everyone: BTreeSet<u32> = (1..=size).collect();
    let targets = members_of(cluster, fault.target, rng);
    match fault.fault {
        Fault::Kill => {
            if targets.is_empty() {
                return None;
            }
            for &number in &targets {
                cluster.kill(number, |disk| disk.crash());
            }
            Some(Undo::Restart(targets))
        }
        Fault::Restart => {
            for &number in &targets {
                cluster.restart(number);
            }
            Some(Undo::Nothing)
        }
        Fault::Pause | Fault::ClockPause => {
            if targets.is_empty() {
                return None;
            }
            for &number in &targets {
                cluster.pause(number);
            }
            Some(Undo::Resume(targets))
        }
        Fault::Resume => {
            for &number in &targets {
                cluster.resume(number);
            }
            Some(Undo::Nothing)
        }
        Fault::TransferLeader => {
            let leader = cluster.leader()?;
            let target = targets.into_iter().find(|number| *number != leader)?;
            let handle = cluster.member(leader).handle()?;
            let target_id = cluster.member(target).id.0;
            tokio::spawn(async move {
                let _ = tokio::time::timeout(
                    super::workload::CLIENT_TIMEOUT,
                    handle.move_leader(target_id),
                )
                .await;
            });
            Some(Undo::Nothing)
        }
        Fault::Partition(kind) => {
            let (side, other): (BTreeSet<u32>, BTreeSet<u32>) = match kind {
                PartitionKind::RandomHalves => {
                    let side: BTreeSet<u32> = fault.drawn_members.iter().copied().collect();
                    let other = everyone.difference(&side).copied().collect();
                    (side, other)
                }
                PartitionKind::IsolateLeader => {
                    let leader = cluster.leader()?;
                    let side = BTreeSet::from([leader]);
                    let other = everyone.difference(&side).copied().collect();
                    (side, other)
                }
                PartitionKind::Minority | PartitionKind::Majority => {
                    // The leader ends up in the named side.
                    let leader = cluster.leader()?;
                    let count = if kind == PartitionKind::Minority {
                        ((size - 1) / 2).max(1)
                    } else {
                        size / 2 + 1
                    };
                    let mut rest: Vec<u32> =
                        everyone.iter().copied().filter(|n| *n != leader).collect();
                    rest.shuffle(rng);
                    let mut side = BTreeSet::from([leader]);
                    side.extend(rest.into_iter().take(count as usize - 1));
                    let other = everyone.difference(&side).copied().collect();
                    (side, other)
                }
                PartitionKind::Bridge => {
                    let middle = *fault.drawn_members.first()?;
                    let mut rest: Vec<u32> =
                        everyone.iter().copied().filter(|n| *n != middle).collect();
                    rest.shuffle(rng);
                    let half = rest.len() / 2;
                    let left: BTreeSet<u32> = rest[..half].iter().copied().collect();
                    let right: BTreeSet<u32> = rest[half..].iter().copied().collect();
                    (left, right)
                }
                PartitionKind::OneWay => {
                    let from = *fault.drawn_members.first()?;
                    let to = *fault.drawn_members.get(1)?;
                    cluster.cut(&BTreeSet::from([from]), &BTreeSet::from([to]));
                    return Some(Undo::HealNetwork);
                }
            };
            cluster.cut(&side, &other);
            cluster.cut(&other, &side);
            Some(Undo::HealNetwork)
        }
        Fault::Heal => {
            cluster.heal_network();
            Some(Undo::Nothing)
        }
        Fault::Loss => {
            workload.recorder.lock().links.loss_percent =
                percent(fault, PROBABILITY_DEFAULT_PERCENT);
            Some(Undo::ResetLoss)
        }
        Fault::Duplicate => {
            workload.recorder.lock().links.duplicate_percent =
                percent(fault, PROBABILITY_DEFAULT_PERCENT);
            Some(Undo::ResetDuplication)
        }
        Fault::Reorder => {
            // Wide latency jitter: messages overtake each other.
            let spread = latency(fault, LATENCY_SPIKE_DEFAULT);
            NetSim::current().update_config(|config| {
                config.send_latency =
                    Duration::from_millis(1)..spread.max(Duration::from_millis(2));
            });
            Some(Undo::ResetLatency)
        }
        Fault::DelaySpike => {
            let spike = latency(fault, LATENCY_SPIKE_DEFAULT).max(Duration::from_millis(1));
            NetSim::current().update_config(|config| config.send_latency = spike..spike * 2);
            Some(Undo::ResetLatency)
        }
        Fault::ClockDrift => {
            // The drifted tick rate is in force for the whole run (set at
            // start from the schedule); this marks when it was scheduled.
            Some(Undo::Nothing)
        }
        Fault::LoseUnsynced => {
            let number = *targets.first()?;
            cluster.kill(number, |disk| disk.crash());
            Some(Undo::Restart(vec![number]))
        }
        Fault::TornWrite => {
            let number = *targets.first()?;
            cluster.kill(number, |disk| {
                disk.crash_tearing_last_write();
            });
            Some(Undo::Restart(vec![number]))
        }
        Fault::BitFlip => {
            let number = *targets.first()?;
            // Corruption may keep a member down for good: never more than a
            // minority, so the majority can still make progress.
            if !bit_flipped.contains(&number) && bit_flipped.len() as u32 >= (size - 1) / 2 {
                return None;
            }
            let disk = &cluster.member(number).disk;
            let files: Vec<PathBuf> = disk
                .file_paths()
                .into_iter()
                .filter(|path| path.starts_with(DATA_DIR))
                .filter(|path| disk.durable_len(path).is_ok_and(|len| len > 0))
                .collect();
            let path = files.choose(rng)?.clone();
            let len = disk.durable_len(&path).ok()?;
            let offset = rng.gen_range(0..len);
            let bit = rng.gen_range(0..8u8);
            disk.flip_bit(&path, offset, bit).ok()?;
            bit_flipped.insert(number);
            workload.recorder.lock().trace(&format!(
                "bit flip on member {number}: {} byte {offset} bit {bit}",
                path.display()
            ));
            cluster.kill(number, |disk| disk.crash());
            Some(Undo::Restart(vec![number]))
        }
        Fault::FsyncError => {
            let number = *targets.first()?;
            cluster.member(number).disk.set_fail_syncs(true);
            Some(Undo::ClearDisk(vec![number]))
        }
        Fault::DiskFull => {
            let number = *targets.first()?;
            cluster.member(number).disk.set_full(true);
            Some(Undo::ClearDisk(vec![number]))
        }
        Fault::Compact => {
            let (_, handle) = cluster.handles().into_iter().next()?;
            let revision = handle.header().revision - super::workload::COMPACTION_KEEP_REVISIONS;
            if revision <= 1 {
                return None;
            }
            workload.compact(&handle, revision).await;
            Some(Undo::Nothing)
        }
        // Not modelled by the runner yet: wiping a data dir (needs a
        // membership change to rejoin), slow fsync (SimDisk has no latency),
        // and membership changes.
        Fault::Wipe
        | Fault::SlowFsync
        | Fault::AddLearner
        | Fault::PromoteLearner
        | Fault::RemoveMember => None,
    }
}
