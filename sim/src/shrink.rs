//! Shrinking: reduces a failing (scenario, seed) to a small scenario file
//! that still fails with the same checker, for a person to read and replay.
//!
//! A run is fully described by its drawn [`SwarmParameters`] and its seed,
//! so shrinking starts from the parameters written out as a *pinned*
//! scenario (every drawn value fixed, every drawn fault on a `timeline:` at
//! its time; see [`pinned_scenario`]) and greedily tries smaller ones:
//!
//! 1. fewer faults, delta-debugging style: drop halves of the schedule,
//!    then quarters, down to one fault at a time;
//! 2. a shorter safety phase, cut a little after the last fault still
//!    needed (halved when no fault is left);
//! 3. fewer clients, fewer watchers, fewer keys, fewer operation kinds.
//!
//! Each candidate is run (same seed first; the failure may move, so a few
//! more seeds are tried, bounded) and kept only if the same checker fails
//! again. Passes repeat until one changes nothing or the budget of runs
//! and wall time is spent. The wall clock here bounds the search from the
//! outside; nothing inside a simulation reads it.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::time::{Duration, Instant};

use crate::scenario::{Check, DisplayDuration, Fault, OperationKind, PartitionKind};
use crate::swarm::{ScheduledFault, SwarmParameters};

/// Runs one shrink may spend, the first run included.
pub const RUNS_MAX_DEFAULT: usize = 200;
/// Wall time one shrink may spend.
pub const WALL_MAX_DEFAULT: Duration = Duration::from_secs(600);
/// Seeds tried per candidate: the current one, then the next ones.
pub const SEEDS_PER_CANDIDATE_DEFAULT: u64 = 2;
/// A shortened run keeps this much time after the last fault ends.
pub const TAIL_AFTER_LAST_FAULT: Duration = Duration::from_secs(2);
/// The shortest safety phase a shrink proposes.
pub const DURATION_MIN: Duration = Duration::from_secs(1);

/// What failed: one of the checks, or members applying different events
/// at one revision (the event log's own check).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// A checker's verdict.
    Check(Check),
    /// Members applied different events at one revision.
    EventLogConflict,
}

impl Failure {
    /// Its name on the command line (`--check`).
    pub fn name(self) -> &'static str {
        match self {
            Failure::Check(check) => check.name(),
            Failure::EventLogConflict => "event-log",
        }
    }

    /// The failure named `name`.
    pub fn parse(name: &str) -> Option<Failure> {
        if name == Failure::EventLogConflict.name() {
            return Some(Failure::EventLogConflict);
        }
        Check::ALL
            .into_iter()
            .find(|check| check.name() == name)
            .map(Failure::Check)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Bounds of one shrink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShrinkLimits {
    /// Most runs, the first one included.
    pub runs_max: usize,
    /// Most wall time.
    pub wall_max: Duration,
    /// Seeds tried per candidate (at least 1: the current seed).
    pub seeds_per_candidate: u64,
}

impl Default for ShrinkLimits {
    fn default() -> Self {
        ShrinkLimits {
            runs_max: RUNS_MAX_DEFAULT,
            wall_max: WALL_MAX_DEFAULT,
            seeds_per_candidate: SEEDS_PER_CANDIDATE_DEFAULT,
        }
    }
}

/// The result of [`shrink`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shrunk {
    /// The smallest parameters found that still fail.
    pub parameters: SwarmParameters,
    /// The seed they fail with.
    pub seed: u64,
    /// Runs spent by the search (the caller's first run not included).
    pub runs: usize,
    /// What each accepted step removed, in order.
    pub removed: Vec<String>,
    /// Whether the run or time budget stopped the search early.
    pub budget_exhausted: bool,
}

