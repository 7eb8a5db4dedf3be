//! Guards the crashes inside an fsync: `crash-in-fsync` lands while the
//! batch is written but not yet durable, with every fate of the batch
//! (lost, torn, zeroed, kept) drawn across a few seeds, and the members it
//! hits restart from the torn or short WAL with every checker passing;
//! `fsync-stall` is injected too. Simulator build only:
//!
//! ```text
//! RUSTFLAGS="--cfg madsim" cargo test --profile sim -p cairn-sim \
//!     --target-dir target-sim --test fsync_faults
//! ```
#![cfg(madsim)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use cairn_sim::runner::run;
use cairn_sim::scenario::Scenario;

/// Crashes the scenario schedules per run.
const CRASHES_PER_RUN: usize = 3;

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
fn crashes_inside_fsyncs_land_with_every_batch_fate_and_members_recover() {
    let scenario = scenario("crash-in-fsync");
    let mut fates = BTreeSet::new();
    for seed in 1..=4 {
        let outcome = run(&scenario, seed, None);
        assert!(
            outcome.passed(),
            "crash-in-fsync seed {seed} failed:\n{}",
            outcome.verdict
        );
        let counts = &outcome.verdict.fault_counts;
        assert_eq!(
            counts.get("crash-in-fsync").copied(),
            Some(CRASHES_PER_RUN),
            "seed {seed}: {counts:?}"
        );
        assert_eq!(
            counts.get("fsync-stall").copied(),
            Some(2),
            "seed {seed}: {counts:?}"
        );
        for line in &outcome.trace {
            if let Some(rest) = line.split("crash in fsync of member ").nth(1) {
                let fate = rest
                    .split("batch ")
                    .nth(1)
                    .and_then(|tail| tail.split_whitespace().next())
                    .unwrap_or_else(|| panic!("no batch fate in {line}"));
                fates.insert(fate.to_string());
            }
        }
    }
    let every: BTreeSet<String> = ["kept", "lost", "torn", "zeroed"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(fates, every, "batch fates drawn over seeds 1..=4");
}
