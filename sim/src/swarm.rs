//! Swarm parameters: everything a run needs that its scenario leaves open,
//! drawn from the seed with ChaCha8 (cluster size, clients, keys, workload
//! mix, watchers, lease TTL, compaction interval, and the full fault
//! schedule with its timings). "Swarm testing" in the sense of Groce et
//! al.: each seed also picks *which* features are on, so rare combinations
//! get their turn.
//!
//! The same (scenario, seed) always gives the same [`SwarmParameters`], and
//! their [`fmt::Display`] is the block the runner logs before anything else,
//! so a failure report shows exactly what the run did.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::scenario::{
    Check, DisplayDuration, Fault, FaultOption, FaultSpec, Nemesis, OperationKind, PartitionKind,
    Quantity, Scenario, Span, Target, WorkloadMix,
};

/// Cluster sizes the seed picks from when the scenario names none.
pub const CLUSTER_SIZES: [u32; 3] = [3, 5, 7];
/// Clients drawn when the scenario names none.
pub const CLIENTS_DEFAULT: Span<u32> = Span { low: 2, high: 16 };
/// Keys drawn when the scenario names none (few keys: more contention).
pub const KEYS_DEFAULT: Span<u32> = Span { low: 1, high: 32 };
/// Watchers drawn when the scenario names none.
pub const WATCHERS_DEFAULT: Span<u32> = Span { low: 0, high: 4 };
/// Most operation weight a drawn workload gives one kind.
pub const WORKLOAD_WEIGHT_MAX: u32 = 50;
/// Lease TTL drawn when the scenario names none.
pub const LEASE_TTL_DEFAULT: Span<Duration> = Span {
    low: Duration::from_secs(2),
    high: Duration::from_secs(10),
};
/// Compaction interval drawn when the scenario names none.
pub const COMPACT_EVERY_DEFAULT: Span<Duration> = Span {
    low: Duration::from_secs(3),
    high: Duration::from_secs(20),
};
/// Lease checkpoint interval drawn when the scenario names none: short
/// enough that checkpoints fire many times in a 15 s run and that a
/// checkpointed remaining TTL is usually below the full TTL.
pub const LEASE_CHECKPOINT_INTERVAL_DEFAULT: Span<Duration> = Span {
    low: Duration::from_millis(500),
    high: Duration::from_secs(5),
};
/// Chance that a drawn workload issues general transactions.
pub const SWARM_TXN_PROBABILITY: f64 = 0.7;
/// Most scheduled faults in one run: the schedule is bounded.
pub const SCHEDULED_FAULTS_MAX: usize = 500;
/// Fewest fault kinds a swarm nemesis enables.
pub const SWARM_FAULT_KINDS_MIN: usize = 3;
/// Interval between occurrences of one swarm fault kind.
pub const SWARM_EVERY: Span<Duration> = Span {
    low: Duration::from_secs(2),
    high: Duration::from_secs(15),
};
/// How long a swarm fault lasts before it is undone.
pub const SWARM_LASTING: Span<Duration> = Span {
    low: Duration::from_millis(500),
    high: Duration::from_secs(5),
};
/// Message fault probability range for the swarm.
pub const SWARM_PROBABILITY: Span<u32> = Span { low: 1, high: 30 };
/// Latency range for the swarm's delay faults.
pub const SWARM_LATENCY: Span<Duration> = Span {
    low: Duration::from_millis(10),
    high: Duration::from_millis(800),
};
/// Clock rate range for the swarm's clock drift, percent of real time.
pub const SWARM_CLOCK_RATE: Span<u32> = Span { low: 50, high: 150 };

/// A fault at a fixed time, every random choice made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledFault {
    /// When it fires, from the start of the run.
    pub at: Duration,
    /// The fault.
    pub fault: Fault,
    /// Its target; `Random` has been replaced by a drawn `Node`.
    pub target: Option<Target>,
    /// Its options, each a single drawn value.
    pub options: BTreeMap<FaultOption, Quantity>,
    /// Undo it after this long.
    pub lasting: Option<Duration>,
    /// Members the seed chose for the fault's own random choices: one side
    /// of a `random-halves` partition, the (from, to) pair of a one-way
    /// cut, the middle member of a bridge. Empty otherwise.
    pub drawn_members: Vec<u32>,
}

