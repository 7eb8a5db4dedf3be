//! The nemesis: injects the drawn fault schedule into the running cluster
//! and undoes each fault after its `for` duration. Schedule times count from
//! the start of the workload, i.e. once the new cluster elected its first
//! leader. Every fault that was actually injected is counted by kind for the
//! run summary; a fault that could not be (no leader to isolate, no learner
//! to promote, a quorum it would put at risk) is traced as skipped and not
//! counted.
//!
//! Membership actions (`add-learner`, `promote-learner`, `remove-member`,
//! and the return of a wiped machine) run as the operator would run them:
//! one at a time, each in its own task that retries through the Cluster API
//! and counts the action once the cluster confirmed it (see
//! [`super::membership`]).
//!
//! The [`QuorumBudget`] keeps healing able to restore progress: members
//! that may be down for good (bit-flipped, wiped) never exceed what the
//! voters can lose, and removals never leave too few voters, counting
//! membership changes whose outcome is in doubt both ways.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cairn_server::storage::{SimDisk, TornWrite};
use madsim::net::NetSim;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::cluster::{Cluster, Membership, DATA_DIR};
use super::membership::{
    add_learner_machine, promote_machine, reconcile, rejoin_wiped, remove_machine, Rejoin,
};
use super::quorum_budget::{Doubt, QuorumBudget};
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
/// Slow-fsync latency when the fault names none.
pub const SLOW_FSYNC_LATENCY_DEFAULT: Duration = Duration::from_millis(200);
/// Fsync-stall latency when the fault names none.
pub const FSYNC_STALL_LATENCY_DEFAULT: Duration = Duration::from_millis(50);
/// How long the fsync a `crash-in-fsync` catches takes, in milliseconds:
/// the crash lands somewhere inside it.
pub const CRASH_IN_FSYNC_DELAY_MS: std::ops::RangeInclusive<u64> = 5..=100;
/// An armed `crash-in-fsync` whose member starts no fsync within this is
/// called off.
pub const CRASH_IN_FSYNC_ARMED_MAX: Duration = Duration::from_secs(5);
/// A `bit-flip live-wal=…` flip lands in this many bytes at the end of the
/// live WAL segment: the newest batches.
pub const LIVE_WAL_TAIL_BYTES: u64 = 512;
/// `add-learner` adds no machine beyond this many members (voters,
/// learners and machines joining).
pub const MEMBERS_MAX: usize = 9;
/// The summary's name for a wiped machine back under a new identity.
pub const WIPE_REJOINED: &str = "wipe-rejoined";

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

/// What injecting a fault did.
enum Injection {
    /// Injected now (counted now); undo it with this.
    Now(Undo),
    /// Handed to a task that counts it once the cluster confirms it.
    Deferred,
    /// Armed: a task counts it once it strikes.
    Armed,
}

/// What a crash inside an fsync does to the batch being synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BatchFate {
    /// Lost with everything else unsynced.
    Lost,
    /// A prefix of it reached the disk.
    Torn,
    /// Its length reached the disk, with a range of zeros inside.
    Zeroed,
    /// The fsync completed; the crash came before it returned.
    Kept,
}

impl BatchFate {
    const ALL: [BatchFate; 4] = [
        BatchFate::Lost,
        BatchFate::Torn,
        BatchFate::Zeroed,
        BatchFate::Kept,
    ];

    fn crash(self, disk: &SimDisk) -> Option<TornWrite> {
        match self {
            BatchFate::Lost => {
                disk.crash();
                None
            }
            BatchFate::Torn => disk.crash_tearing_last_write(),
            BatchFate::Zeroed => disk.crash_zeroing_in_last_write(),
            BatchFate::Kept => disk.crash_syncing_last_write(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            BatchFate::Lost => "lost",
            BatchFate::Torn => "torn",
            BatchFate::Zeroed => "zeroed",
            BatchFate::Kept => "kept",
        }
    }
}

/// What the nemesis's faults and its membership tasks share.
#[derive(Clone)]
struct NemesisState {
    workload: Arc<Workload>,
    counts: FaultCounts,
    /// What may still be lost for good.
    budget: Arc<Mutex<QuorumBudget>>,
    /// Wiped machines the operator has not finished bringing back: not
    /// wiped again meanwhile (the operator would promote a dead identity).
    rejoining: Arc<Mutex<BTreeSet<u32>>>,
    /// Held for the whole of a membership action: the operator runs one at a
    /// time (the cluster accepts one at a time anyway).
    operator: Arc<tokio::sync::Mutex<()>>,
}

impl NemesisState {
    fn count(&self, name: &'static str) {
        *self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name)
            .or_insert(0) += 1;
    }