/// A scenario file that fixes every parameter of `parameters`: parsing it
/// and drawing with any seed gives `parameters` back (name and seed aside),
/// so with the same seed it replays the same run.
pub fn pinned_scenario(parameters: &SwarmParameters, description: &str) -> String {
    let mut text = String::new();
    let checks: Vec<&str> = parameters.checks.iter().map(|check| check.name()).collect();
    let _ = writeln!(text, "name = {}", parameters.scenario);
    let _ = writeln!(text, "description = {}", description.replace('\n', " "));
    let _ = writeln!(text, "cluster_size = {}", parameters.cluster_size);
    let _ = writeln!(text, "duration = {}", DisplayDuration(parameters.duration));
    let _ = writeln!(
        text,
        "liveness_timeout = {}",
        DisplayDuration(parameters.liveness_timeout)
    );
    let _ = writeln!(text, "clients = {}", parameters.clients);
    let _ = writeln!(text, "keys = {}", parameters.keys);
    let _ = writeln!(text, "workload = {}", parameters.workload);
    let _ = writeln!(text, "watchers = {}", parameters.watchers);
    let _ = writeln!(
        text,
        "lease_ttl = {}",
        DisplayDuration(parameters.lease_ttl)
    );
    let _ = writeln!(
        text,
        "compact_every = {}",
        DisplayDuration(parameters.compact_every)
    );
    let _ = writeln!(
        text,
        "lease_checkpoint_interval = {}",
        DisplayDuration(parameters.lease_checkpoint_interval)
    );
    let _ = writeln!(text, "checks = {}", checks.join(", "));
    if parameters.schedule.is_empty() {
        let _ = writeln!(text, "nemesis = none");
        return text;
    }
    let _ = writeln!(text, "\ntimeline:");
    for fault in &parameters.schedule {
        let _ = writeln!(text, "  {}", timeline_line(fault));
    }
    text
}

/// One scheduled fault as a timeline line.
pub fn timeline_line(fault: &ScheduledFault) -> String {
    let mut line = format!("at {} {}", DisplayDuration(fault.at), fault.fault.name());
    if let Some(target) = fault.target {
        let _ = write!(line, " {target}");
    }
    for (option, value) in &fault.options {
        let _ = write!(line, " {}={value}", option.name());
    }
    let draws_members = matches!(
        fault.fault,
        Fault::Partition(
            PartitionKind::RandomHalves | PartitionKind::OneWay | PartitionKind::Bridge
        )
    );
    if draws_members && !fault.drawn_members.is_empty() {
        let members: Vec<String> = fault.drawn_members.iter().map(u32::to_string).collect();
        let _ = write!(line, " members={}", members.join(","));
    }
    if let Some(lasting) = fault.lasting {
        let _ = write!(line, " for {}", DisplayDuration(lasting));
    }
    line
}

/// The search's state: the smallest failing parameters so far and what it
/// has spent.
struct Search<'a, F> {
    current: SwarmParameters,
    seed: u64,
    runs: usize,
    removed: Vec<String>,
    limits: &'a ShrinkLimits,
    started: Instant,
    fails: F,
}