impl fmt::Display for ScheduledFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at_millis = self.at.as_millis();
        write!(
            f,
            "at {}.{:03}s {}",
            at_millis / 1000,
            at_millis % 1000,
            self.fault.name()
        )?;
        if let Some(target) = self.target {
            write!(f, " {target}")?;
        }
        for (option, value) in &self.options {
            write!(f, " {}={value}", option.name())?;
        }
        if !self.drawn_members.is_empty() {
            write!(f, " members={:?}", self.drawn_members)?;
        }
        if let Some(lasting) = self.lasting {
            write!(f, " for {}", DisplayDuration(lasting))?;
        }
        Ok(())
    }
}

/// Every parameter of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwarmParameters {
    /// The scenario's name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// Members at start.
    pub cluster_size: u32,
    /// Concurrent clients.
    pub clients: u32,
    /// Size of the key space.
    pub keys: u32,
    /// Operation mix.
    pub workload: WorkloadMix,
    /// Concurrent watchers.
    pub watchers: u32,
    /// TTL of granted leases.
    pub lease_ttl: Duration,
    /// Interval between compactions.
    pub compact_every: Duration,
    /// Interval between the leader's lease checkpoints.
    pub lease_checkpoint_interval: Duration,
    /// Length of the safety phase.
    pub duration: Duration,
    /// Progress must resume within this after healing.
    pub liveness_timeout: Duration,
    /// Faults in time order.
    pub schedule: Vec<ScheduledFault>,
    /// What must hold.
    pub checks: BTreeSet<Check>,
}

fn draw_count(rng: &mut ChaCha8Rng, span: Span<u32>) -> u32 {
    rng.gen_range(span.low..=span.high)
}

fn draw_duration(rng: &mut ChaCha8Rng, span: Span<Duration>) -> Duration {
    let low = u64::try_from(span.low.as_millis()).unwrap_or(u64::MAX);
    let high = u64::try_from(span.high.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rng.gen_range(low..=high))
}

fn draw_quantity(rng: &mut ChaCha8Rng, span: Span<Quantity>) -> Quantity {
    match (span.low, span.high) {
        (Quantity::Percent(low), Quantity::Percent(high)) => {
            Quantity::Percent(rng.gen_range(low..=high))
        }
        (Quantity::Duration(low), Quantity::Duration(high)) => {
            Quantity::Duration(draw_duration(rng, Span { low, high }))
        }
        (low, high) => panic!("span mixes quantities: {low:?}..{high:?}"),
    }
}

impl SwarmParameters {
    /// Draws every open parameter of `scenario` from `seed`.
    pub fn draw(scenario: &Scenario, seed: u64) -> SwarmParameters {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Draw in a fixed order; adding a draw at the end keeps old seeds' earlier values.
        let cluster_size = match scenario.cluster_size {
            Some(span) => draw_count(&mut rng, span),
            None => *CLUSTER_SIZES.choose(&mut rng).expect("non-empty"),
        };
        let clients = draw_count(&mut rng, scenario.clients.unwrap_or(CLIENTS_DEFAULT));
        let keys = draw_count(&mut rng, scenario.keys.unwrap_or(KEYS_DEFAULT));
        let workload = match &scenario.workload {
            Some(mix) => mix.clone(),
            None => draw_workload(&mut rng),
        };
        let watchers = draw_count(&mut rng, scenario.watchers.unwrap_or(WATCHERS_DEFAULT));
        let lease_ttl = draw_duration(&mut rng, scenario.lease_ttl.unwrap_or(LEASE_TTL_DEFAULT));
        let compact_every = draw_duration(
            &mut rng,
            scenario.compact_every.unwrap_or(COMPACT_EVERY_DEFAULT),
        );
        let mut schedule = match &scenario.nemesis {
            Nemesis::None => Vec::new(),
            Nemesis::Scripted(steps) => steps
                .iter()
                .map(|step| {
                    let mut fault =
                        resolve(&mut rng, cluster_size, step.at, &step.fault, step.lasting);
                    if let Some(members) = &step.members {
                        fault.drawn_members.clone_from(members);
                    }
                    fault
                })
                .collect(),
            Nemesis::Random(faults) => {
                let recurring: Vec<Recurring> = faults
                    .iter()
                    .map(|fault| Recurring {
                        fault: fault.fault.clone(),
                        every: fault.every,
                        lasting: fault.lasting,
                    })
                    .collect();
                schedule_recurring(&mut rng, cluster_size, scenario.duration, &recurring)
            }
            Nemesis::Swarm => {
                let recurring = draw_swarm_faults(&mut rng);
                schedule_recurring(&mut rng, cluster_size, scenario.duration, &recurring)
            }
        };
        schedule.sort_by_key(|fault| fault.at);
        let lease_checkpoint_interval = draw_duration(
            &mut rng,
            scenario
                .lease_checkpoint_interval
                .unwrap_or(LEASE_CHECKPOINT_INTERVAL_DEFAULT),
        );
        let mut workload = workload;
        if scenario.workload.is_none() && rng.gen_bool(SWARM_TXN_PROBABILITY) {
            // Drawn last, so seeds drawn before transactions existed keep
            // their other values.
            workload
                .weights
                .insert(OperationKind::Txn, rng.gen_range(1..=WORKLOAD_WEIGHT_MAX));
        }
        SwarmParameters {
            scenario: scenario.name.clone(),
            seed,
            cluster_size,
            clients,
            keys,
            workload,
            watchers,
            lease_ttl,
            compact_every,
            lease_checkpoint_interval,
            duration: scenario.duration,
            liveness_timeout: scenario.liveness_timeout,
            schedule,
            checks: scenario.checks.clone(),
        }
    }

