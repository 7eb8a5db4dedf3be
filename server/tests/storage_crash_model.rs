//! Guards "no acknowledged write lost, nothing unacknowledged invented": random
//! sequences of persists, snapshots, failed fsyncs, full disks and crashes
//! (some tearing the last write) on a `SimDisk`, checked against a plain
//! in-memory model. After every crash the recovered state must equal the
//! model of everything whose `persist` returned `Ok`, plus either none or all
//! of the one Ready whose write was interrupted (a Ready is atomic; all of it
//! only if the crash tore that write rather than losing it).

use std::path::Path;
use std::sync::Arc;

use cairn_core::raft::{
    ConfState, Entry, EntryKind, HardState, Index, NodeId, Snapshot, SnapshotMetadata, Term,
};
use cairn_server::storage::{Disk, RaftStorage, Recovered, SimDisk, StorageConfig, StorageError};
use proptest::prelude::*;

const DATA: &str = "/data";

const CONFIG: StorageConfig = StorageConfig {
    segment_bytes_max: 256,
};

/// How a crash treats the last unsynced write.
#[derive(Clone, Copy, Debug)]
enum Tear {
    /// Lost.
    None,
    /// A strict prefix survives.
    Prefix,
    /// Its length survives with a range of zeros inside.
    ZeroedRange,
}

#[derive(Clone, Debug)]
enum Operation {
    /// A Ready with `count` entries starting `overwrite` entries before the end.
    Persist {
        overwrite: u64,
        count: u64,
        with_hard_state: bool,
    },
    /// The same, but the fsync fails.
    PersistFailingSync {
        overwrite: u64,
        count: u64,
        with_hard_state: bool,
    },
    /// The same, but the disk is full.
    PersistDiskFull { count: u64 },
    /// The application compacts `behind` entries before the last.
    SaveSnapshot { behind: u64 },
    /// The same, but the snapshot file's fsync fails.
    SaveSnapshotFailingSync { behind: u64 },
    /// A snapshot `ahead` entries past the end arrives from the leader.
    InstallSnapshot { ahead: u64 },
    /// Power loss, optionally tearing the last unsynced write.
    Crash { tear: Tear },
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        6 => (0..4u64, 0..5u64, any::<bool>()).prop_map(|(overwrite, count, with_hard_state)| {
            Operation::Persist { overwrite, count, with_hard_state }
        }),
        2 => (0..4u64, 1..5u64, any::<bool>()).prop_map(|(overwrite, count, with_hard_state)| {
            Operation::PersistFailingSync { overwrite, count, with_hard_state }
        }),
        1 => (1..4u64).prop_map(|count| Operation::PersistDiskFull { count }),
        1 => (0..6u64).prop_map(|behind| Operation::SaveSnapshot { behind }),
        1 => (0..6u64).prop_map(|behind| Operation::SaveSnapshotFailingSync { behind }),
        1 => (1..6u64).prop_map(|ahead| Operation::InstallSnapshot { ahead }),
        2 => prop_oneof![Just(Tear::None), Just(Tear::Prefix), Just(Tear::ZeroedRange)]
            .prop_map(|tear| Operation::Crash { tear }),
    ]
}

/// What the storage must hold: the acknowledged state.
#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    hard_state: Option<HardState>,
    snapshot: Option<Snapshot>,
    /// The entries after the snapshot.
    log: Vec<Entry>,
}

impl Model {
    fn snapshot_index(&self) -> u64 {
        self.snapshot
            .as_ref()
            .map_or(0, |snapshot| snapshot.metadata.index.0)
    }

    fn last_index(&self) -> u64 {
        self.log
            .last()
            .map_or(self.snapshot_index(), |entry| entry.index.0)
    }

    fn append(&mut self, entry: Entry) {
        self.log.retain(|kept| kept.index < entry.index);
        self.log.push(entry);
    }

    fn expected_hard_state(&self) -> HardState {
        let mut hard_state = self.hard_state.unwrap_or_default();
        if let Some(snapshot) = &self.snapshot {
            hard_state.commit = hard_state.commit.max(snapshot.metadata.index);
            if hard_state.term < snapshot.metadata.term {
                hard_state.term = snapshot.metadata.term;
                hard_state.vote = None;
            }
        }
        hard_state
    }

