//! Guards the scenario format: every file in scenarios/ parses and is
//! named after its file, and malformed files are refused with the line to
//! fix and what was expected.

use std::path::PathBuf;
use std::time::Duration;

use cairn_sim::scenario::{
    Check, Fault, FaultOption, Nemesis, PartitionKind, Quantity, Scenario, ScenarioErrorKind, Span,
    Target,
};

fn scenario_files() -> Vec<PathBuf> {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("reading {}: {error}", directory.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "scn"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_scenario_file_parses_and_is_named_after_its_file() {
    let files = scenario_files();
    assert!(
        files.len() >= 12,
        "expected at least 12 scenarios, found {}",
        files.len()
    );
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable");
        let stem = path
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        let scenario = Scenario::parse(&path.display().to_string(), &text)
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            scenario.name,
            stem,
            "{}: name must match the file name",
            path.display()
        );
        assert!(
            text.starts_with('#'),
            "{}: must open with a comment saying what it guards",
            path.display()
        );
    }
}

#[test]
fn the_fault_vocabulary_is_covered_by_the_scenarios() {
    let mut used = std::collections::BTreeSet::new();
    for path in scenario_files() {
        let scenario = Scenario::parse("x", &std::fs::read_to_string(&path).expect("readable"))
            .expect("parses");
        match scenario.nemesis {
            Nemesis::Scripted(steps) => used.extend(steps.iter().map(|step| step.fault.fault)),
            Nemesis::Random(faults) => used.extend(faults.iter().map(|fault| fault.fault.fault)),
            Nemesis::Swarm | Nemesis::None => {}
        }
    }
    for fault in [
        Fault::Kill,
        Fault::Pause,
        Fault::Resume,
        Fault::Wipe,
        Fault::TransferLeader,
        Fault::Partition(PartitionKind::IsolateLeader),
        Fault::Partition(PartitionKind::Bridge),
        Fault::Partition(PartitionKind::OneWay),
        Fault::Loss,
        Fault::Duplicate,
        Fault::Reorder,
        Fault::DelaySpike,
        Fault::Heal,
        Fault::ClockDrift,
        Fault::ClockPause,
        Fault::LoseUnsynced,
        Fault::TornWrite,
        Fault::BitFlip,
        Fault::FsyncError,
        Fault::SlowFsync,
        Fault::CrashInFsync,
        Fault::FsyncStall,
        Fault::DiskFull,
        Fault::AddLearner,
        Fault::PromoteLearner,
        Fault::RemoveMember,
        Fault::Compact,
    ] {
        assert!(used.contains(&fault), "no scenario uses {}", fault.name());
    }
}

const MINIMAL: &str = "name = t\ndescription = d\nduration = 10s\n";

#[test]
fn a_timeline_parses_into_sorted_steps_with_defaults() {
    let text = format!(
        "{MINIMAL}cluster_size = 5\nchecks = raft, linearizable\n\ntimeline:\n  at 8s restart all\n  at 5s kill leader for 2s\n  at 6s loss probability=20%\n  at 7s partition isolate-leader\n  at 9s clock-drift node 2 rate=130%\n"
    );
    let scenario = Scenario::parse("t.scn", &text).expect("parses");
    assert_eq!(scenario.cluster_size, Some(Span::fixed(5)));
    assert_eq!(
        scenario.checks,
        [Check::Raft, Check::Linearizable].into_iter().collect()
    );
    let Nemesis::Scripted(steps) = scenario.nemesis else {
        panic!("scripted")
    };
    let times: Vec<u64> = steps.iter().map(|step| step.at.as_secs()).collect();
    assert_eq!(times, vec![5, 6, 7, 8, 9]);
    assert_eq!(steps[0].fault.fault, Fault::Kill);
    assert_eq!(steps[0].fault.target, Some(Target::Leader));
    assert_eq!(steps[0].lasting, Some(Duration::from_secs(2)));
    assert_eq!(
        steps[1].fault.options[&FaultOption::Probability],
        Span::fixed(Quantity::Percent(20))
    );
    assert_eq!(
        steps[2].fault.fault,
        Fault::Partition(PartitionKind::IsolateLeader)
    );
    assert_eq!(steps[3].fault.target, Some(Target::All));
    assert_eq!(steps[4].fault.target, Some(Target::Node(2)));
    assert_eq!(scenario.liveness_timeout, Duration::from_secs(20));
}

