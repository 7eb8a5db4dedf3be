//! Sweeps over worker processes: `cairn-sim scenarios` plans its jobs
//! ([`cairn_sim::sweep::plan`]) and runs each (scenario, seed) in a new
//! `cairn-sim worker` process, `--jobs` of them side by side, each printing
//! its [`RunResult`] as one JSON line.
//!
//! One process per run, for two reasons. Memory: madsim does not cancel
//! the tasks still pending when a runtime is dropped, so a run's cluster,
//! trace and history stay reachable from their own futures and a long
//! in-process sweep grew by megabytes a run; a process gives every byte
//! back. Determinism: tokio seeds each thread's `select!` randomness from
//! a process-wide counter, so only a run in a new process replays exactly
//! as `cairn-sim run` replays it. Starting a process costs a few
//! milliseconds, against a tenth of a second for the shortest run.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_sim::runner::run;
use cairn_sim::sweep::{
    fresh_seeds, parse_pinned, parse_seeds, plan, Job, PlannedScenario, RunResult, Shard, Summary,
    SweepReport, Weights,
};

use crate::cli::{failure_report, load, parse_bug, replay_command, replay_hash};

/// A sweep this long or shorter prints a line per run; a longer one prints
/// a progress line every twentieth of its runs (and every failure).
const RUN_LINES_MAX: usize = 500;
/// Characters of a crashed worker's stderr kept in its report.
const WORKER_STDERR_TAIL_CHARS: usize = 4_000;

/// What `cairn-sim scenarios` was asked to do.
pub struct SweepOptions {
    pub dir: PathBuf,
    pub seeds: String,
    pub pinned: Vec<String>,
    pub fresh: u64,
    pub entropy: Option<u64>,
    pub weight: String,
    pub shard: Shard,
    pub jobs: Option<usize>,
    pub json: Option<PathBuf>,
    pub budget: Duration,
    pub check_determinism: bool,
    pub only: Option<String>,
    pub bug: Option<String>,
    pub failures_dir: PathBuf,
}

/// What one worker process runs.
pub struct WorkerJob {
    pub scenario: PathBuf,
    pub seed: u64,
    pub bug: Option<String>,
    pub check_determinism: bool,
    pub failures_dir: PathBuf,
}

/// The scenario files in `dir`, by name.
fn scenarios(dir: &Path) -> Result<Vec<PlannedScenario>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|error| format!("cannot list {}: {error}", dir.display()))?;
    let mut planned = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().is_none_or(|extension| extension != "scn") {
            continue;
        }
        // Parse every file once here, so a broken one stops the sweep
        // before any run starts.
        let scenario = load(&path)?;
        planned.push(PlannedScenario {
            name: scenario.name,
            path,
        });
    }
    planned.sort_by(|left, right| left.name.cmp(&right.name));
    Ok(planned)
}

