//! The command line of `cairn-sim` (simulator build only).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cairn_sim::history::Outcome;
use cairn_sim::runner::bug::Bug;
use cairn_sim::runner::{run, RunOutcome};
use cairn_sim::scenario::Scenario;
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
        println!("{}", write_artifacts(&outcome, failures_dir));
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
        write_artifacts(outcome, failures_dir),
        replay_command(path, outcome.parameters.seed, outcome.bug)
    )
}

/// Writes the trace, the history and the verdict under `failures_dir`, and
/// says where (or why not).
fn write_artifacts(outcome: &RunOutcome, failures_dir: &Path) -> String {
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
        std::fs::write(dir.join("verdict.txt"), verdict)
    });
    match written {
        Ok(()) => format!("trace and history: {}", dir.display()),
        Err(error) => format!("cannot write {}: {error}", dir.display()),
    }
}