#[test]
fn a_random_nemesis_parses_ranges() {
    let text = format!("{MINIMAL}nemesis:\n  kill random every 3s..6s for 1s..2s\n  delay-spike latency=50ms..800ms every 5s\n");
    let scenario = Scenario::parse("t.scn", &text).expect("parses");
    let Nemesis::Random(faults) = scenario.nemesis else {
        panic!("random")
    };
    assert_eq!(
        faults[0].every,
        Span {
            low: Duration::from_secs(3),
            high: Duration::from_secs(6)
        }
    );
    assert_eq!(
        faults[0].lasting,
        Some(Span {
            low: Duration::from_secs(1),
            high: Duration::from_secs(2)
        })
    );
    assert_eq!(
        faults[1].fault.options[&FaultOption::Latency],
        Span {
            low: Quantity::Duration(Duration::from_millis(50)),
            high: Quantity::Duration(Duration::from_millis(800))
        }
    );
}

fn error_line(text: &str) -> (usize, ScenarioErrorKind) {
    let error = Scenario::parse("bad.scn", text).expect_err("must not parse");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("bad.scn:{}:", error.line)),
        "{message}"
    );
    (error.line, error.kind)
}

#[test]
fn bad_files_report_the_line_to_fix() {
    let (line, kind) = error_line(&format!("{MINIMAL}nemesis = none\ncluster_sise = 3\n"));
    assert_eq!(line, 5);
    assert!(
        matches!(kind, ScenarioErrorKind::UnknownSetting { .. }),
        "{kind}"
    );

    let (line, kind) = error_line(&format!("{MINIMAL}nemesis = none\nclients = many\n"));
    assert_eq!(line, 5);
    assert!(matches!(kind, ScenarioErrorKind::BadValue { .. }), "{kind}");

    let (line, kind) = error_line(&format!(
        "{MINIMAL}timeline:\n  at 1s kill leader\n  at 2s explode leader\n"
    ));
    assert_eq!(line, 6);
    assert!(
        matches!(kind, ScenarioErrorKind::UnknownFault { .. }),
        "{kind}"
    );

    let (line, kind) = error_line(&format!("{MINIMAL}timeline:\n  at 1s heal leader\n"));
    assert_eq!(line, 5);
    assert!(matches!(kind, ScenarioErrorKind::BadFault { .. }), "{kind}");

    let (line, _) = error_line(&format!(
        "{MINIMAL}timeline:\n  at 1s loss probability=200%\n"
    ));
    assert_eq!(line, 5);

    let (line, _) = error_line(&format!("{MINIMAL}timeline:\n  at 1s partition sideways\n"));
    assert_eq!(line, 5);

    let (line, _) = error_line(&format!("{MINIMAL}timeline:\n  at 20s kill leader\n"));
    assert_eq!(line, 5, "a step after the end of the run");

    let (line, _) = error_line(&format!("{MINIMAL}timeline:\n  at 2s restart all for 1s\n"));
    assert_eq!(line, 5, "restart cannot be undone");

    let (line, _) = error_line(&format!("{MINIMAL}nemesis:\n  kill random often\n"));
    assert_eq!(line, 5);

    let (line, kind) = error_line(&format!("{MINIMAL}nemesis = none\nduration = 5s\n"));
    assert_eq!(line, 5);
    assert!(
        matches!(
            kind,
            ScenarioErrorKind::DuplicateSetting { first_line: 3, .. }
        ),
        "{kind}"
    );

    let (line, _) =
        error_line("name = t\ndescription = d\nduration = 10s\nthis is not a setting\n");
    assert_eq!(line, 4);

    let (line, kind) = error_line("name = t\nduration = 10s\nnemesis = none\n");
    assert_eq!(line, 0);
    assert!(
        matches!(
            kind,
            ScenarioErrorKind::MissingSetting {
                name: "description"
            }
        ),
        "{kind}"
    );

    let (line, _) = error_line(&format!(
        "{MINIMAL}workload = put 10, teleport 5\nnemesis = none\n"
    ));
    assert_eq!(line, 4);

    let (line, _) = error_line(&format!(
        "{MINIMAL}cluster_size = 3\ntimeline:\n  at 1s kill node 5\n"
    ));
    assert_eq!(line, 6, "node beyond the cluster");

    let (line, _) = error_line(&format!("{MINIMAL}timeline:\n  at 1s kill node 2\n"));
    assert_eq!(line, 5, "node without a fixed cluster size");

    let (_, kind) = error_line(&format!(
        "{MINIMAL}nemesis = swarm\ntimeline:\n  at 1s heal\n"
    ));
    assert!(
        matches!(kind, ScenarioErrorKind::BadSection { .. }),
        "{kind}"
    );
}