/// `cairn-sim scenarios`.
pub fn sweep(options: &SweepOptions) -> ExitCode {
    let planned =
        (|| {
            parse_bug(options.bug.as_deref())?;
            let mut scenarios = scenarios(&options.dir)?;
            let pinned = parse_pinned(&options.pinned)?;
            if let Some(name) = pinned
                .keys()
                .find(|name| scenarios.iter().all(|scenario| &scenario.name != *name))
            {
                return Err(format!(
                    "--pinned names no scenario in {}: {name}",
                    options.dir.display()
                ));
            }
            if let Some(only) = &options.only {
                scenarios.retain(|scenario| scenario.name.contains(only.as_str()));
            }
            let fixed = parse_seeds(&options.seeds)?;
            let weights: Weights = options.weight.parse()?;
            // Fresh seeds come from the wall clock, outside any simulation.
            let entropy = options.entropy.unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |elapsed| elapsed.as_nanos() as u64)
            });
            let weight_max = scenarios
                .iter()
                .map(|scenario| weights.of(&scenario.name))
                .max()
                .unwrap_or(1);
            let fresh = fresh_seeds(entropy, options.fresh.saturating_mul(weight_max));
            let jobs = plan(
                &scenarios,
                &fixed,
                &pinned,
                &fresh,
                options.fresh,
                &weights,
                options.shard,
            );
            println!(
            "sweep: {} scenarios; fixed seeds {}; pinned {:?}; {} fresh seeds each{} from entropy \
             {entropy} (--entropy {entropy} draws them again); shard {}: {} runs",
            scenarios.len(),
            if fixed.len() > 8 {
                format!("{}..{} ({} seeds)", fixed[0], fixed[fixed.len() - 1], fixed.len())
            } else {
                format!("{fixed:?}")
            },
            pinned,
            options.fresh,
            if weights.0.is_empty() {
                String::new()
            } else {
                format!(" (weighted {:?})", weights.0)
            },
            options.shard,
            jobs.len()
        );
            if options.fresh > 0 && fresh.len() <= 8 {
                println!("fresh seeds: {fresh:?}");
            }
            Ok::<_, String>((entropy, jobs))
        })();
    let (entropy, jobs) = match planned {
        Ok(planned) => planned,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let workers = options
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .max(1);
    let executable = match std::env::current_exe() {
        Ok(executable) => executable,
        Err(error) => {
            eprintln!("cannot find this executable to start workers: {error}");
            return ExitCode::from(2);
        }
    };
    println!(
        "{workers} worker processes, {}s budget",
        options.budget.as_secs()
    );

    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let skipped = AtomicU64::new(0);
    let mut results: Vec<(usize, RunResult)> = Vec::with_capacity(jobs.len());
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::channel();
        for _ in 0..workers {
            let sender = sender.clone();
            let (jobs, next, skipped, executable) = (&jobs, &next, &skipped, &executable);
            scope.spawn(move || loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(index) else {
                    break;
                };
                if started.elapsed() >= options.budget {
                    skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let result = run_in_worker(executable, job, options);
                if sender.send((index, result)).is_err() {
                    break;
                }
            });
        }
        drop(sender);
        let progress_every = (jobs.len() / 20).max(1);
        for (index, result) in receiver {
            results.push((index, result));
            let result = &results[results.len() - 1].1;
            let done = results.len();
            if jobs.len() <= RUN_LINES_MAX || !result.passed {
                println!(
                    "[{done}/{}] {} seed {}: {}, {} ops, {:.0}s simulated in {:.2}s",
                    jobs.len(),
                    result.scenario,
                    result.seed,
                    if result.passed { "PASS" } else { "FAIL" },
                    result.operations,
                    result.simulated_ms as f64 / 1000.0,
                    result.wall_ms as f64 / 1000.0
                );
            } else if done.is_multiple_of(progress_every) {
                println!(
                    "[{done}/{}] {:.0}s wall, every run so far passed",
                    jobs.len(),
                    started.elapsed().as_secs_f64()
                );
            }
            match result.determinism {
                Some(true) => println!("  determinism OK (replayed in a second process)"),
                Some(false) => println!("  determinism FAILED: the replay hashed differently"),
                None => {}
            }
            if !result.report.is_empty() {
                print!("{}", result.report);
            }
            let _ = std::io::stdout().flush();
        }
    });
    results.sort_by_key(|(index, _)| *index);
    let report = SweepReport {
        shard: options.shard.to_string(),
        entropy,
        planned: jobs.len() as u64,
        skipped: skipped.load(Ordering::Relaxed),
        jobs: workers as u64,
        wall_ms: millis(started.elapsed()),
        results: results.into_iter().map(|(_, result)| result).collect(),
    };
    println!();
    let summary = Summary::of(std::slice::from_ref(&report));
    print!("{}", summary.render());
    println!(
        "sweep process peak RSS: {:.1} MiB",
        peak_rss_kib() as f64 / 1024.0
    );
    if let Some(path) = &options.json {
        let written = serde_json::to_string(&report)
            .map_err(|error| error.to_string())
            .and_then(|text| std::fs::write(path, text).map_err(|error| error.to_string()));
        match written {
            Ok(()) => println!("results: {}", path.display()),
            Err(error) => {
                eprintln!("cannot write {}: {error}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    if summary.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs `job` in a new worker process and reads its result line; a worker
/// that dies without one (a panic, an abort) is a failed run whose report
/// holds the end of its stderr.
fn run_in_worker(executable: &Path, job: &Job, options: &SweepOptions) -> RunResult {
    let mut command = Command::new(executable);
    command
        .arg("worker")
        .arg("--scenario")
        .arg(&job.path)
        .arg("--seed")
        .arg(job.seed.to_string())
        .arg("--failures-dir")
        .arg(&options.failures_dir)
        .stdin(Stdio::null());
    if let Some(bug) = &options.bug {
        command.arg("--bug").arg(bug);
    }
    if job.check_determinism && options.check_determinism {
        command.arg("--check-determinism");
    }
    let wall = Instant::now();
    let output = command.output();
    let wall = wall.elapsed();
    let (status, stdout, stderr) = match output {
        Ok(output) => (
            output.status.to_string(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ),
        Err(error) => (
            format!("not started: {error}"),
            String::new(),
            String::new(),
        ),
    };
    let line = stdout.lines().rev().find(|line| line.starts_with('{'));
    if let Some(result) = line.and_then(|line| serde_json::from_str::<RunResult>(line).ok()) {
        return result;
    }
    let bug = options
        .bug
        .as_deref()
        .and_then(|name| parse_bug(Some(name)).ok().flatten());
    let tail_start = stderr
        .char_indices()
        .rev()
        .nth(WORKER_STDERR_TAIL_CHARS)
        .map_or(0, |(index, _)| index);
    RunResult {
        scenario: job.scenario.clone(),
        seed: job.seed,
        bug: options.bug.clone(),
        passed: false,
        wall_ms: millis(wall),
        report: format!(
            "the worker died without a result ({status}); its stderr ends:\n{}\nFAILED; replay with:\n  {}\n",
            &stderr[tail_start..],
            replay_command(&job.path, job.seed, bug)
        ),
        ..RunResult::default()
    }
}

/// `cairn-sim worker`: one run, its result as one JSON line on stdout.
pub fn work(job: &WorkerJob) -> ExitCode {
    let (scenario, bug) = match load(&job.scenario)
        .and_then(|scenario| Ok((scenario, parse_bug(job.bug.as_deref())?)))
    {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let wall = Instant::now();
    let outcome = run(&scenario, job.seed, bug);
    let wall = wall.elapsed();
    let peak_rss_kib = peak_rss_kib();
    let determinism = job.check_determinism.then(|| {
        // This run was the first in a new process; so is the replay.
        replay_hash(&job.scenario, job.seed, bug).is_ok_and(|hash| hash == outcome.trace_hash)
    });
    let passed = outcome.passed() && determinism != Some(false);
    let report = if passed {
        String::new()
    } else {
        format!(
            "{}{}",
            outcome.verdict,
            failure_report(&job.scenario, &outcome, &job.failures_dir)
        )
    };
    let result = RunResult {
        scenario: scenario.name.clone(),
        seed: job.seed,
        bug: bug.map(|bug| bug.name().to_string()),
        passed,
        operations: outcome.operations() as u64,
        unknown: outcome.verdict.unknown_count() as u64,
        faults: outcome
            .verdict
            .fault_counts
            .iter()
            .map(|(kind, count)| ((*kind).to_string(), *count as u64))
            .collect(),
        simulated_ms: millis(outcome.simulated),
        wall_ms: millis(wall),
        trace_hash: outcome.trace_hash,
        determinism,
        peak_rss_kib,
        report,
    };
    match serde_json::to_string(&result) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot encode the result: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `cairn-sim merge`: one summary of several shards' JSON files.
pub fn merge(files: &[PathBuf]) -> ExitCode {
    let mut reports = Vec::with_capacity(files.len());
    for path in files {
        let read = std::fs::read_to_string(path)
            .map_err(|error| error.to_string())
            .and_then(|text| {
                serde_json::from_str::<SweepReport>(&text).map_err(|error| error.to_string())
            });
        match read {
            Ok(report) => {
                println!(
                    "{}: shard {}, entropy {}, {} runs",
                    path.display(),
                    report.shard,
                    report.entropy,
                    report.results.len()
                );
                reports.push(report);
            }
            Err(error) => {
                eprintln!("cannot read {}: {error}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    let summary = Summary::of(&reports);
    print!("{}", summary.render());
    for report in &reports {
        for result in report.results.iter().filter(|result| !result.passed) {
            print!(
                "{} seed {}:\n{}",
                result.scenario, result.seed, result.report
            );
        }
    }
    if summary.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// This process's peak resident memory (VmHWM), KiB; 0 where /proc has
/// no answer.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
