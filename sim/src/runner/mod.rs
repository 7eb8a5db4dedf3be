//! The runner: one (scenario, seed) run of the production node driver
//! inside madsim (simulator build only, `--cfg madsim`).
//!
//! A run draws its [`SwarmParameters`], starts the [`cluster`] (one madsim
//! node per member, each on its own simulated disk), runs the
//! [`workload`] and the [`nemesis`] for the scenario's duration (the safety
//! phase), heals everything and requires a write to commit within the
//! liveness timeout, reads the final state, waits for every live member to
//! converge (same commit index, applied index and state hash), and hands
//! everything the
//! [`recorder`] and the workload collected to every checker. The run's
//! trace hash covers every Ready, apply, message fault, nemesis step and
//! client operation, so two runs of one seed can be compared.

pub mod bug;
pub mod cluster;
pub mod fsync_faults;
pub mod membership;
pub mod nemesis;
pub mod quorum_budget;
pub mod recorder;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cairn_core::kv::RangeRequest;
use madsim::runtime::Runtime;

use self::bug::Bug;
use self::cluster::Cluster;
use self::nemesis::{heal_everything, run_nemesis, FaultCounts};
use self::recorder::{Recorder, SharedRecorder};
use self::workload::{Workload, CLIENT_TIMEOUT};
use crate::checker::convergence::{converged, ConvergenceReport};
use crate::checker::durability::{check_durability, FinalState};
use crate::checker::lease::{check_leases, LeaseCheckConfig};
use crate::checker::linearizable::{check_linearizability, LinearizabilityConfig};
use crate::checker::revision::check_revisions;
use crate::checker::txn::check_txns;
use crate::checker::verdict::RunVerdict;
use crate::checker::watch::check_watches;
use crate::event_log::EventLogConflict;
use crate::history::{ClientId, History, Operation};
use crate::scenario::{Check, Fault, FaultOption, Quantity, Scenario, Target};
use crate::swarm::SwarmParameters;

/// A new cluster must elect its first leader within this.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// After the clients stop, members get this long to catch up before the
/// final read (so the event log covers every watch window).
pub const SETTLE_TIME: Duration = Duration::from_secs(3);
/// The liveness probe's client.
pub const LIVENESS_CLIENT: ClientId = ClientId(1_000_000);
/// Watchers are clients numbered from here.
pub const WATCHER_CLIENT_BASE: u64 = 100_000;
/// The key the liveness probe writes (outside the workload's key space).
pub const LIVENESS_KEY: &[u8] = b"liveness";
/// Pause between liveness probes.
pub const LIVENESS_RETRY: Duration = Duration::from_millis(200);
/// Pause between looks at whether the members converged.
pub const CONVERGENCE_POLL: Duration = Duration::from_millis(100);
/// Simulated time allowed beyond the run's own phases before madsim
/// aborts it (a hang is a bug, and must not hang the simulator).
pub const TIME_LIMIT_SLACK: Duration = Duration::from_secs(120);

/// Everything one run produced.
#[derive(Debug)]
pub struct RunOutcome {
    /// The drawn parameters.
    pub parameters: SwarmParameters,
    /// The planted bug, if any.
    pub bug: Option<Bug>,
    /// Every checker's verdict.
    pub verdict: RunVerdict,
    /// Members that applied different events at one revision.
    pub conflicts: Vec<EventLogConflict>,
    /// Hash over the whole event trace.
    pub trace_hash: u64,
    /// Lines traced.
    pub trace_lines_total: u64,
    /// The latest trace lines.
    pub trace: Vec<String>,
    /// The client history.
    pub history: History,
    /// Simulated time the run took.
    pub simulated: Duration,
    /// Messages lost and duplicated by link faults.
    pub messages_dropped: u64,
    /// Messages duplicated.
    pub messages_duplicated: u64,
}

impl RunOutcome {
    /// Whether every check passed and no member diverged.
    pub fn passed(&self) -> bool {
        self.verdict.is_ok() && self.conflicts.is_empty()
    }

