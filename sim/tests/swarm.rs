//! Guards the swarm parameter drawing: a (scenario, seed) pair always gives
//! the same parameters and the same printed block (that is what makes a
//! failing seed replayable), different seeds explore different runs, and
//! everything a scenario fixes is respected.

use std::collections::BTreeSet;
use std::time::Duration;

use cairn_sim::scenario::{Fault, Quantity, Scenario, Target};
use cairn_sim::swarm::{SwarmParameters, CLUSTER_SIZES, SCHEDULED_FAULTS_MAX};

const SWARM: &str = "name = swarm\ndescription = d\nduration = 60s\nnemesis = swarm\n";

fn scenario(text: &str) -> Scenario {
    Scenario::parse("t.scn", text).expect("parses")
}

#[test]
fn the_same_seed_gives_the_same_parameters() {
    let scenario = scenario(SWARM);
    for seed in [0, 1, 42, u64::MAX] {
        let first = SwarmParameters::draw(&scenario, seed);
        let second = SwarmParameters::draw(&scenario, seed);
        assert_eq!(first, second);
        assert_eq!(first.to_string(), second.to_string());
    }
}

#[test]
fn different_seeds_explore_different_runs() {
    let scenario = scenario(SWARM);
    // Everything but the seed line must differ.
    let printed: BTreeSet<String> = (0..32)
        .map(|seed| {
            let text = SwarmParameters::draw(&scenario, seed).to_string();
            text.lines()
                .filter(|line| !line.starts_with("seed = "))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    assert_eq!(printed.len(), 32);
    let sizes: BTreeSet<u32> = (0..64)
        .map(|seed| SwarmParameters::draw(&scenario, seed).cluster_size)
        .collect();
    assert_eq!(sizes, CLUSTER_SIZES.into_iter().collect());
}

#[test]
fn a_swarm_schedule_is_bounded_sorted_and_within_the_run() {
    let scenario = scenario(SWARM);
    for seed in 0..64 {
        let parameters = SwarmParameters::draw(&scenario, seed);
        assert!(parameters.schedule.len() <= SCHEDULED_FAULTS_MAX);
        assert!(!parameters.schedule.is_empty(), "seed {seed}: no faults");
        assert!(parameters
            .schedule
            .windows(2)
            .all(|pair| pair[0].at <= pair[1].at));
        assert!(parameters
            .schedule
            .iter()
            .all(|fault| fault.at < parameters.duration));
        assert!(parameters
            .schedule
            .iter()
            .all(|fault| fault.target != Some(Target::Random)));
        let kinds: BTreeSet<Fault> = parameters
            .schedule
            .iter()
            .map(|fault| fault.fault)
            .collect();
        assert!(kinds.len() >= 2, "seed {seed}: {kinds:?}");
        let counted: usize = parameters.fault_counts().values().sum();
        assert_eq!(counted, parameters.schedule.len());
        for fault in &parameters.schedule {
            for value in fault.options.values() {
                if let Quantity::Percent(percent) = value {
                    assert!(*percent <= 150);
                }
            }
        }
    }
}

#[test]
fn what_the_scenario_fixes_is_kept() {
    let text = "name = t\ndescription = d\nduration = 30s\ncluster_size = 5\nclients = 3\nkeys = 7\nworkload = put 1\ntimeline:\n  at 5s kill random for 2s\n  at 10s clock-drift node 2 rate=140%\n";
    let scenario = scenario(text);
    for seed in 0..16 {
        let parameters = SwarmParameters::draw(&scenario, seed);
        assert_eq!(
            (parameters.cluster_size, parameters.clients, parameters.keys),
            (5, 3, 7)
        );
        assert_eq!(parameters.workload.to_string(), "put 1");
        assert_eq!(parameters.schedule.len(), 2);
        assert_eq!(parameters.schedule[0].at, Duration::from_secs(5));
        assert!(matches!(
            parameters.schedule[0].target,
            Some(Target::Node(1..=5))
        ));
        assert_eq!(parameters.schedule[0].lasting, Some(Duration::from_secs(2)));
        assert_eq!(parameters.tick_rate_percent_max(), 140);
    }
}

#[test]
fn the_printed_block_names_every_parameter() {
    let parameters = SwarmParameters::draw(&scenario(SWARM), 7);
    let printed = parameters.to_string();
    for word in [
        "scenario = swarm",
        "seed = 7",
        "cluster_size = ",
        "workload = ",
        "schedule: (",
    ] {
        assert!(printed.contains(word), "missing {word:?} in:\n{printed}");
    }
}