    fn matches(&self, recovered: &Recovered) -> bool {
        recovered.state.hard_state == self.expected_hard_state()
            && recovered.state.snapshot == self.snapshot
            && recovered.state.entries == self.log
    }
}

/// One Ready's records in WAL order.
#[derive(Clone, Debug)]
enum Record {
    Entry(Entry),
    HardState(HardState),
}

fn snapshot(index: u64, term: u64) -> Snapshot {
    Snapshot {
        metadata: SnapshotMetadata {
            index: Index(index),
            term: Term(term),
            conf_state: ConfState {
                voters: [NodeId(1)].into(),
                learners: Default::default(),
            },
        },
        data: format!("state at {index}").into_bytes(),
    }
}

fn open(disk: &SimDisk) -> (RaftStorage, Recovered) {
    let shared: Arc<dyn Disk> = Arc::new(disk.clone());
    RaftStorage::open_with_config(shared, Path::new(DATA), CONFIG).expect("storage opens")
}

struct Harness {
    disk: SimDisk,
    storage: Option<RaftStorage>,
    model: Model,
    term: u64,
    /// The records of the Ready whose write failed (possibly partly on disk).
    interrupted: Option<Vec<Record>>,
}

impl Harness {
    fn ready(&mut self, overwrite: u64, count: u64, with_hard_state: bool) -> Vec<Record> {
        let snapshot_index = self.model.snapshot_index();
        let last = self.model.last_index();
        let first = (last + 1).saturating_sub(overwrite).max(snapshot_index + 1);
        if first <= last {
            self.term += 1; // a new leader overwrites the suffix
        }
        let mut records: Vec<Record> = (first..first + count)
            .map(|index| {
                Record::Entry(Entry {
                    term: Term(self.term),
                    index: Index(index),
                    kind: EntryKind::Normal,
                    data: format!("{index}/{}", self.term).into_bytes(),
                })
            })
            .collect();
        if with_hard_state {
            records.push(Record::HardState(HardState {
                term: Term(self.term),
                vote: Some(NodeId(self.term % 3 + 1)),
                commit: Index(snapshot_index),
            }));
        }
        records
    }

    fn persist(&mut self, records: &[Record]) -> Result<(), StorageError> {
        let entries: Vec<Entry> = records
            .iter()
            .filter_map(|record| match record {
                Record::Entry(entry) => Some(entry.clone()),
                Record::HardState(_) => None,
            })
            .collect();
        let hard_state = records.iter().find_map(|record| match record {
            Record::HardState(hard_state) => Some(*hard_state),
            Record::Entry(_) => None,
        });
        let storage = self.storage.as_mut().expect("storage is open");
        storage.persist(hard_state.as_ref(), &entries, None)
    }

    fn apply(model: &mut Model, records: &[Record]) {
        for record in records {
            match record {
                Record::Entry(entry) => model.append(entry.clone()),
                Record::HardState(hard_state) => model.hard_state = Some(*hard_state),
            }
        }
    }

