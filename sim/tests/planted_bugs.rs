//! Proof that the simulator finds bugs: each deliberately planted bug is
//! caught by some checker within a bounded number of seeds of the
//! `bug-hunt` scenario, and the same seeds find nothing without a bug.
//! Simulator build only:
//! `RUSTFLAGS="--cfg madsim" cargo test -p cairn-sim --target-dir target-sim --test planted_bugs`.
#![cfg(madsim)]

use std::path::PathBuf;

use cairn_sim::runner::bug::Bug;
use cairn_sim::runner::run;
use cairn_sim::scenario::Scenario;

/// Every planted bug must be caught within this many seeds.
const SEEDS_TO_CATCH_MAX: u64 = 8;
/// Seeds the clean run must pass.
const CLEAN_SEEDS: u64 = 3;

fn bug_hunt() -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/bug-hunt.scn");
    let text = std::fs::read_to_string(&path).expect("scenarios/bug-hunt.scn is readable");
    Scenario::parse("bug-hunt.scn", &text).expect("bug-hunt.scn parses")
}

#[test]
fn every_planted_bug_is_caught_within_a_few_seeds() {
    let scenario = bug_hunt();
    let mut missed = Vec::new();
    for bug in Bug::all() {
        let caught = (1..=SEEDS_TO_CATCH_MAX).find(|&seed| !run(&scenario, seed, Some(bug)).passed());
        match caught {
            Some(seed) => println!("{bug}: caught at seed {seed}"),
            None => missed.push(bug),
        }
    }
    assert!(
        missed.is_empty(),
        "not caught within {SEEDS_TO_CATCH_MAX} seeds: {missed:?}"
    );
}

#[test]
fn without_a_bug_the_same_scenario_passes() {
    let scenario = bug_hunt();
    for seed in 1..=CLEAN_SEEDS {
        let outcome = run(&scenario, seed, None);
        assert!(
            outcome.passed(),
            "seed {seed} failed without a planted bug:\n{}\n{:?}",
            outcome.verdict,
            outcome.conflicts
        );
    }
}

#[test]
fn a_seed_replays_with_the_same_trace_hash() {
    let scenario = bug_hunt();
    let first = run(&scenario, 7, None);
    let second = run(&scenario, 7, None);
    assert_eq!(
        first.trace_hash, second.trace_hash,
        "seed 7 traced {} then {} events",
        first.trace_lines_total, second.trace_lines_total
    );
    assert!(first.trace_lines_total > 1000, "a run traces its events");
}