    /// Operations in the history.
    pub fn operations(&self) -> usize {
        self.history.len()
    }
}

/// Stack of the thread that hosts one simulation.
pub const SIMULATION_THREAD_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Runs `scenario` with `seed` (and `bug` planted) in a fresh madsim
/// runtime on a fresh thread: std's hash-map keys are per thread and drawn
/// at first use, so a fresh thread draws them inside the simulation (from
/// its seeded randomness) and a second run of a seed in the same process
/// sees the same hash-map orders as the first.
pub fn run(scenario: &Scenario, seed: u64, bug: Option<Bug>) -> RunOutcome {
    let scenario = scenario.clone();
    let host = std::thread::Builder::new()
        .name(format!("simulation-{seed}"))
        .stack_size(SIMULATION_THREAD_STACK_BYTES)
        .spawn(move || run_on_this_thread(&scenario, seed, bug))
        .expect("the simulation thread starts");
    match host.join() {
        Ok(outcome) => outcome,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn run_on_this_thread(scenario: &Scenario, seed: u64, bug: Option<Bug>) -> RunOutcome {
    let parameters = SwarmParameters::draw(scenario, seed);
    let mut runtime = Runtime::with_seed_and_config(seed, madsim::Config::default());
    runtime.set_time_limit(
        parameters.duration + parameters.liveness_timeout * 3 + STARTUP_TIMEOUT + TIME_LIMIT_SLACK,
    );
    runtime.block_on(simulate(parameters, seed, bug))
}

/// Each member's clock rate in percent: drifting members keep their drift
/// for the whole run, so the lease checker's bound holds throughout.
fn tick_rates(parameters: &SwarmParameters) -> Vec<u32> {
    let mut rates = vec![100; parameters.cluster_size as usize];
    for fault in &parameters.schedule {
        if fault.fault != Fault::ClockDrift {
            continue;
        }
        let Some(Quantity::Percent(rate)) = fault.options.get(&FaultOption::Rate) else {
            continue;
        };
        let number = match fault.target {
            Some(Target::Node(number)) => number,
            _ => 1,
        };
        if let Some(slot) = rates.get_mut(number as usize - 1) {
            *slot = *rate;
        }
    }
    rates
}

fn client_seed(seed: u64, client: u64) -> u64 {
    seed.rotate_left(17) ^ client.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

async fn simulate(parameters: SwarmParameters, seed: u64, bug: Option<Bug>) -> RunOutcome {
    let recorder = SharedRecorder::new(Recorder::new(seed));
    recorder.lock().trace(&format!("parameters: {parameters}"));
    let cluster = Arc::new(Cluster::start(
        parameters.cluster_size,
        seed,
        &tick_rates(&parameters),
        parameters.lease_checkpoint_interval,
        bug,
        recorder.clone(),
    ));
    let workload = Arc::new(Workload::new(
        cluster.clone(),
        recorder.clone(),
        parameters.clone(),
    ));
    let started = tokio::time::Instant::now();
    while cluster.leader().is_none() && started.elapsed() < STARTUP_TIMEOUT {
        tokio::time::sleep(LIVENESS_RETRY).await;
    }

    let mut clients = Vec::new();
    for client in 0..u64::from(parameters.clients) {
        let task = workload
            .clone()
            .run_client(ClientId(client), client_seed(seed, client));
        clients.push(tokio::spawn(task));
    }
    for watcher in 0..u64::from(parameters.watchers) {
        let client = WATCHER_CLIENT_BASE + watcher;
        let task = workload
            .clone()
            .run_watcher(ClientId(client), client_seed(seed, client));
        clients.push(tokio::spawn(task));
    }
    clients.push(tokio::spawn(
        workload.clone().run_compactor(client_seed(seed, u64::MAX)),
    ));
    let counts: FaultCounts = Arc::new(Mutex::new(BTreeMap::new()));
    let nemesis = tokio::spawn(run_nemesis(
        workload.clone(),
        parameters.schedule.clone(),
        seed,
        counts.clone(),
    ));

    // The safety phase.
    tokio::time::sleep(parameters.duration).await;
    nemesis.abort();
    recorder.lock().trace("safety phase over: healing");
    heal_everything(&workload);

    // The liveness phase.
    let liveness = probe_liveness(&workload).await;
    workload.stopped.store(true, Ordering::Relaxed);
    for client in &mut clients {
        let _ = tokio::time::timeout(CLIENT_TIMEOUT * 2, client).await;
    }
    tokio::time::sleep(SETTLE_TIME).await;
    let final_state = read_final_state(&workload).await;
    let convergence = if parameters.checks.contains(&Check::Convergence) {
        Some(await_convergence(&workload).await)
    } else {
        None
    };
    let simulated = recorder.lock().now().as_duration();

    let mut history = std::mem::take(
        &mut *workload
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    history.close();
    let sessions = std::mem::take(
        &mut *workload
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    let compactions = std::mem::take(
        &mut *workload
            .compactions
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    let shared_recorder = recorder;
    // The outcome, taken before the teardown (the lock is not held across it).
    let outcome = {
        let mut recorder = shared_recorder.lock();
        let log = recorder.event_log.clone();
        let checks = &parameters.checks;
        let mut verdict = RunVerdict {
            fault_counts: counts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            ..RunVerdict::default()
        };
        if checks.contains(&Check::Linearizable) {
            verdict.linearizability = Some(check_linearizability(
                &history,
                Some(&log),
                &LinearizabilityConfig::default(),
            ));
        }
        if checks.contains(&Check::Revisions) {
            verdict.revisions = Some(check_revisions(&history, Some(&log)));
            verdict.txns = Some(check_txns(&history, &log));
        }
        if checks.contains(&Check::Watch) {
            verdict.watch = Some(check_watches(&log, &compactions, &sessions));
        }
        if checks.contains(&Check::Durability) {
            verdict.durability = Some(match &final_state {
                Ok(state) => check_durability(&history, Some(&log), state),
                Err(_) => check_durability(&history, Some(&log), &FinalState::default()),
            });
        }
        if checks.contains(&Check::Lease) {
            let revocations: Vec<_> = recorder.revocations.values().copied().collect();
            verdict.lease = Some(check_leases(
                &history,
                &log,
                &revocations,
                &LeaseCheckConfig {
                    tick_rate_percent_max: parameters.tick_rate_percent_max(),
                    leader_promotions_max: recorder.raft.summary().terms_with_leader + 1,
                },
            ));
        }
        // Raft invariants are always checked: they cost nothing extra.
        verdict.raft = Some((recorder.raft.summary(), recorder.raft_violation.clone()));
        if checks.contains(&Check::Liveness) {
            verdict.liveness = Some(match (liveness, &final_state) {
                (Err(reason), _) => Err(reason),
                (Ok(()), Err(reason)) => Err(reason.clone()),
                (Ok(()), Ok(_)) => Ok(()),
            });
        }
        if let Some(converged) = convergence {
            verdict.convergence = Some(ConvergenceReport {
                matches_checked: recorder.matches.matches_checked,
                match_violation: recorder.match_violation.clone(),
                converged: Some(converged),
            });
        }
        let trace_hash = recorder.trace.hash();
        RunOutcome {
            parameters,
            bug,
            verdict,
            conflicts: std::mem::take(&mut recorder.conflicts),
            trace_hash,
            trace_lines_total: recorder.trace.total(),
            trace: recorder.trace.lines().cloned().collect(),
            history,
            simulated,
            messages_dropped: recorder.messages_dropped,
            messages_duplicated: recorder.messages_duplicated,
        }
    };
    tear_down(&workload, &clients, &shared_recorder, seed).await;
    outcome
}

/// Ends every task of the run and empties what they hold, once the outcome
/// is taken. madsim does not cancel the tasks still pending when its
/// runtime is dropped (madsim-rs/madsim#242), and a pending sleep keeps its
/// own task alive through the timer, so whatever a leftover task holds (the
/// workload, the cluster and its disks, the trace) stayed allocated: a
/// sweep of runs in one process grew by megabytes a run.
async fn tear_down<T>(
    workload: &Workload,
    clients: &[tokio::task::JoinHandle<T>],
    recorder: &SharedRecorder,
    seed: u64,
) {
    for client in clients {
        client.abort();
    }
    workload.cluster.tear_down();
    *recorder.lock() = Recorder::new(seed);
    // The executor drops the killed nodes' and aborted clients' futures
    // before time moves on.
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// After healing, some write must commit within the liveness timeout.
async fn probe_liveness(workload: &Workload) -> Result<(), String> {
    let timeout = workload.parameters.liveness_timeout;
    let started = tokio::time::Instant::now();
    let mut attempt = 0u64;
    while started.elapsed() < timeout {
        for (_, handle) in workload.cluster.handles() {
            attempt += 1;
            let operation = Operation::Put {
                key: LIVENESS_KEY.to_vec(),
                value: format!("liveness-{attempt}").into_bytes(),
                lease: 0,
            };
            if workload
                .execute(LIVENESS_CLIENT, &handle, operation)
                .await
                .is_some()
            {
                let elapsed = started.elapsed();
                workload.recorder.lock().trace(&format!(
                    "liveness: a write committed {elapsed:?} after healing"
                ));
                return Ok(());
            }
            if started.elapsed() >= timeout {
                break;
            }
        }
        tokio::time::sleep(LIVENESS_RETRY).await;
    }
    Err(format!(
        "no write committed within {timeout:?} after healing ({attempt} attempts)"
    ))
}

/// Waits, up to the liveness timeout, until every running member of the
/// leader's configuration shows the same commit index, applied index and
/// state hash; returns how many members converged, or who did not.
async fn await_convergence(workload: &Workload) -> Result<usize, String> {
    let timeout = workload.parameters.liveness_timeout;
    let started = tokio::time::Instant::now();
    workload.recorder.lock().hash_states = true;
    loop {
        let running: BTreeSet<_> = workload
            .cluster
            .members()
            .iter()
            .filter(|member| member.handle().is_some())
            .map(|member| member.id())
            .collect();
        let probes = workload.recorder.lock().convergence_probes(&running);
        let elapsed = started.elapsed();
        match converged(&probes) {
            Ok(()) => {
                let first = probes.first().copied();
                workload.recorder.lock().trace(&format!(
                    "convergence: {} members at {} after {elapsed:?}",
                    probes.len(),
                    first.map_or("nothing".to_string(), |probe| probe.to_string())
                ));
                return Ok(probes.len());
            }
            Err(members) if elapsed >= timeout => {
                return Err(format!(
                    "members differ {timeout:?} after the final read: {members}"
                ));
            }
            Err(_) => tokio::time::sleep(CONVERGENCE_POLL).await,
        }
    }
}

/// Reads every key through a linearizable range from any member.
async fn read_final_state(workload: &Workload) -> Result<FinalState, String> {
    let timeout = workload.parameters.liveness_timeout;
    let started = tokio::time::Instant::now();
    let everything = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..RangeRequest::default()
    };
    while started.elapsed() < timeout {
        for (_, handle) in workload.cluster.handles() {
            let read = tokio::time::timeout(CLIENT_TIMEOUT, handle.range(everything.clone())).await;
            if let Ok(Ok((header, response))) = read {
                let kvs = response
                    .kvs
                    .into_iter()
                    .map(|kv| (kv.key.clone(), kv))
                    .collect();
                return Ok(FinalState {
                    revision: header.revision,
                    kvs,
                });
            }
        }
        tokio::time::sleep(LIVENESS_RETRY).await;
    }
    Err(format!("the final read did not succeed within {timeout:?}"))
}