impl<F: FnMut(&SwarmParameters, u64) -> bool> Search<'_, F> {
    fn exhausted(&self) -> bool {
        self.runs >= self.limits.runs_max || self.started.elapsed() >= self.limits.wall_max
    }

    /// Runs `candidate` with the current seed, then the next ones; keeps it
    /// (and the seed it failed with) when it fails.
    fn attempt(&mut self, candidate: SwarmParameters, what: String) -> bool {
        for offset in 0..self.limits.seeds_per_candidate.max(1) {
            if self.exhausted() {
                return false;
            }
            let seed = self.seed.wrapping_add(offset);
            self.runs += 1;
            if (self.fails)(&candidate, seed) {
                let moved = if offset == 0 {
                    String::new()
                } else {
                    format!(" (fails with seed {seed} now)")
                };
                self.removed.push(format!("{what}{moved}"));
                self.current = candidate;
                self.seed = seed;
                return true;
            }
        }
        false
    }

    /// Delta debugging over the schedule: drop chunks, halving their size
    /// down to single faults. Returns whether anything was dropped.
    fn drop_faults(&mut self) -> bool {
        let mut changed = false;
        let mut chunk = self.current.schedule.len().div_ceil(2);
        while chunk >= 1 && !self.current.schedule.is_empty() && !self.exhausted() {
            let mut start = 0;
            while start < self.current.schedule.len() && !self.exhausted() {
                let end = (start + chunk).min(self.current.schedule.len());
                let mut candidate = self.current.clone();
                let dropped: Vec<ScheduledFault> = candidate.schedule.drain(start..end).collect();
                let what = if dropped.len() == 1 {
                    format!("fault `{}`", timeline_line(&dropped[0]))
                } else {
                    format!(
                        "{} faults from `{}` to `{}`",
                        dropped.len(),
                        timeline_line(&dropped[0]),
                        timeline_line(&dropped[dropped.len() - 1])
                    )
                };
                if self.attempt(candidate, format!("removed {what}")) {
                    changed = true;
                } else {
                    start = end;
                }
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2).min(chunk - 1).max(1);
        }
        changed
    }

    /// Cuts the safety phase a little after the last fault ends.
    fn shorten(&mut self) -> bool {
        let last_end = self
            .current
            .schedule
            .iter()
            .map(|fault| fault.at + fault.lasting.unwrap_or_default())
            .max();
        let target = match last_end {
            Some(end) => end + TAIL_AFTER_LAST_FAULT,
            None => self.current.duration / 2,
        };
        // Whole seconds read better and are no less minimal in spirit.
        let seconds = target.as_secs() + u64::from(target.subsec_nanos() > 0);
        let duration = Duration::from_secs(seconds).max(DURATION_MIN);
        let latest_fault = self.current.schedule.iter().map(|fault| fault.at).max();
        if duration >= self.current.duration || latest_fault.is_some_and(|at| at > duration) {
            return false;
        }
        let mut candidate = self.current.clone();
        candidate.duration = duration;
        let what = format!(
            "duration {} -> {}",
            DisplayDuration(self.current.duration),
            DisplayDuration(duration)
        );
        self.attempt(candidate, what)
    }

    /// Tries smaller values of one count, smallest first; keeps the first
    /// that still fails.
    fn reduce_count(
        &mut self,
        name: &str,
        floor: u32,
        get: fn(&SwarmParameters) -> u32,
        set: fn(&mut SwarmParameters, u32),
    ) -> bool {
        let now = get(&self.current);
        let proposals: BTreeSet<u32> = [floor, floor + 1, now / 4, now / 2, now.saturating_sub(1)]
            .into_iter()
            .filter(|value| *value >= floor && *value < now)
            .collect();
        for value in proposals {
            if self.exhausted() {
                return false;
            }
            let mut candidate = self.current.clone();
            set(&mut candidate, value);
            if self.attempt(candidate, format!("{name} {now} -> {value}")) {
                return true;
            }
        }
        false
    }

    /// Drops operation kinds from the workload, one at a time.
    fn drop_operation_kinds(&mut self) -> bool {
        let mut changed = false;
        let kinds: Vec<OperationKind> = self.current.workload.weights.keys().copied().collect();
        for kind in kinds {
            if self.current.workload.weights.len() <= 1 || self.exhausted() {
                break;
            }
            let mut candidate = self.current.clone();
            candidate.workload.weights.remove(&kind);
            if candidate
                .workload
                .weights
                .values()
                .all(|weight| *weight == 0)
            {
                continue;
            }
            changed |= self.attempt(candidate, format!("operation kind {}", kind.name()));
        }
        changed
    }
}

/// Shrinks `original`, which fails with `seed`: `fails(parameters, seed)`
/// runs a candidate and says whether the same checker failed again.
pub fn shrink(
    original: &SwarmParameters,
    seed: u64,
    limits: &ShrinkLimits,
    fails: impl FnMut(&SwarmParameters, u64) -> bool,
) -> Shrunk {
    let mut search = Search {
        current: original.clone(),
        seed,
        runs: 0,
        removed: Vec::new(),
        limits,
        started: Instant::now(),
        fails,
    };
    // Each pass that changes something makes the parameters strictly
    // smaller, so the loop is bounded by their size as well as the budget.
    while !search.exhausted() {
        let mut changed = search.drop_faults();
        changed |= search.shorten();
        changed |= search.reduce_count(
            "clients",
            1,
            |parameters| parameters.clients,
            |parameters, value| parameters.clients = value,
        );
        changed |= search.reduce_count(
            "watchers",
            0,
            |parameters| parameters.watchers,
            |parameters, value| parameters.watchers = value,
        );
        changed |= search.reduce_count(
            "keys",
            1,
            |parameters| parameters.keys,
            |parameters, value| parameters.keys = value,
        );
        changed |= search.drop_operation_kinds();
        if !changed {
            break;
        }
    }
    let budget_exhausted = search.exhausted();
    Shrunk {
        parameters: search.current,
        seed: search.seed,
        runs: search.runs,
        removed: search.removed,
        budget_exhausted,
    }
}

/// One line comparing the sizes of two parameter sets.
pub fn size_summary(parameters: &SwarmParameters) -> String {
    format!(
        "{} faults, {} clients, {} watchers, {} keys, {} operation kinds, {} run",
        parameters.schedule.len(),
        parameters.clients,
        parameters.watchers,
        parameters.keys,
        parameters.workload.weights.len(),
        DisplayDuration(parameters.duration)
    )
}

#[cfg(madsim)]
pub use self::driver::{shrink_failure, ShrinkReport};

/// The simulator side: runs the candidates.
#[cfg(madsim)]
mod driver {
    use std::panic::AssertUnwindSafe;
    use std::time::Instant;

