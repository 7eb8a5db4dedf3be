//! Sweeps: many (scenario, seed) runs planned, split into shards, their
//! results written as JSON and merged into one summary.
//!
//! `cairn-sim scenarios` plans a sweep ([`plan`]): every scenario over the
//! fixed seeds, then over fresh seeds (a scenario with a [`Weights`] entry
//! gets that many times more fresh seeds). A [`Shard`] `i/n` keeps the jobs
//! whose index is `i` modulo `n`, so `n` machines given the same arguments
//! (and the same `--entropy` when fresh seeds are drawn) split one sweep
//! without overlap. Each run reports a [`RunResult`]; a shard's results
//! form a [`SweepReport`], and [`Summary`] totals any number of them:
//!
//! ```text
//! cairn-sim scenarios --seeds 1..100000 --shard 0/50 --json shard-0.json   # on 50 machines
//! cairn-sim merge shard-*.json                                              # one summary
//! ```
//!
//! Everything here is pure (no simulation), so it is tested in both builds.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Most runs one sweep may plan: a bound on the job list, not a goal.
pub const SWEEP_RUNS_MAX: u64 = 100_000_000;
/// Fresh seeds are drawn below this, so they stay short to type.
pub const FRESH_SEED_LIMIT: u64 = 1_000_000_000;

/// Parses `1,2,3`, `1..1000` (inclusive, as spans in scenario files) or
/// a mix of both (`1,2,10..20`), in the order given.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
    let mut seeds = Vec::new();
    for part in text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        let number = |word: &str| {
            word.trim()
                .parse::<u64>()
                .map_err(|error| format!("bad seed {word:?} in {part:?}: {error}"))
        };
        match part.split_once("..") {
            None => seeds.push(number(part)?),
            Some((low, high)) => {
                let (low, high) = (number(low)?, number(high)?);
                if low > high {
                    return Err(format!("empty seed range {part:?}: {low} > {high}"));
                }
                let added = high - low + 1;
                if seeds.len() as u64 + added > SWEEP_RUNS_MAX {
                    return Err(format!(
                        "seed range {part:?} is too long (at most {SWEEP_RUNS_MAX} seeds)"
                    ));
                }
                seeds.extend(low..=high);
            }
        }
    }
    Ok(seeds)
}

/// `count` fresh seeds drawn from `entropy` (the sweep takes it from the
/// wall clock and prints it, so the same set can be drawn again).
pub fn fresh_seeds(entropy: u64, count: u64) -> Vec<u64> {
    (0..count)
        .map(|index| (entropy ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15)) % FRESH_SEED_LIMIT)
        .collect()
}

/// One part of a sweep split `count` ways: the jobs whose index is
/// `index` modulo `count`. Written `i/n` with `0 <= i < n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Which part, from 0.
    pub index: u64,
    /// How many parts.
    pub count: u64,
}

impl Shard {
    /// The whole sweep.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Whether job number `job` (from 0, in plan order) is this shard's.
    pub fn takes(self, job: u64) -> bool {
        job % self.count == self.index
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Shard, String> {
        let bad = || format!("bad shard {text:?}: expected i/n with 0 <= i < n");
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let index: u64 = index.trim().parse().map_err(|_| bad())?;
        let count: u64 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Fresh-seed multipliers per scenario: `swarm-quick=500` gives that
/// scenario 500 times the fresh seeds of the others.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Weights(pub BTreeMap<String, u64>);

impl Weights {
    /// The multiplier of `scenario` (1 unless given).
    pub fn of(&self, scenario: &str) -> u64 {
        self.0.get(scenario).copied().unwrap_or(1)
    }
}

impl FromStr for Weights {
    type Err = String;

    /// Parses `name=weight[,name=weight...]`.
    fn from_str(text: &str) -> Result<Weights, String> {
        let mut weights = BTreeMap::new();
        for part in text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let bad = || format!("bad weight {part:?}: expected scenario=count");
            let (name, weight) = part.split_once('=').ok_or_else(bad)?;
            let weight: u64 = weight.trim().parse().map_err(|_| bad())?;
            weights.insert(name.trim().to_string(), weight);
        }
        Ok(Weights(weights))
    }
}

/// Parses `--pinned` entries, each `scenario=seeds` with seeds as in
/// [`parse_seeds`]: regression seeds a sweep always runs for that scenario.
pub fn parse_pinned(entries: &[String]) -> Result<BTreeMap<String, Vec<u64>>, String> {
    let mut pinned: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for entry in entries {
        let (name, seeds) = entry
            .split_once('=')
            .ok_or_else(|| format!("bad pinned seeds {entry:?}: expected scenario=seeds"))?;
        pinned
            .entry(name.trim().to_string())
            .or_default()
            .extend(parse_seeds(seeds)?);
    }
    Ok(pinned)
}

/// A scenario the sweep runs: its name and file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedScenario {
    /// The scenario's name.
    pub name: String,
    /// Its file.
    pub path: PathBuf,
}

/// One run of a sweep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The scenario's name.
    pub scenario: String,
    /// Its file.
    pub path: PathBuf,
    /// The seed.
    pub seed: u64,
    /// Replay it in a second process and compare trace hashes (the first
    /// fixed seed of each scenario when the sweep checks determinism).
    pub check_determinism: bool,
}