    fn run(&mut self, operation: &Operation) -> Result<(), TestCaseError> {
        let poisoned = self
            .storage
            .as_ref()
            .is_some_and(|storage| storage.poisoned().is_some());
        if poisoned && !matches!(operation, Operation::Crash { .. }) {
            return Ok(()); // a poisoned node stops; only a restart follows
        }
        match *operation {
            Operation::Persist {
                overwrite,
                count,
                with_hard_state,
            } => {
                let records = self.ready(overwrite, count, with_hard_state);
                self.persist(&records)
                    .map_err(|error| TestCaseError::fail(error.to_string()))?;
                Harness::apply(&mut self.model, &records);
            }
            Operation::PersistFailingSync {
                overwrite,
                count,
                with_hard_state,
            } => {
                let records = self.ready(overwrite, count, with_hard_state);
                self.disk.set_fail_syncs(true);
                let result = self.persist(&records);
                self.disk.set_fail_syncs(false);
                prop_assert!(result.is_err(), "persist acknowledged a failed fsync");
                self.interrupted = Some(records);
            }
            Operation::PersistDiskFull { count } => {
                let records = self.ready(0, count, true);
                self.disk.set_full(true);
                let result = self.persist(&records);
                self.disk.set_full(false);
                prop_assert!(
                    matches!(result, Err(StorageError::NoSpace { .. })),
                    "persist on a full disk: {result:?}"
                );
            }
            Operation::SaveSnapshot { behind } => {
                let last = self.model.last_index();
                let index = last.saturating_sub(behind).max(self.model.snapshot_index());
                let Some(term) = self
                    .model
                    .log
                    .iter()
                    .find(|entry| entry.index.0 == index)
                    .map(|entry| entry.term.0)
                else {
                    return Ok(()); // nothing new to compact
                };
                let snapshot = snapshot(index, term);
                let storage = self.storage.as_mut().expect("storage is open");
                storage
                    .save_snapshot(&snapshot)
                    .map_err(|error| TestCaseError::fail(error.to_string()))?;
                self.model.log.retain(|entry| entry.index.0 > index);
                self.model.snapshot = Some(snapshot);
            }
            Operation::SaveSnapshotFailingSync { behind } => {
                let last = self.model.last_index();
                let index = last.saturating_sub(behind).max(self.model.snapshot_index());
                let Some(term) = self
                    .model
                    .log
                    .iter()
                    .find(|entry| entry.index.0 == index)
                    .map(|entry| entry.term.0)
                else {
                    return Ok(());
                };
                let storage = self.storage.as_mut().expect("storage is open");
                self.disk.set_fail_syncs(true);
                let result = storage.save_snapshot(&snapshot(index, term));
                self.disk.set_fail_syncs(false);
                prop_assert!(result.is_err(), "save_snapshot acknowledged a failed fsync");
                prop_assert!(storage.poisoned().is_some());
            }
            Operation::InstallSnapshot { ahead } => {
                let index = self.model.last_index() + ahead;
                if index == 0 {
                    return Ok(());
                }
                self.term += 1;
                let snapshot = snapshot(index, self.term);
                let hard_state = HardState {
                    term: Term(self.term),
                    vote: None,
                    commit: Index(index),
                };
                let storage = self.storage.as_mut().expect("storage is open");
                storage
                    .persist(Some(&hard_state), &[], Some(&snapshot))
                    .map_err(|error| TestCaseError::fail(error.to_string()))?;
                self.model.log.clear();
                self.model.snapshot = Some(snapshot);
                self.model.hard_state = Some(hard_state);
            }
            Operation::Crash { tear } => self.crash(tear)?,
        }
        Ok(())
    }

    fn crash(&mut self, tear: Tear) -> Result<(), TestCaseError> {
        self.storage = None;
        let torn = match tear {
            Tear::None => {
                self.disk.crash();
                None
            }
            Tear::Prefix => self.disk.crash_tearing_last_write(),
            Tear::ZeroedRange => self.disk.crash_zeroing_in_last_write(),
        };
        let (storage, recovered) = open(&self.disk);
        self.storage = Some(storage);
        let interrupted = self.interrupted.take().unwrap_or_default();
        if self.model.matches(&recovered) {
            return Ok(());
        }
        // A Ready is all or nothing; only a torn write (whose zeroed range
        // happened to cover only zero bytes) may leave a whole interrupted
        // Ready behind.
        let mut whole = self.model.clone();
        Harness::apply(&mut whole, &interrupted);
        if torn.is_some() && whole.matches(&recovered) {
            self.model = whole;
            return Ok(());
        }
        Err(TestCaseError::fail(format!(
            "recovered state matches no allowed state\n  recovered: {:?}\n  acknowledged: \
             {:?}\n  interrupted: {interrupted:?}\n  torn: {torn:?}",
            recovered.state, self.model
        )))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn crashes_lose_exactly_the_unacknowledged_suffix(
        seed in any::<u64>(),
        operations in proptest::collection::vec(operation(), 1..40),
    ) {
        let disk = SimDisk::new(seed);
        let (storage, recovered) = open(&disk);
        prop_assert!(recovered.fresh);
        let mut harness = Harness {
            disk,
            storage: Some(storage),
            model: Model::default(),
            term: 1,
            interrupted: None,
        };
        for operation in &operations {
            harness.run(operation)?;
        }
        harness.crash(Tear::None)?;
    }
}