    use super::{pinned_scenario, shrink, Failure, ShrinkLimits, Shrunk};
    use crate::runner::bug::Bug;
    use crate::runner::{run, RunOutcome};
    use crate::scenario::Scenario;
    use crate::swarm::SwarmParameters;

    /// Everything `cairn-sim shrink` reports.
    #[derive(Debug)]
    pub struct ShrinkReport {
        /// The failing run's parameters.
        pub original: SwarmParameters,
        /// The checker kept failing.
        pub failure: Failure,
        /// The search's result.
        pub shrunk: Shrunk,
        /// The shrunk scenario file.
        pub text: String,
        /// Runs in all, the first one included.
        pub runs: usize,
        /// Wall time in all.
        pub wall: std::time::Duration,
    }

    /// What failed in `outcome`, in check order, event-log conflicts last.
    pub fn failures(outcome: &RunOutcome) -> Vec<Failure> {
        let mut failures: Vec<Failure> = outcome
            .verdict
            .failed_checks()
            .into_iter()
            .map(Failure::Check)
            .collect();
        if !outcome.conflicts.is_empty() {
            failures.push(Failure::EventLogConflict);
        }
        failures
    }

    fn parse_pinned(parameters: &SwarmParameters, description: &str) -> Result<Scenario, String> {
        let text = pinned_scenario(parameters, description);
        Scenario::parse(&parameters.scenario, &text)
            .map_err(|error| format!("the pinned scenario does not parse: {error}\n{text}"))
    }