/// The jobs of one shard of a sweep, in plan order: every scenario over
/// the fixed seeds, then over its pinned seeds, then over its fresh seeds
/// (the first `fresh_per_scenario * weight` of `fresh`). Jobs are numbered
/// across the whole sweep before the shard takes its part, so shards never
/// overlap.
pub fn plan(
    scenarios: &[PlannedScenario],
    fixed: &[u64],
    pinned: &BTreeMap<String, Vec<u64>>,
    fresh: &[u64],
    fresh_per_scenario: u64,
    weights: &Weights,
    shard: Shard,
) -> Vec<Job> {
    let fixed_jobs = scenarios.iter().flat_map(|scenario| {
        fixed
            .iter()
            .enumerate()
            .map(move |(position, &seed)| (scenario, seed, position == 0))
    });
    let pinned_jobs = scenarios.iter().flat_map(|scenario| {
        let seeds = pinned.get(&scenario.name).map_or(&[][..], Vec::as_slice);
        seeds.iter().map(move |&seed| (scenario, seed, false))
    });
    let fresh_jobs = scenarios.iter().flat_map(|scenario| {
        let count = fresh_per_scenario.saturating_mul(weights.of(&scenario.name));
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        fresh
            .iter()
            .take(count)
            .map(move |&seed| (scenario, seed, false))
    });
    fixed_jobs
        .chain(pinned_jobs)
        .chain(fresh_jobs)
        .enumerate()
        .filter(|(index, _)| shard.takes(*index as u64))
        .map(|(_, (scenario, seed, first))| Job {
            scenario: scenario.name.clone(),
            path: scenario.path.clone(),
            seed,
            check_determinism: first,
        })
        .collect()
}

/// What one run reports to the sweep (one JSON line from its worker).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResult {
    /// The scenario's name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// The planted bug, if any.
    pub bug: Option<String>,
    /// Every check passed (and the replay matched, when checked).
    pub passed: bool,
    /// Client operations checked.
    pub operations: u64,
    /// Verdicts left unknown.
    pub unknown: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Simulated time, milliseconds.
    pub simulated_ms: u64,
    /// Wall time of the run, milliseconds.
    pub wall_ms: u64,
    /// The trace hash.
    pub trace_hash: u64,
    /// `Some(matched)` when the run was replayed in a second process.
    pub determinism: Option<bool>,
    /// Peak resident memory of the worker process, KiB (0 if unknown).
    pub peak_rss_kib: u64,
    /// For a failed run: the verdict, where its trace went and the replay
    /// command. Empty when it passed.
    pub report: String,
}

/// A shard's results, as `--json` writes them and `merge` reads them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepReport {
    /// Which shard (`i/n`).
    pub shard: String,
    /// The entropy fresh seeds were drawn from.
    pub entropy: u64,
    /// Runs this shard planned.
    pub planned: u64,
    /// Runs not started because the wall-clock budget ran out.
    pub skipped: u64,
    /// Worker processes run side by side.
    pub jobs: u64,
    /// Wall time of the whole shard, milliseconds.
    pub wall_ms: u64,
    /// Every finished run.
    pub results: Vec<RunResult>,
}