    /// How many faults of each kind the schedule holds, for the run summary.
    pub fn fault_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for fault in &self.schedule {
            *counts.entry(fault.fault.name()).or_insert(0) += 1;
        }
        counts
    }

    /// The fastest clock rate any member gets, in percent of real time
    /// (at least 100): what the lease checker must allow for.
    pub fn tick_rate_percent_max(&self) -> u64 {
        self.schedule
            .iter()
            .filter(|fault| fault.fault == Fault::ClockDrift)
            .filter_map(|fault| match fault.options.get(&FaultOption::Rate) {
                Some(Quantity::Percent(rate)) => Some(u64::from(*rate)),
                _ => None,
            })
            .fold(100, u64::max)
    }
}

impl fmt::Display for SwarmParameters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "scenario = {}", self.scenario)?;
        writeln!(f, "seed = {}", self.seed)?;
        writeln!(f, "cluster_size = {}", self.cluster_size)?;
        writeln!(f, "clients = {}", self.clients)?;
        writeln!(f, "keys = {}", self.keys)?;
        writeln!(f, "workload = {}", self.workload)?;
        writeln!(f, "watchers = {}", self.watchers)?;
        writeln!(f, "lease_ttl = {}", DisplayDuration(self.lease_ttl))?;
        writeln!(f, "compact_every = {}", DisplayDuration(self.compact_every))?;
        writeln!(
            f,
            "lease_checkpoint_interval = {}",
            DisplayDuration(self.lease_checkpoint_interval)
        )?;
        writeln!(f, "duration = {}", DisplayDuration(self.duration))?;
        writeln!(
            f,
            "liveness_timeout = {}",
            DisplayDuration(self.liveness_timeout)
        )?;
        let checks: Vec<&str> = self.checks.iter().map(|check| check.name()).collect();
        writeln!(f, "checks = {}", checks.join(", "))?;
        writeln!(f, "schedule: ({} faults)", self.schedule.len())?;
        for fault in &self.schedule {
            writeln!(f, "  {fault}")?;
        }
        Ok(())
    }
}

fn draw_workload(rng: &mut ChaCha8Rng) -> WorkloadMix {
    let mut mix = WorkloadMix::default();
    for kind in OperationKind::ALL {
        if kind == OperationKind::Txn {
            // Drawn at the end of `SwarmParameters::draw`.
            continue;
        }
        // Swarm: each kind is on or off, then weighted.
        if rng.gen_bool(0.7) {
            mix.weights
                .insert(kind, rng.gen_range(1..=WORKLOAD_WEIGHT_MAX));
        }
    }
    if mix.weights.is_empty() {
        mix.weights.insert(OperationKind::Put, 1);
    }
    mix
}

/// A fault recurring over the run.
struct Recurring {
    fault: FaultSpec,
    every: Span<Duration>,
    lasting: Option<Span<Duration>>,
}