    fn trace(&self, line: &str) {
        self.workload.recorder.lock().trace(line);
    }

    fn budget(&self) -> MutexGuard<'_, QuorumBudget> {
        self.budget.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn rejoining(&self) -> MutexGuard<'_, BTreeSet<u32>> {
        self.rejoining
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A membership action gave up on `number`: its change is in doubt.
    fn doubt(&self, number: u32, doubt: Doubt) {
        self.budget().in_doubt.insert(number, doubt);
    }

    /// A membership action was confirmed: once the runner's view is
    /// reconciled with the table, no earlier change is in doubt any more
    /// (the cluster accepts a change only when none is pending).
    async fn confirmed(&self) {
        if reconcile(&self.workload.cluster).await.is_ok() {
            self.budget().in_doubt.clear();
        }
    }
}

/// Injects `schedule` (sorted by time) from the start of the run.
pub async fn run_nemesis(
    workload: Arc<Workload>,
    schedule: Vec<ScheduledFault>,
    seed: u64,
    counts: FaultCounts,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6e65_6d65);
    let origin = tokio::time::Instant::now();
    let state = NemesisState {
        workload: workload.clone(),
        counts,
        budget: Arc::new(Mutex::new(QuorumBudget::default())),
        rejoining: Arc::new(Mutex::new(BTreeSet::new())),
        operator: Arc::new(tokio::sync::Mutex::new(())),
    };
    for fault in schedule {
        tokio::time::sleep_until(origin + fault.at).await;
        let injection = inject(&state, &fault, &mut rng).await;
        let undo = match injection {
            None => {
                state.trace(&format!("nemesis skipped: {fault}"));
                continue;
            }
            Some(Injection::Deferred) => {
                state.trace(&format!("nemesis: {fault} (operator task)"));
                continue;
            }
            Some(Injection::Armed) => {
                state.trace(&format!("nemesis: {fault} (armed)"));
                continue;
            }
            Some(Injection::Now(undo)) => undo,
        };
        state.trace(&format!("nemesis: {fault}"));
        state.count(fault.fault.name());
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
    for member in cluster.members() {
        cluster.fsync_faults().clear(member.id());
    }
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
                member.disk.set_sync_latency(None);
                cluster.fsync_faults().set_stall(member.id(), None);
                let stopped = {
                    let slot = member.slot();
                    slot.membership.may_run()
                        && !slot.killed
                        && slot.handle.is_none()
                        && slot.failure.is_some()
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

/// The members a target names right now (members the runner may run:
/// never a removed machine, nor a wiped one's old identity).
fn members_of(cluster: &Cluster, target: Option<Target>, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let mut targets = targets_of(cluster, target, rng);
    targets.retain(|number| cluster.member(*number).membership().may_run());
    targets
}

fn targets_of(cluster: &Cluster, target: Option<Target>, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let size = cluster.size();
    let mut all: Vec<u32> = cluster.active_numbers();
    let active = all.len() as u32;
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
            all.truncate((active.saturating_sub(1) / 2).max(1) as usize);
            all.sort_unstable();
            all
        }
        Some(Target::Majority) => {
            all.shuffle(rng);
            all.truncate((active / 2 + 1) as usize);
            all.sort_unstable();
            all
        }
    }
}

