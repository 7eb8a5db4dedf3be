//! The command line of `cairn-sim` (simulator build only).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cairn_sim::history::Outcome;
use cairn_sim::report::{render_outcome, REPORT_FILE};
use cairn_sim::runner::bug::Bug;
use cairn_sim::runner::{run, RunOutcome};
use cairn_sim::scenario::Scenario;
use cairn_sim::shrink::{shrink_failure, size_summary, Failure, ShrinkLimits};
use cairn_sim::swarm::SwarmParameters;
use cairn_sim::sweep::Shard;
use clap::{Parser, Subcommand};

use crate::workers::{SweepOptions, WorkerJob};

/// Where failing runs leave their trace and history.
const FAILURES_DIR_DEFAULT: &str = "sim-failures";
/// The seeds `scenarios` always runs.
const FIXED_SEEDS_DEFAULT: &str = "1,2,3";
/// The fresh seeds per scenario `scenarios` adds.
const FRESH_SEEDS_DEFAULT: u64 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "cairn-sim",
    about = "Deterministic simulation of a Cairn cluster under faults"
)]
struct Arguments {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs one scenario with one seed.
    Run {
        /// The scenario file.
        #[arg(long)]
        scenario: PathBuf,
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// Plants a deliberate bug (see `cairn-sim bugs`).
        #[arg(long)]
        bug: Option<String>,
        /// Runs the seed twice and compares the trace hashes.
        #[arg(long)]
        check_determinism: bool,
        /// Where a failing run writes its trace and history.
        #[arg(long, default_value = FAILURES_DIR_DEFAULT)]
        failures_dir: PathBuf,
        /// Writes the trace and history even when the run passes.
        #[arg(long)]
        keep_trace: bool,
    },
    /// Runs every scenario over fixed and fresh seeds, each run in its own
    /// worker process, `--jobs` at a time, and prints a summary.
    Scenarios {
        /// The scenario directory.
        #[arg(long, default_value = "scenarios")]
        dir: PathBuf,
        /// Seeds every scenario runs: `1,2,3`, `1..1000` (inclusive) or both.
        #[arg(long, default_value = FIXED_SEEDS_DEFAULT)]
        seeds: String,
        /// Regression seeds of one scenario, `scenario=seeds` (repeatable).
        #[arg(long)]
        pinned: Vec<String>,
        /// Fresh seeds per scenario on top of the fixed ones.
        #[arg(long, default_value_t = FRESH_SEEDS_DEFAULT)]
        fresh: u64,
        /// Draws the fresh seeds from this instead of the wall clock (every
        /// shard of one sweep must be given the same).
        #[arg(long)]
        entropy: Option<u64>,
        /// Fresh-seed multipliers: `swarm-quick=1900` gives that scenario
        /// 1900 times `--fresh` fresh seeds.
        #[arg(long, default_value = "")]
        weight: String,
        /// Runs only this shard of the sweep: `i/n` takes every job whose
        /// index is i modulo n.
        #[arg(long, default_value = "0/1")]
        shard: Shard,
        /// Worker processes side by side (default: one per core).
        #[arg(long)]
        jobs: Option<usize>,
        /// Writes this shard's results as JSON (for `cairn-sim merge`).
        #[arg(long)]
        json: Option<PathBuf>,
        /// Stop starting runs after this much wall time (seconds).
        #[arg(long, default_value_t = 600)]
        budget_secs: u64,
        /// Also replay each scenario's first seed and compare trace hashes.
        #[arg(long)]
        check_determinism: bool,
        /// Runs only scenarios whose name contains this.
        #[arg(long)]
        only: Option<String>,
        /// Plants a deliberate bug in every run.
        #[arg(long)]
        bug: Option<String>,
        /// Where failing runs write their trace and history.
        #[arg(long, default_value = FAILURES_DIR_DEFAULT)]
        failures_dir: PathBuf,
    },
    /// Prints one summary of the `--json` files of a sweep's shards; fails
    /// if any run failed.
    Merge {
        /// The shards' JSON files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// One run of a sweep: prints its result as one JSON line (used by
    /// `scenarios`, which starts one worker process per run).
    #[command(hide = true)]
    Worker {
        /// The scenario file.
        #[arg(long)]
        scenario: PathBuf,
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// Plants a deliberate bug.
        #[arg(long)]
        bug: Option<String>,
        /// Replays the seed in another process and compares trace hashes.
        #[arg(long)]
        check_determinism: bool,
        /// Where a failing run writes its trace and history.
        #[arg(long, default_value = FAILURES_DIR_DEFAULT)]
        failures_dir: PathBuf,
    },
    /// Lists the bugs `--bug` can plant.
    Bugs,
    /// Shrinks a failing run to a small scenario file that still fails
    /// with the same checker, and prints the command that replays it.
    Shrink {
        /// The scenario file.
        #[arg(long)]
        scenario: PathBuf,
        /// The failing seed.
        #[arg(long)]
        seed: u64,
        /// Plants a deliberate bug (see `cairn-sim bugs`).
        #[arg(long)]
        bug: Option<String>,
        /// The check that must keep failing (default: the first that failed;
        /// `event-log` for members applying different events).
        #[arg(long)]
        check: Option<String>,
        /// Where to write the shrunk scenario (default: under --failures-dir).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Most simulation runs to spend.
        #[arg(long, default_value_t = cairn_sim::shrink::RUNS_MAX_DEFAULT)]
        runs_max: usize,
        /// Most wall time to spend (seconds).
        #[arg(long, default_value_t = cairn_sim::shrink::WALL_MAX_DEFAULT.as_secs())]
        budget_secs: u64,
        /// Seeds tried per candidate: the current one, then the next ones.
        #[arg(long, default_value_t = cairn_sim::shrink::SEEDS_PER_CANDIDATE_DEFAULT)]
        seeds_per_candidate: u64,
        /// Where the shrunk run's trace, history and report go.
        #[arg(long, default_value = FAILURES_DIR_DEFAULT)]
        failures_dir: PathBuf,
    },
    /// Runs one seed and writes its HTML report, failing or not.
    Report {
        /// The scenario file.
        #[arg(long)]
        scenario: PathBuf,
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// Plants a deliberate bug (see `cairn-sim bugs`).
        #[arg(long)]
        bug: Option<String>,
        /// The directory report.html is written to.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .without_time()
        .with_writer(std::io::stderr)
        .init();
    let arguments = Arguments::parse();
    match arguments.command {
        Command::Bugs => {
            for bug in Bug::all() {
                println!("{bug}");
            }
            ExitCode::SUCCESS
        }
        Command::Shrink {
            scenario,
            seed,
            bug,
            check,
            out,
            runs_max,
            budget_secs,
            seeds_per_candidate,
            failures_dir,
        } => shrink_one(&ShrinkOptions {
            scenario,
            seed,
            bug,
            check,
            out,
            limits: ShrinkLimits {
                runs_max,
                wall_max: Duration::from_secs(budget_secs),
                seeds_per_candidate,
            },
            failures_dir,
        }),
        Command::Report {
            scenario,
            seed,
            bug,
            out,
        } => report_one(&scenario, seed, bug.as_deref(), &out),
        Command::Run {
            scenario,
            seed,
            bug,
            check_determinism,
            failures_dir,
            keep_trace,
        } => run_one(
            &scenario,
            seed,
            bug.as_deref(),
            check_determinism,
            &failures_dir,
            keep_trace,
        ),
        Command::Scenarios {
            dir,
            seeds,
            pinned,
            fresh,
            entropy,
            weight,
            shard,
            jobs,
            json,
            budget_secs,
            check_determinism,
            only,
            bug,
            failures_dir,
        } => crate::workers::sweep(&SweepOptions {
            dir,
            seeds,
            pinned,
            fresh,
            entropy,
            weight,
            shard,
            jobs,
            json,
            budget: Duration::from_secs(budget_secs),
            check_determinism,
            only,
            bug,
            failures_dir,
        }),
        Command::Merge { files } => crate::workers::merge(&files),
        Command::Worker {
            scenario,
            seed,
            bug,
            check_determinism,
            failures_dir,
        } => crate::workers::work(&WorkerJob {
            scenario,
            seed,
            bug,
            check_determinism,
            failures_dir,
        }),
    }
}

pub(crate) fn load(path: &Path) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    Scenario::parse(&path.display().to_string(), &text).map_err(|error| error.to_string())
}

pub(crate) fn parse_bug(name: Option<&str>) -> Result<Option<Bug>, String> {
    match name {
        None => Ok(None),
        Some(name) => Bug::parse(name).map(Some).ok_or_else(|| {
            let names: Vec<&str> = Bug::all().into_iter().map(Bug::name).collect();
            format!("unknown bug {name:?}; known: {}", names.join(", "))
        }),
    }
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|text| text.trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

/// The one command that replays a run.
pub(crate) fn replay_command(scenario: &Path, seed: u64, bug: Option<Bug>) -> String {
    let bug = bug.map(|bug| format!(" --bug {bug}")).unwrap_or_default();
    format!(
        "git checkout {} && RUSTFLAGS=\"--cfg madsim\" cargo run --profile sim -p cairn-sim --target-dir target-sim -- run --scenario {} --seed {seed}{bug}",
        git_commit(),
        scenario.display()
    )
}

fn run_one(
    path: &Path,
    seed: u64,
    bug: Option<&str>,
    check_determinism: bool,
    failures_dir: &Path,
    keep_trace: bool,
) -> ExitCode {
    let (scenario, bug) = match load(path).and_then(|scenario| Ok((scenario, parse_bug(bug)?))) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    println!("{}", SwarmParameters::draw(&scenario, seed));
    if let Some(bug) = bug {
        println!("planted bug = {bug}");
    }
    let wall = Instant::now();
    let outcome = run(&scenario, seed, bug);
    let wall = wall.elapsed();
    print_outcome(&outcome, wall);
    let mut ok = outcome.passed();
    if check_determinism {
        match replay_hash(path, seed, bug) {
            Ok(hash) if hash == outcome.trace_hash => println!(
                "determinism: OK (trace hash {hash:016x} over {} events, replayed in a new process)",
                outcome.trace_lines_total
            ),
            Ok(hash) => {
                println!(
                    "determinism: FAILED: trace hash {:016x} ({} events), replayed as {hash:016x}",
                    outcome.trace_hash, outcome.trace_lines_total
                );
                ok = false;
            }
            Err(error) => {
                println!("determinism: FAILED: the replay did not run: {error}");
                ok = false;
            }
        }
    }
    if !ok {
        print!("{}", failure_report(path, &outcome, failures_dir));
        return ExitCode::FAILURE;
    }
    if keep_trace {
        println!("{}", write_artifacts(path, &outcome, failures_dir));
    }
    ExitCode::SUCCESS
}

/// The trace hash of `seed` run in a new process of this binary. A new
/// process because tokio seeds each thread's `select!` randomness from a
/// process-wide counter, so two runs in one process need not poll in the
/// same order.
pub(crate) fn replay_hash(path: &Path, seed: u64, bug: Option<Bug>) -> Result<u64, String> {
    let executable = std::env::current_exe().map_err(|error| error.to_string())?;
    let mut command = std::process::Command::new(executable);
    command
        .arg("run")
        .arg("--scenario")
        .arg(path)
        .arg("--seed")
        .arg(seed.to_string());
    if let Some(bug) = bug {
        command.arg("--bug").arg(bug.name());
    }
    let output = command.output().map_err(|error| error.to_string())?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .filter_map(|line| line.split("trace hash ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .find_map(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(|| format!("no trace hash in the replay's output ({})", output.status))
}

fn print_outcome(outcome: &RunOutcome, wall: Duration) {
    print!("{}", outcome.verdict);
    for conflict in &outcome.conflicts {
        println!("event log conflict: {conflict}");
    }
    let (completed, failed, indeterminate) = outcome_counts(outcome);
    println!(
        "operations: {} ({completed} completed, {failed} failed, {indeterminate} indeterminate); messages dropped {}, duplicated {}",
        outcome.operations(),
        outcome.messages_dropped,
        outcome.messages_duplicated
    );
    println!(
        "time: {:.1}s simulated in {:.1}s wall ({:.1}x); trace hash {:016x} over {} events",
        outcome.simulated.as_secs_f64(),
        wall.as_secs_f64(),
        outcome.simulated.as_secs_f64() / wall.as_secs_f64().max(1e-9),
        outcome.trace_hash,
        outcome.trace_lines_total
    );
}

fn outcome_counts(outcome: &RunOutcome) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    for record in outcome.history.records() {
        match record.outcome {
            Outcome::Completed { .. } => counts.0 += 1,
            Outcome::Failed { .. } => counts.1 += 1,
            Outcome::Indeterminate { .. } | Outcome::Pending => counts.2 += 1,
        }
    }
    counts
}

/// Writes the trace, the history and the verdict under `failures_dir`, and
/// says where they went and how to replay the run.
pub(crate) fn failure_report(path: &Path, outcome: &RunOutcome, failures_dir: &Path) -> String {
    format!(
        "{}\nFAILED; replay with:\n  {}\n",
        write_artifacts(path, outcome, failures_dir),
        replay_command(path, outcome.parameters.seed, outcome.bug)
    )
}

/// Writes the trace, the history, the verdict and the HTML report under
/// `failures_dir`, and says where (or why not).
pub(crate) fn write_artifacts(path: &Path, outcome: &RunOutcome, failures_dir: &Path) -> String {
    let parameters = &outcome.parameters;
    let bug = outcome.bug.map(|bug| format!("-{bug}")).unwrap_or_default();
    let dir = failures_dir.join(format!(
        "{}-seed-{}{bug}",
        parameters.scenario, parameters.seed
    ));
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        let mut trace = String::new();
        for line in &outcome.trace {
            trace.push_str(line);
            trace.push('\n');
        }
        std::fs::write(dir.join("trace.log"), trace)?;
        let mut history = String::new();
        for record in outcome.history.records() {
            let _ = writeln!(
                history,
                "{} {} invoked {} {:?} -> {:?}",
                record.id, record.client, record.invoked_at, record.operation, record.outcome
            );
        }
        std::fs::write(dir.join("history.txt"), history)?;
        let mut verdict = format!("{parameters}\n{}", outcome.verdict);
        for conflict in &outcome.conflicts {
            let _ = writeln!(verdict, "event log conflict: {conflict}");
        }
        std::fs::write(dir.join("verdict.txt"), verdict)?;
        write_report(&dir, path, outcome)
    });
    match written {
        Ok(()) => format!("trace and history: {}", dir.display()),
        Err(error) => format!("cannot write {}: {error}", dir.display()),
    }
}

/// Writes `report.html` for `outcome` (run from the scenario at `path`) into `dir`.
fn write_report(dir: &Path, path: &Path, outcome: &RunOutcome) -> std::io::Result<()> {
    let replay = replay_command(path, outcome.parameters.seed, outcome.bug);
    std::fs::write(dir.join(REPORT_FILE), render_outcome(outcome, &replay))
}

struct ShrinkOptions {
    scenario: PathBuf,
    seed: u64,
    bug: Option<String>,
    check: Option<String>,
    out: Option<PathBuf>,
    limits: ShrinkLimits,
    failures_dir: PathBuf,
}

fn shrink_one(options: &ShrinkOptions) -> ExitCode {
    let loaded = load(&options.scenario).and_then(|scenario| {
        let bug = parse_bug(options.bug.as_deref())?;
        let check = match options.check.as_deref() {
            None => None,
            Some(name) => Some(Failure::parse(name).ok_or_else(|| {
                format!("unknown check {name:?}: linearizable, revisions, raft, watch, durability, lease, liveness or event-log")
            })?),
        };
        Ok((scenario, bug, check))
    });
    let (scenario, bug, check) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let seed = options.seed;
    println!(
        "shrinking {} seed {seed}{} (at most {} runs, {}s)",
        scenario.name,
        bug.map(|bug| format!(" with bug {bug}"))
            .unwrap_or_default(),
        options.limits.runs_max,
        options.limits.wall_max.as_secs()
    );
    let report = match shrink_failure(&scenario, seed, bug, check, &options.limits) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("cannot shrink: {error}");
            return ExitCode::FAILURE;
        }
    };
    let shrunk = &report.shrunk;
    let bug_suffix = bug.map(|bug| format!("-{bug}")).unwrap_or_default();
    let out = options.out.clone().unwrap_or_else(|| {
        options.failures_dir.join(format!(
            "{}-seed-{seed}{bug_suffix}-shrunk.scn",
            scenario.name
        ))
    });
    let replay = replay_command(&out, shrunk.seed, bug);
    let mut text = format!(
        "# Shrunk by `cairn-sim shrink --scenario {} --seed {seed}{}` in {} runs:\n# fails the {} check with seed {}. Replay:\n#   {replay}\n",
        options.scenario.display(),
        bug.map(|bug| format!(" --bug {bug}")).unwrap_or_default(),
        report.runs,
        report.failure,
        shrunk.seed
    );
    text.push_str(&report.text);
    let written = out
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&out, text));
    if let Err(error) = written {
        eprintln!("cannot write {}: {error}", out.display());
        return ExitCode::FAILURE;
    }
    println!("failing check: {}", report.failure);
    println!("before: {}", size_summary(&report.original));
    println!("after:  {}", size_summary(&shrunk.parameters));
    for step in &shrunk.removed {
        println!("  {step}");
    }
    println!(
        "{} runs in {:.1}s wall{}",
        report.runs,
        report.wall.as_secs_f64(),
        if shrunk.budget_exhausted {
            " (budget spent: the result may shrink further)"
        } else {
            ""
        }
    );
    println!("wrote {}", out.display());
    // Replay the file as written: it must fail the same way.
    let replayed = match load(&out) {
        Ok(replayed) => run(&replayed, shrunk.seed, bug),
        Err(error) => {
            eprintln!("the shrunk scenario does not load: {error}");
            return ExitCode::FAILURE;
        }
    };
    let still_fails = match report.failure {
        Failure::Check(check) => replayed.verdict.failed_checks().contains(&check),
        Failure::EventLogConflict => !replayed.conflicts.is_empty(),
    };
    if !still_fails {
        eprintln!(
            "the shrunk scenario did not fail the {} check on replay",
            report.failure
        );
        return ExitCode::FAILURE;
    }
    print!("{}", failure_report(&out, &replayed, &options.failures_dir));
    ExitCode::SUCCESS
}

fn report_one(path: &Path, seed: u64, bug: Option<&str>, out: &Path) -> ExitCode {
    let (scenario, bug) = match load(path).and_then(|scenario| Ok((scenario, parse_bug(bug)?))) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let wall = Instant::now();
    let outcome = run(&scenario, seed, bug);
    print_outcome(&outcome, wall.elapsed());
    let written = std::fs::create_dir_all(out).and_then(|()| write_report(out, path, &outcome));
    match written {
        Ok(()) => {
            println!("report: {}", out.join(REPORT_FILE).display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot write {}: {error}", out.display());
            ExitCode::FAILURE
        }
    }
}