/// Totals of one scenario's runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScenarioTotals {
    /// Runs finished.
    pub runs: u64,
    /// Seeds that failed.
    pub failed: Vec<u64>,
    /// Operations checked.
    pub operations: u64,
    /// Verdicts left unknown.
    pub unknown: u64,
    /// Faults by kind.
    pub faults: BTreeMap<String, u64>,
    /// Simulated time, milliseconds.
    pub simulated_ms: u64,
    /// Wall time of the runs, milliseconds (summed over workers).
    pub wall_ms: u64,
}

/// The totals of one or more sweep reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Per scenario, by name.
    pub scenarios: BTreeMap<String, ScenarioTotals>,
    /// Everything together.
    pub total: ScenarioTotals,
    /// Runs whose replay hashed differently, as (scenario, seed).
    pub determinism_failures: Vec<(String, u64)>,
    /// Runs planned, over every report.
    pub planned: u64,
    /// Runs skipped by the budget.
    pub skipped: u64,
    /// Reports merged.
    pub shards: u64,
    /// Wall time of the reports, milliseconds, summed (machine time).
    pub wall_ms: u64,
    /// The longest report's wall time, milliseconds.
    pub wall_ms_max: u64,
    /// Peak resident memory of any worker, KiB.
    pub peak_rss_kib: u64,
}

impl ScenarioTotals {
    fn add(&mut self, result: &RunResult) {
        self.runs += 1;
        if !result.passed {
            self.failed.push(result.seed);
        }
        self.operations += result.operations;
        self.unknown += result.unknown;
        for (kind, count) in &result.faults {
            *self.faults.entry(kind.clone()).or_insert(0) += count;
        }
        self.simulated_ms += result.simulated_ms;
        self.wall_ms += result.wall_ms;
    }

    fn faults_line(&self) -> String {
        if self.faults.is_empty() {
            return "none".to_string();
        }
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect();
        faults.join(", ")
    }
}

impl Summary {
    /// Totals `reports` (one per shard).
    pub fn of(reports: &[SweepReport]) -> Summary {
        let mut summary = Summary::default();
        for report in reports {
            summary.shards += 1;
            summary.planned += report.planned;
            summary.skipped += report.skipped;
            summary.wall_ms += report.wall_ms;
            summary.wall_ms_max = summary.wall_ms_max.max(report.wall_ms);
            for result in &report.results {
                summary
                    .scenarios
                    .entry(result.scenario.clone())
                    .or_default()
                    .add(result);
                summary.total.add(result);
                summary.peak_rss_kib = summary.peak_rss_kib.max(result.peak_rss_kib);
                if result.determinism == Some(false) {
                    summary
                        .determinism_failures
                        .push((result.scenario.clone(), result.seed));
                }
            }
        }
        summary
    }

    /// Whether every run passed and replayed alike.
    pub fn passed(&self) -> bool {
        self.total.failed.is_empty() && self.determinism_failures.is_empty()
    }