async fn inject(
    state: &NemesisState,
    fault: &ScheduledFault,
    rng: &mut ChaCha8Rng,
) -> Option<Injection> {
    let cluster = &state.workload.cluster;
    match fault.fault {
        Fault::AddLearner => {
            let joining = cluster
                .members()
                .iter()
                .filter(|member| member.membership() == Membership::Joining)
                .count();
            if cluster.active_numbers().len() + joining >= MEMBERS_MAX {
                return None;
            }
            let state = state.clone();
            tokio::spawn(async move {
                let _operator = state.operator.lock().await;
                let cluster = &state.workload.cluster;
                // The view may be stale; the add does not depend on it.
                let _ = reconcile(cluster).await;
                match add_learner_machine(cluster).await {
                    Ok(number) => {
                        state.trace(&format!("operator: member {number} added as a learner"));
                        state.count(Fault::AddLearner.name());
                        state.confirmed().await;
                    }
                    Err((number, error)) => {
                        state.trace(&format!("operator: adding member {number} failed: {error}"));
                    }
                }
            });
            Some(Injection::Deferred)
        }
        Fault::PromoteLearner => {
            let learners: Vec<u32> = cluster
                .members()
                .iter()
                .filter(|member| member.membership() == Membership::Learner)
                .filter(|member| member.handle().is_some())
                .map(|member| member.number)
                .collect();
            let number = *learners.choose(rng)?;
            let state = state.clone();
            tokio::spawn(async move {
                let _operator = state.operator.lock().await;
                let cluster = &state.workload.cluster;
                let _ = reconcile(cluster).await;
                if cluster.member(number).membership() != Membership::Learner {
                    state.trace(&format!("operator: member {number} is no longer a learner"));
                    return;
                }
                state.doubt(number, Doubt::Promotion);
                match promote_machine(cluster, number).await {
                    Ok(()) => {
                        state.trace(&format!("operator: member {number} promoted"));
                        state.count(Fault::PromoteLearner.name());
                    }
                    Err(error) => {
                        state.trace(&format!(
                            "operator: promoting member {number} failed: {error}"
                        ));
                    }
                }
            });
            Some(Injection::Deferred)
        }
        Fault::RemoveMember => {
            let number = *members_of(cluster, fault.target, rng).first()?;
            let state = state.clone();
            tokio::spawn(async move {
                let _operator = state.operator.lock().await;
                let cluster = &state.workload.cluster;
                // The budget must come from the real member table: an
                // earlier action that gave up may have taken effect since.
                if let Err(error) = reconcile(cluster).await {
                    state.trace(&format!(
                        "operator: not removing member {number}: no member table: {error}"
                    ));
                    return;
                }
                if !cluster.member(number).membership().may_run() {
                    state.trace(&format!("operator: member {number} is no longer a member"));
                    return;
                }
                let refused = state.budget().removal_refused(cluster, number);
                if let Some(reason) = refused {
                    state.trace(&format!("operator: not removing member {number}: {reason}"));
                    return;
                }
                // In doubt from the moment it is proposed until confirmed.
                state.doubt(number, Doubt::Removal);
                match remove_machine(cluster, number).await {
                    Ok(()) => {
                        state.trace(&format!("operator: member {number} removed"));
                        state.count(Fault::RemoveMember.name());
                    }
                    Err(error) => {
                        state.trace(&format!(
                            "operator: removing member {number} failed: {error}"
                        ));
                    }
                }
            });
            Some(Injection::Deferred)
        }
        Fault::CrashInFsync => {
            let number = *members_of(cluster, fault.target, rng).first()?;
            cluster.member(number).handle()?;
            let delay = Duration::from_millis(rng.gen_range(CRASH_IN_FSYNC_DELAY_MS));
            let kill_after = Duration::from_millis(rng.gen_range(0..delay.as_millis() as u64));
            let fate = *BatchFate::ALL.choose(rng)?;
            let restart_after = fault.lasting.unwrap_or(CRASH_RESTART_DELAY_DEFAULT);
            let id = cluster.member(number).id();
            let fired = cluster.fsync_faults().arm_crash(id, delay);
            let state = state.clone();
            tokio::spawn(async move {
                let caught = match tokio::time::timeout(CRASH_IN_FSYNC_ARMED_MAX, fired).await {
                    Ok(Ok(caught)) => caught,
                    // Timed out (the receiver is dropped: the arm is off),
                    // or disarmed by healing.
                    _ => {
                        state.trace(&format!("crash-in-fsync of member {number}: no fsync"));
                        return;
                    }
                };
                tokio::time::sleep(kill_after).await;
                let cluster = &state.workload.cluster;
                let member = cluster.member(number);
                if member.id() != id || member.slot().killed {
                    state.trace(&format!("crash-in-fsync of member {number}: already down"));
                    return;
                }
                let mut torn = None;
                cluster.kill(number, |disk| torn = fate.crash(disk));
                let entries = match caught {
                    Some((first, last)) => format!("entries {first}..={last}"),
                    None => "hard state".to_string(),
                };
                state.trace(&format!(
                    "crash in fsync of member {number} ({entries}) after {}ms of {}ms: batch {} {torn:?}",
                    kill_after.as_millis(),
                    delay.as_millis(),
                    fate.name()
                ));
                state.count(Fault::CrashInFsync.name());
                tokio::time::sleep(restart_after).await;
                state.workload.cluster.restart(number);
            });
            Some(Injection::Armed)
        }
        Fault::Wipe => {
            let number = *members_of(cluster, fault.target, rng).first()?;
            let member = cluster.member(number);
            if state.rejoining().contains(&number) || !state.budget().may_lose(cluster, number) {
                return None;
            }
            state.rejoining().insert(number);
            let voter = member.membership() == Membership::Voter;
            cluster.kill(number, SimDisk::crash);
            // Also when it was already down: the disk is replaced either way.
            member.disk.wipe();
            state.budget().bit_flipped.remove(&number);
            cluster.set_membership(number, Membership::Wiped { voter });
            let delay = fault.lasting.unwrap_or(CRASH_RESTART_DELAY_DEFAULT);
            let state = state.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _operator = state.operator.lock().await;
                let cluster = &state.workload.cluster;
                let _ = reconcile(cluster).await;
                let rejoin = rejoin_wiped(cluster, number, voter, |doubt| {
                    state.doubt(number, doubt);
                })
                .await;
                state.rejoining().remove(&number);
                let id = cluster.member(number).id();
                match rejoin {
                    Rejoin::Rejoined { voter } => {
                        let role = if voter { "voter" } else { "learner" };
                        state.trace(&format!(
                            "operator: wiped member {number} is back as {role} {id}"
                        ));
                        state.count(WIPE_REJOINED);
                        state.confirmed().await;
                    }
                    Rejoin::PromotionFailed(error) => {
                        state.trace(&format!(
                            "operator: wiped member {number} is back as learner {id}; promotion failed: {error}"
                        ));
                        state.count(WIPE_REJOINED);
                    }
                    Rejoin::RemovalFailed(error) => {
                        state.trace(&format!(
                            "operator: wiped member {number} not back: removing its old identity failed: {error}"
                        ));
                    }
                    Rejoin::AddFailed(error) => {
                        state.trace(&format!(
                            "operator: wiped member {number} not back: adding it failed: {error}"
                        ));
                    }
                }
            });
            Some(Injection::Now(Undo::Nothing))
        }
        _ => {
            let mut budget = state.budget().clone();
            let undo = inject_now(&state.workload, fault, rng, &mut budget).await;
            state.budget().bit_flipped = budget.bit_flipped;
            undo.map(Injection::Now)
        }
    }
}

