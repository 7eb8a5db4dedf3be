//! Guards the operator's faults: membership changes, kill-and-wipe and slow
//! fsync really happen (they count in the run summary only once the
//! cluster confirmed them) and every checker still passes while the member
//! set changes; and the swarm seeds that found runner bugs with them stay
//! green. Simulator build only:
//!
//! ```text
//! RUSTFLAGS="--cfg madsim" cargo test --profile sim -p cairn-sim \
//!     --target-dir target-sim --test operator_faults
//! ```
#![cfg(madsim)]

use std::path::PathBuf;

use cairn_sim::runner::{run, RunOutcome};
use cairn_sim::scenario::Scenario;

fn scenario(name: &str) -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(format!("{name}.scn"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{} is unreadable: {error}", path.display()));
    Scenario::parse(&path.display().to_string(), &text)
        .unwrap_or_else(|error| panic!("{} does not parse: {error}", path.display()))
}

fn passing_run(name: &str, seed: u64) -> RunOutcome {
    let outcome = run(&scenario(name), seed, None);
    assert!(
        outcome.passed(),
        "{name} seed {seed} failed:\n{}\n{:?}",
        outcome.verdict,
        outcome.conflicts
    );
    outcome
}

fn count(outcome: &RunOutcome, fault: &str) -> usize {
    outcome
        .verdict
        .fault_counts
        .get(fault)
        .copied()
        .unwrap_or(0)
}

#[test]
fn membership_changes_happen_under_partitions_and_every_check_passes() {
    let outcome = passing_run("partition-during-membership-change", 1);
    for action in ["add-learner", "promote-learner", "remove-member"] {
        assert!(
            count(&outcome, action) >= 1,
            "{action} never confirmed: {:?}",
            outcome.verdict.fault_counts
        );
    }
}

#[test]
fn wiped_members_come_back_under_a_new_identity() {
    let outcome = passing_run("kill-and-wipe", 1);
    let wipes = count(&outcome, "wipe");
    assert!(wipes >= 1, "no wipe: {:?}", outcome.verdict.fault_counts);
    assert_eq!(
        count(&outcome, "wipe-rejoined"),
        wipes,
        "every wiped member of seed 1 rejoins: {:?}",
        outcome.verdict.fault_counts
    );
}

#[test]
fn slow_fsyncs_are_injected_and_every_check_passes() {
    let outcome = passing_run("slow-fsync", 1);
    assert_eq!(
        count(&outcome, "slow-fsync"),
        5,
        "{:?}",
        outcome.verdict.fault_counts
    );
}

/// Seeds that found bugs with these faults, in the runner and in the node
/// (see the table in scenarios/README.md). The swarm seeds were found
/// before members got distinct election timeouts, so their runs differ
/// since: they stay as smoke tests of the same fault mixes; kill-and-wipe
/// seed 42 is the timeout regression itself.
#[test]
fn swarm_regressions_stay_green() {
    for seed in [6, 15, 22, 80, 162, 224, 389, 422, 442] {
        passing_run("swarm", seed);
    }
    passing_run("kill-and-wipe", 42);
}
