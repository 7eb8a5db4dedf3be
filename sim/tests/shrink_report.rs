//! A failure a person can act on: `cairn-sim shrink` turns a failing run
//! into a smaller scenario that still fails with the same checker, and the
//! HTML report renders the violation in a real browser (headless Chromium;
//! `make deps-chromium` installs Debian's). Simulator build only:
//!
//! ```text
//! RUSTFLAGS="--cfg madsim" cargo test --profile sim -p cairn-sim \
//!     --target-dir target-sim --test shrink_report
//! ```
#![cfg(madsim)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use cairn_sim::report::{render_outcome, REPORT_FILE};
use cairn_sim::runner::bug::Bug;
use cairn_sim::runner::run;
use cairn_sim::scenario::Scenario;
use cairn_sim::shrink::{shrink_failure, Failure, ShrinkLimits};

/// Runs the shrink test may spend: enough for the halves and a few single
/// faults, small enough to keep the test under a minute.
const SHRINK_RUNS_MAX: usize = 10;

fn scenario(name: &str) -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(format!("{name}.scn"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{} is unreadable: {error}", path.display()));
    Scenario::parse(&path.display().to_string(), &text)
        .unwrap_or_else(|error| panic!("{} does not parse: {error}", path.display()))
}

#[test]
fn a_planted_bug_shrinks_to_a_smaller_scenario_that_fails_the_same_check() {
    let bug = Bug::parse("commit-without-quorum").expect("planted bug exists");
    let limits = ShrinkLimits {
        runs_max: SHRINK_RUNS_MAX,
        wall_max: Duration::from_secs(50),
        seeds_per_candidate: 1,
    };
    let report = shrink_failure(
        &scenario("leader-isolated-minority"),
        1,
        Some(bug),
        None,
        &limits,
    )
    .expect("seed 1 fails with the bug planted");
    let (before, after) = (&report.original, &report.shrunk.parameters);
    println!(
        "{} check: {} faults/{} clients/{:?} -> {} faults/{} clients/{:?} in {} runs, {:.1}s: {:?}",
        report.failure,
        before.schedule.len(),
        before.clients,
        before.duration,
        after.schedule.len(),
        after.clients,
        after.duration,
        report.runs,
        report.wall.as_secs_f64(),
        report.shrunk.removed
    );
    assert!(report.runs <= SHRINK_RUNS_MAX + 1);
    assert!(
        after.schedule.len() < before.schedule.len()
            || after.clients < before.clients
            || after.duration < before.duration,
        "nothing shrank: {:?}",
        report.shrunk.removed
    );
    // The file as written fails the same check again.
    let shrunk = Scenario::parse("shrunk", &report.text).expect("the shrunk scenario parses");
    let replay = run(&shrunk, report.shrunk.seed, Some(bug));
    let failed = match report.failure {
        Failure::Check(check) => replay.verdict.failed_checks().contains(&check),
        Failure::EventLogConflict => !replay.conflicts.is_empty(),
    };
    assert!(
        failed,
        "the shrunk scenario no longer fails {}:\n{}\n{}",
        report.failure, report.text, replay.verdict
    );
}

/// Debian's Chromium, or a panic saying how to install it: the test never
/// skips silently.
fn chromium() -> String {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        let found = Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success());
        if found {
            return name.to_string();
        }
    }
    panic!("headless Chromium is needed: run `make deps-chromium` (apt-get install -y chromium)");
}

#[test]
fn the_html_report_renders_the_violation_in_a_browser() {
    let browser = chromium();
    let bug = Bug::parse("read-without-read-index").expect("planted bug exists");
    let scenario = scenario("bug-hunt");
    let outcome = (1..=8)
        .map(|seed| run(&scenario, seed, Some(bug)))
        .find(|outcome| !outcome.passed())
        .expect("the planted bug is caught within 8 seeds");
    let implicated = outcome.verdict.implicated();
    let culprit = *implicated
        .operations
        .iter()
        .next()
        .expect("a stale read implicates an operation");
    let dir = std::env::temp_dir().join(format!(
        "cairn-report-test-{}-{}",
        std::process::id(),
        outcome.parameters.seed
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let page = dir.join(REPORT_FILE);
    let html = render_outcome(&outcome, "cairn-sim run --scenario scenarios/bug-hunt.scn");
    std::fs::write(&page, &html).expect("report written");
    println!("report: {} bytes", html.len());
    let output = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--dump-dom",
        ])
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && !dom.is_empty(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The script ran: it marks the body and lists each implicated operation.
    assert!(
        dom.contains("data-rendered=\"yes\""),
        "the report's script did not run"
    );
    let listed = format!("<li class=\"violation-item\">{culprit} ");
    assert!(
        dom.contains(&listed),
        "{listed:?} is not in the rendered list"
    );
    // The culprit's bar is marked on the timeline.
    let bar = format!("data-op=\"{}\"", culprit.0);
    let marked = dom
        .lines()
        .any(|line| line.contains(&bar) && line.contains("violation"));
    assert!(marked, "operation {culprit} is not marked on the timeline");
    assert!(
        dom.contains("id=\"anchor\""),
        "no trace line marks the violation"
    );
    std::fs::remove_dir_all(&dir).expect("temp dir removed");
}