/// Faults that take effect at once.
async fn inject_now(
    workload: &Arc<Workload>,
    fault: &ScheduledFault,
    rng: &mut ChaCha8Rng,
    budget: &mut QuorumBudget,
) -> Option<Undo> {
    let cluster = &workload.cluster;
    let everyone: BTreeSet<u32> = cluster.active_numbers().into_iter().collect();
    let size = everyone.len() as u32;
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
            let target_id = cluster.member(target).id().0;
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
            // Corruption may keep a member down for good: the voters must
            // still be able to form a quorum without it.
            if !budget.bit_flipped.contains(&number) && !budget.may_lose(cluster, number) {
                return None;
            }
            let member = cluster.member(number);
            let disk = &member.disk;
            let files: Vec<PathBuf> = disk
                .file_paths()
                .into_iter()
                .filter(|path| path.starts_with(DATA_DIR))
                .filter(|path| disk.durable_len(path).is_ok_and(|len| len > 0))
                .collect();
            let live_wal = match fault.options.get(&FaultOption::LiveWal) {
                Some(Quantity::Percent(percent)) => *percent,
                _ => 0,
            };
            // The live segment is the WAL file whose name sorts last.
            let live_segment = files
                .iter()
                .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
                .max()
                .cloned();
            let in_live_wal = live_wal > 0 && rng.gen_range(0..100) < live_wal;
            let (path, tail) = match live_segment {
                Some(segment) if in_live_wal => (segment, LIVE_WAL_TAIL_BYTES),
                _ => (files.choose(rng)?.clone(), u64::MAX),
            };
            let len = disk.durable_len(&path).ok()?;
            let offset = rng.gen_range(len.saturating_sub(tail)..len);
            let bit = rng.gen_range(0..8u8);
            disk.flip_bit(&path, offset, bit).ok()?;
            budget.bit_flipped.insert(number);
            let mut recorder = workload.recorder.lock();
            recorder.trace(&format!(
                "bit flip on member {number}: {} byte {offset} bit {bit}",
                path.display()
            ));
            recorder.matches.disk_damaged(member.id());
            drop(recorder);
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
        Fault::FsyncStall => {
            let number = *targets.first()?;
            let latency = latency(fault, FSYNC_STALL_LATENCY_DEFAULT);
            let id = cluster.member(number).id();
            cluster.fsync_faults().set_stall(id, Some(latency));
            Some(Undo::ClearDisk(vec![number]))
        }
        Fault::SlowFsync => {
            let number = *targets.first()?;
            let latency = latency(fault, SLOW_FSYNC_LATENCY_DEFAULT);
            cluster.member(number).disk.set_sync_latency(Some(latency));
            Some(Undo::ClearDisk(vec![number]))
        }
        // Injected by `inject` through the operator's tasks.
        Fault::Wipe
        | Fault::AddLearner
        | Fault::PromoteLearner
        | Fault::RemoveMember
        | Fault::CrashInFsync => None,
    }
}