fn schedule_recurring(
    rng: &mut ChaCha8Rng,
    cluster_size: u32,
    duration: Duration,
    recurring: &[Recurring],
) -> Vec<ScheduledFault> {
    let mut schedule = Vec::new();
    for fault in recurring {
        let mut at = draw_duration(rng, fault.every);
        while at < duration && schedule.len() < SCHEDULED_FAULTS_MAX {
            let lasting = fault.lasting.map(|span| draw_duration(rng, span));
            schedule.push(resolve(rng, cluster_size, at, &fault.fault, lasting));
            at += draw_duration(rng, fault.every);
        }
    }
    schedule
}

fn resolve(
    rng: &mut ChaCha8Rng,
    cluster_size: u32,
    at: Duration,
    spec: &FaultSpec,
    lasting: Option<Duration>,
) -> ScheduledFault {
    let target = spec.target.map(|target| match target {
        Target::Random => Target::Node(rng.gen_range(1..=cluster_size)),
        other => other,
    });
    let options = spec
        .options
        .iter()
        .map(|(option, span)| (*option, draw_quantity(rng, *span)))
        .collect();
    let mut members: Vec<u32> = (1..=cluster_size).collect();
    members.shuffle(rng);
    let drawn_members = match spec.fault {
        Fault::Partition(PartitionKind::RandomHalves) => {
            let side = rng.gen_range(1..=cluster_size.saturating_sub(1).max(1));
            let mut side: Vec<u32> = members.into_iter().take(side as usize).collect();
            side.sort_unstable();
            side
        }
        Fault::Partition(PartitionKind::OneWay) => members.into_iter().take(2).collect(),
        Fault::Partition(PartitionKind::Bridge) => members.into_iter().take(1).collect(),
        _ => Vec::new(),
    };
    ScheduledFault {
        at,
        fault: spec.fault,
        target,
        options,
        lasting,
        drawn_members,
    }
}

/// The swarm nemesis: a random subset of fault kinds, each with random rates.
fn draw_swarm_faults(rng: &mut ChaCha8Rng) -> Vec<Recurring> {
    // Faults that undo themselves via `lasting` or need no undo; restart,
    // resume and heal are implied by `lasting`.
    let candidates: Vec<Fault> = Fault::all()
        .into_iter()
        .filter(|fault| !matches!(fault, Fault::Restart | Fault::Resume | Fault::Heal))
        .collect();
    let mut chosen: Vec<Fault> = candidates
        .iter()
        .copied()
        .filter(|_| rng.gen_bool(0.35))
        .collect();
    let mut remaining: Vec<Fault> = candidates
        .iter()
        .copied()
        .filter(|fault| !chosen.contains(fault))
        .collect();
    remaining.shuffle(rng);
    while chosen.len() < SWARM_FAULT_KINDS_MIN {
        chosen.push(remaining.pop().expect("more candidates than the minimum"));
    }
    chosen.sort();
    chosen
        .into_iter()
        .map(|fault| {
            let options = fault
                .options()
                .iter()
                .filter(|option| **option != FaultOption::LiveWal)
                .map(|option| {
                    let span = match option {
                        FaultOption::Probability => Span {
                            low: Quantity::Percent(SWARM_PROBABILITY.low),
                            high: Quantity::Percent(
                                rng.gen_range(SWARM_PROBABILITY.low..=SWARM_PROBABILITY.high),
                            ),
                        },
                        FaultOption::Latency => Span {
                            low: Quantity::Duration(SWARM_LATENCY.low),
                            high: Quantity::Duration(draw_duration(rng, SWARM_LATENCY)),
                        },
                        FaultOption::Rate => Span {
                            low: Quantity::Percent(SWARM_CLOCK_RATE.low),
                            high: Quantity::Percent(SWARM_CLOCK_RATE.high),
                        },
                        FaultOption::LiveWal => unreachable!("filtered out above"),
                    };
                    (*option, span)
                })
                .collect();
            let low = draw_duration(rng, SWARM_EVERY);
            let high = draw_duration(
                rng,
                Span {
                    low,
                    high: SWARM_EVERY.high,
                },
            );
            Recurring {
                fault: FaultSpec {
                    fault,
                    target: fault.default_target(),
                    options,
                },
                every: Span { low, high },
                lasting: fault.undoable().then_some(SWARM_LASTING),
            }
        })
        .collect()
}