    /// The table and totals a sweep prints at its end.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<40} {:>6} {:>6} {:>9} {:>7} {:>9} {:>8}  faults",
            "scenario", "runs", "failed", "ops", "unknown", "simulated", "wall"
        );
        for (name, totals) in &self.scenarios {
            let _ = writeln!(
                out,
                "{:<40} {:>6} {:>6} {:>9} {:>7} {:>8.0}s {:>7.1}s  {}",
                name,
                totals.runs,
                totals.failed.len(),
                totals.operations,
                totals.unknown,
                totals.simulated_ms as f64 / 1000.0,
                totals.wall_ms as f64 / 1000.0,
                totals.faults_line()
            );
        }
        let total = &self.total;
        let simulated = total.simulated_ms as f64 / 1000.0;
        let run_wall = (total.wall_ms as f64 / 1000.0).max(1e-3);
        let sweep_wall = (self.wall_ms_max as f64 / 1000.0).max(1e-3);
        let _ = writeln!(
            out,
            "seeds run: {} of {} planned ({} skipped by the budget) in {} shard(s); {} failed; {} determinism failures",
            total.runs,
            self.planned,
            self.skipped,
            self.shards,
            total.failed.len(),
            self.determinism_failures.len()
        );
        let _ = writeln!(out, "faults by kind: {}", total.faults_line());
        let _ = writeln!(
            out,
            "ops checked: {} ({} unknown)",
            total.operations, total.unknown
        );
        let _ = writeln!(
            out,
            "speed: {simulated:.0}s simulated in {run_wall:.0}s of run wall ({:.1}x per worker), {sweep_wall:.0}s sweep wall ({:.1} runs/s, {:.1}x overall)",
            simulated / run_wall,
            total.runs as f64 / sweep_wall,
            simulated / sweep_wall
        );
        let _ = writeln!(
            out,
            "peak worker RSS: {:.1} MiB",
            self.peak_rss_kib as f64 / 1024.0
        );
        for (name, totals) in &self.scenarios {
            for seed in &totals.failed {
                let _ = writeln!(out, "FAILED: {name} seed {seed}");
            }
        }
        for (name, seed) in &self.determinism_failures {
            let _ = writeln!(out, "NOT DETERMINISTIC: {name} seed {seed}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenarios(names: &[&str]) -> Vec<PlannedScenario> {
        names
            .iter()
            .map(|name| PlannedScenario {
                name: (*name).to_string(),
                path: PathBuf::from(format!("scenarios/{name}.scn")),
            })
            .collect()
    }

    #[test]
    fn seeds_are_lists_ranges_or_both() {
        assert_eq!(parse_seeds("1,2,3"), Ok(vec![1, 2, 3]));
        assert_eq!(parse_seeds("5..8"), Ok(vec![5, 6, 7, 8]));
        assert_eq!(parse_seeds(" 1, 10..12 ,2"), Ok(vec![1, 10, 11, 12, 2]));
        assert_eq!(parse_seeds("7..7"), Ok(vec![7]));
        assert_eq!(parse_seeds(""), Ok(vec![]));
    }

    #[test]
    fn bad_seeds_are_refused() {
        assert!(parse_seeds("9..3")
            .unwrap_err()
            .contains("empty seed range"));
        assert!(parse_seeds("1,x").unwrap_err().contains("bad seed"));
        assert!(parse_seeds("1..").is_err());
        assert!(parse_seeds("0..200000000")
            .unwrap_err()
            .contains("too long"));
    }

    #[test]
    fn fresh_seeds_are_drawn_again_from_the_same_entropy() {
        let seeds = fresh_seeds(1_733_390_000_123_456_789, 1000);
        assert_eq!(seeds, fresh_seeds(1_733_390_000_123_456_789, 1000));
        assert_ne!(seeds, fresh_seeds(1_733_390_000_123_456_790, 1000));
        assert!(seeds.iter().all(|&seed| seed < FRESH_SEED_LIMIT));
        let distinct: std::collections::BTreeSet<u64> = seeds.iter().copied().collect();
        assert_eq!(distinct.len(), seeds.len());
    }

    #[test]
    fn pinned_seeds_name_their_scenario() {
        let pinned = parse_pinned(&["swarm=6,15".to_string(), "kill-and-wipe=42".to_string()]);
        let expected = BTreeMap::from([
            ("kill-and-wipe".to_string(), vec![42]),
            ("swarm".to_string(), vec![6, 15]),
        ]);
        assert_eq!(pinned, Ok(expected));
        assert!(parse_pinned(&["swarm".to_string()]).is_err());
        assert!(parse_pinned(&["swarm=x".to_string()]).is_err());
    }

    #[test]
    fn shards_parse_and_refuse_out_of_range() {
        assert_eq!("2/5".parse::<Shard>(), Ok(Shard { index: 2, count: 5 }));
        assert_eq!("0/1".parse::<Shard>(), Ok(Shard::WHOLE));
        assert!("5/5".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
        assert!("1".parse::<Shard>().is_err());
        assert_eq!(Shard { index: 3, count: 8 }.to_string(), "3/8");
    }

    #[test]
    fn shards_split_a_sweep_exactly() {
        let scenarios = scenarios(&["a", "b", "swarm-quick"]);
        let fixed = [1, 2, 3];
        let fresh = fresh_seeds(42, 10);
        let weights: Weights = "swarm-quick=10".parse().unwrap();
        let pinned = parse_pinned(&["b=80,6".to_string(), "b=22".to_string()]).unwrap();
        let whole = plan(
            &scenarios,
            &fixed,
            &pinned,
            &fresh,
            1,
            &weights,
            Shard::WHOLE,
        );
        // 3 scenarios x 3 fixed seeds, 3 pinned, then 1 + 1 + 10 fresh.
        assert_eq!(whole.len(), 9 + 3 + 12);
        let pinned_seeds: Vec<u64> = whole[9..12].iter().map(|job| job.seed).collect();
        assert_eq!(pinned_seeds, vec![80, 6, 22]);
        assert!(whole[9..12].iter().all(|job| job.scenario == "b"));
        assert_eq!(
            whole.iter().filter(|job| job.check_determinism).count(),
            3,
            "the first fixed seed of each scenario"
        );
        let mut together = Vec::new();
        for index in 0..4 {
            let shard = Shard { index, count: 4 };
            let shard = plan(&scenarios, &fixed, &pinned, &fresh, 1, &weights, shard);
            assert_eq!(shard.len(), 6);
            together.extend(shard);
        }
        let key = |job: &Job| (job.scenario.clone(), job.seed);
        let mut expected: Vec<_> = whole.iter().map(key).collect();
        let mut got: Vec<_> = together.iter().map(key).collect();
        expected.sort();
        got.sort();
        assert_eq!(got, expected);
        // Shard 1/4 takes jobs 1, 5, 9, ... of the whole plan.
        let second = plan(
            &scenarios,
            &fixed,
            &pinned,
            &fresh,
            1,
            &weights,
            "1/4".parse().unwrap(),
        );
        assert_eq!(second[0], whole[1]);
        assert_eq!(second[1], whole[5]);
    }

    #[test]
    fn weights_multiply_fresh_seeds() {
        let weights: Weights = "b=3, c=0".parse().unwrap();
        assert_eq!(weights.of("a"), 1);
        assert_eq!(weights.of("b"), 3);
        let jobs = plan(
            &scenarios(&["a", "b", "c"]),
            &[],
            &BTreeMap::new(),
            &fresh_seeds(7, 6),
            2,
            &weights,
            Shard::WHOLE,
        );
        let count = |name: &str| jobs.iter().filter(|job| job.scenario == name).count();
        assert_eq!((count("a"), count("b"), count("c")), (2, 6, 0));
        assert!("b=x".parse::<Weights>().is_err());
        assert!("b".parse::<Weights>().is_err());
    }

    fn result(scenario: &str, seed: u64, passed: bool) -> RunResult {
        RunResult {
            scenario: scenario.to_string(),
            seed,
            passed,
            operations: 100,
            faults: BTreeMap::from([("kill".to_string(), 2)]),
            simulated_ms: 10_000,
            wall_ms: 200,
            peak_rss_kib: 40_000 + seed,
            ..RunResult::default()
        }
    }

    #[test]
    fn two_shard_files_merge_into_one_summary() {
        let first = SweepReport {
            shard: "0/2".to_string(),
            planned: 2,
            wall_ms: 1_000,
            results: vec![result("a", 1, true), result("b", 1, true)],
            ..SweepReport::default()
        };
        let mut failing = result("a", 2, false);
        failing.determinism = Some(false);
        let second = SweepReport {
            shard: "1/2".to_string(),
            planned: 3,
            skipped: 1,
            wall_ms: 3_000,
            results: vec![failing, result("b", 2, true)],
            ..SweepReport::default()
        };
        // Through JSON, as `--json` writes and `merge` reads.
        let files: Vec<String> = [&first, &second]
            .iter()
            .map(|report| serde_json::to_string(report).unwrap())
            .collect();
        let read: Vec<SweepReport> = files
            .iter()
            .map(|text| serde_json::from_str(text).unwrap())
            .collect();
        assert_eq!(read, vec![first.clone(), second]);
        let summary = Summary::of(&read);
        assert_eq!(summary.total.runs, 4);
        assert_eq!(summary.planned, 5);
        assert_eq!(summary.skipped, 1);
        assert_eq!(summary.shards, 2);
        assert_eq!(summary.wall_ms_max, 3_000);
        assert_eq!(summary.total.operations, 400);
        assert_eq!(summary.total.faults["kill"], 8);
        assert_eq!(summary.scenarios["a"].failed, vec![2]);
        assert_eq!(summary.determinism_failures, vec![("a".to_string(), 2)]);
        assert_eq!(summary.peak_rss_kib, 40_002);
        assert!(!summary.passed());
        let text = summary.render();
        assert!(
            text.contains("seeds run: 4 of 5 planned (1 skipped"),
            "{text}"
        );
        assert!(text.contains("FAILED: a seed 2"), "{text}");
        assert!(text.contains("faults by kind: kill 8"), "{text}");
        assert!(Summary::of(&[first]).passed());
    }
}