    /// Runs `scenario` with `seed`, and shrinks the failure: keeps `check`
    /// failing (by default the first check that failed).
    pub fn shrink_failure(
        scenario: &Scenario,
        seed: u64,
        bug: Option<Bug>,
        check: Option<Failure>,
        limits: &ShrinkLimits,
    ) -> Result<ShrinkReport, String> {
        let started = Instant::now();
        let outcome = run(scenario, seed, bug);
        let failed = failures(&outcome);
        let failure = match check {
            Some(check) if failed.contains(&check) => check,
            Some(check) => {
                return Err(format!(
                    "seed {seed} does not fail the {check} check (failed: {failed:?})"
                ))
            }
            None => *failed
                .first()
                .ok_or_else(|| format!("seed {seed} passes: nothing to shrink"))?,
        };
        let mut original = outcome.parameters.clone();
        original.scenario = format!("{}-shrunk", scenario.name);
        let bug_note = bug
            .map(|bug| format!(" with bug {bug}"))
            .unwrap_or_default();
        let description = format!(
            "{} seed {seed}{bug_note}, shrunk by cairn-sim shrink; fails the {failure} check.",
            scenario.name
        );
        // The pinned scenario must draw exactly the run's parameters, or the
        // shrink would start from a different run.
        let pinned = parse_pinned(&original, &description)?;
        let mut redrawn = SwarmParameters::draw(&pinned, seed);
        redrawn.scenario.clone_from(&original.scenario);
        if redrawn != original {
            return Err(format!(
                "the pinned scenario does not reproduce the run's parameters:\n{original}\nredrawn:\n{redrawn}"
            ));
        }
        let shrunk = shrink(&original, seed, limits, |candidate, seed| {
            let Ok(scenario) = parse_pinned(candidate, &description) else {
                return false;
            };
            // A candidate that panics (an invariant assertion, say) fails
            // differently from the run being shrunk: it is not kept.
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run(&scenario, seed, bug)));
            match outcome {
                Ok(outcome) => failures(&outcome).contains(&failure),
                Err(_) => {
                    eprintln!("shrink: a candidate panicked (seed {seed}); not kept");
                    false
                }
            }
        });
        let text = super::pinned_scenario(&shrunk.parameters, &description);
        Ok(ShrinkReport {
            original,
            failure,
            runs: shrunk.runs + 1,
            shrunk,
            text,
            wall: started.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn scenario(name: &str) -> Scenario {
        let path = format!("{}/../scenarios/{name}.scn", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("scenario file");
        Scenario::parse(&path, &text).expect("scenario parses")
    }

    #[test]
    fn a_pinned_scenario_draws_the_same_parameters_for_every_scenario() {
        let dir = format!("{}/../scenarios", env!("CARGO_MANIFEST_DIR"));
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("scenario dir")
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".scn").map(str::to_string)
            })
            .collect();
        names.sort();
        assert!(names.len() > 5, "found only {names:?}");
        for name in names {
            let scenario = scenario(&name);
            for seed in 1..=20 {
                let drawn = SwarmParameters::draw(&scenario, seed);
                let text = pinned_scenario(&drawn, "pinned");
                let pinned = Scenario::parse("pinned", &text)
                    .unwrap_or_else(|error| panic!("{name} seed {seed}: {error}\n{text}"));
                // Another seed too: nothing is left to draw.
                for replay_seed in [seed, seed + 1_000] {
                    let mut redrawn = SwarmParameters::draw(&pinned, replay_seed);
                    redrawn.seed = seed;
                    assert_eq!(redrawn, drawn, "{name} seed {seed}:\n{text}");
                }
            }
        }
    }

    #[test]
    fn shrinking_keeps_only_what_the_failure_needs() {
        // A fake failure: it needs the kill at 9s, at least 3 clients, and
        // any key count; everything else is noise.
        let original = SwarmParameters::draw(&scenario("swarm"), 7);
        assert!(original.schedule.len() > 4, "{original}");
        let needed = original.schedule[original.schedule.len() / 2].clone();
        let fails = |candidate: &SwarmParameters, _seed: u64| {
            candidate.schedule.contains(&needed) && candidate.clients >= 3
        };
        let shrunk = shrink(&original, 7, &ShrinkLimits::default(), fails);
        assert_eq!(shrunk.parameters.schedule, vec![needed.clone()]);
        assert_eq!(shrunk.parameters.clients, 3.min(original.clients));
        assert_eq!(shrunk.parameters.watchers, 0);
        assert_eq!(shrunk.parameters.keys, 1);
        assert_eq!(shrunk.parameters.workload.weights.len(), 1);
        let end = needed.at + needed.lasting.unwrap_or_default() + TAIL_AFTER_LAST_FAULT;
        assert!(shrunk.parameters.duration <= end + Duration::from_secs(1));
        assert!(shrunk.parameters.duration >= needed.at);
        assert!(!shrunk.budget_exhausted);
        assert_eq!(shrunk.seed, 7);
        assert!(shrunk
            .removed
            .iter()
            .any(|step| step.starts_with("removed")));
    }

    #[test]
    fn the_run_budget_bounds_the_search() {
        let original = SwarmParameters::draw(&scenario("swarm"), 3);
        let limits = ShrinkLimits {
            runs_max: 5,
            ..ShrinkLimits::default()
        };
        let mut calls = 0;
        let shrunk = shrink(&original, 3, &limits, |_, _| {
            calls += 1;
            false
        });
        assert_eq!(calls, 5);
        assert_eq!(shrunk.runs, 5);
        assert!(shrunk.budget_exhausted);
        assert_eq!(shrunk.parameters, original);
    }

    #[test]
    fn a_failure_that_moves_is_followed_to_the_next_seed() {
        let original = SwarmParameters::draw(&scenario("swarm"), 3);
        let shrunk = shrink(&original, 3, &ShrinkLimits::default(), |candidate, seed| {
            candidate.clients == original.clients || seed == 4
        });
        assert_eq!(shrunk.seed, 4);
        let moved = shrunk
            .removed
            .iter()
            .filter(|step| step.contains("fails with seed 4"));
        assert_eq!(moved.count(), 1, "{:?}", shrunk.removed);
    }

    #[test]
    fn pinned_members_are_read_back_and_checked() {
        let text = |line: &str| {
            format!("name = t\ndescription = d\ncluster_size = 3\nduration = 10s\n\ntimeline:\n  {line}\n")
        };
        let pinned = Scenario::parse("t", &text("at 1s partition one-way members=3,1 for 2s"))
            .expect("parses");
        let drawn = SwarmParameters::draw(&pinned, 11);
        assert_eq!(drawn.schedule[0].drawn_members, vec![3, 1]);
        assert_eq!(drawn.schedule[0].lasting, Some(Duration::from_secs(2)));
        for wrong in [
            "at 1s kill node 1 members=1",
            "at 1s partition bridge members=4",
            "at 1s partition bridge members=",
        ] {
            assert!(
                Scenario::parse("t", &text(wrong)).is_err(),
                "{wrong} parsed"
            );
        }
    }

    #[test]
    fn failures_are_named_as_on_the_command_line() {
        for failure in Check::ALL
            .into_iter()
            .map(Failure::Check)
            .chain([Failure::EventLogConflict])
        {
            assert_eq!(Failure::parse(failure.name()), Some(failure));
        }
        assert_eq!(Failure::parse("nonsense"), None);
    }
}
