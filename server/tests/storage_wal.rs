//! Guards the durability contract of Cairn's storage: what `persist` acknowledged
//! survives a restart; a torn tail is cut and the records before it kept;
//! corruption in the middle of the log is refused with an error naming the
//! segment file and offset; a failed fsync or a full disk poisons the storage
//! instead of acknowledging anything that is not durable; snapshots release
//! the WAL they cover; a fresh data directory is small.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_core::raft::{
    ConfState, Entry, EntryKind, HardState, Index, NodeId, Snapshot, SnapshotMetadata, Term,
};
use cairn_server::storage::{
    Disk, Durability, OsDisk, RaftStorage, Recovered, SimDisk, StorageConfig, StorageError,
};

const DATA: &str = "/data";

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        term: Term(term),
        index: Index(index),
        kind: EntryKind::Normal,
        data: format!("entry {index} of term {term}").into_bytes(),
    }
}

fn entries(first: u64, last: u64, term: u64) -> Vec<Entry> {
    (first..=last).map(|index| entry(index, term)).collect()
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term: Term(term),
        vote: Some(NodeId(vote)),
        commit: Index(commit),
    }
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
        data: format!("state machine at {index}").into_bytes(),
    }
}

fn small_segments() -> StorageConfig {
    StorageConfig {
        segment_bytes_max: 300,
    }
}

fn open(disk: &SimDisk, config: StorageConfig) -> (RaftStorage, Recovered) {
    try_open(disk, config).expect("storage opens")
}

fn try_open(
    disk: &SimDisk,
    config: StorageConfig,
) -> Result<(RaftStorage, Recovered), StorageError> {
    let disk: Arc<dyn Disk> = Arc::new(disk.clone());
    RaftStorage::open_with_config(disk, Path::new(DATA), config)
}

fn wal_files(disk: &SimDisk) -> Vec<PathBuf> {
    disk.file_paths()
        .into_iter()
        .filter(|path| path.extension().is_some_and(|e| e == "wal"))
        .collect()
}

/// A unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("cairn-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn many_readys_round_trip_through_a_restart() {
    let disk = SimDisk::new(1);
    let (mut storage, recovered) = open(&disk, small_segments());
    assert!(recovered.fresh);
    for index in 1..=100 {
        let state = hard_state(index / 10 + 1, 1, index.saturating_sub(1));
        storage
            .persist(Some(&state), &[entry(index, index / 10 + 1)], None)
            .unwrap();
    }
    assert!(
        storage.wal_segment_paths().len() > 5,
        "small segments roll over"
    );
    drop(storage);
    disk.crash();
    let (storage, recovered) = open(&disk, small_segments());
    assert!(!recovered.fresh);
    assert_eq!(recovered.state.hard_state, hard_state(11, 1, 99));
    let expected: Vec<Entry> = (1..=100)
        .map(|index| entry(index, index / 10 + 1))
        .collect();
    assert_eq!(recovered.state.entries, expected);
    assert_eq!(recovered.state.snapshot, None);
    assert_eq!(storage.last_index(), Index(100));
}

#[test]
fn a_later_entry_replaces_the_suffix_from_its_index() {
    let disk = SimDisk::new(1);
    let (mut storage, _) = open(&disk, StorageConfig::default());
    storage
        .persist(Some(&hard_state(1, 1, 2)), &entries(1, 10, 1), None)
        .unwrap();
    // A new leader of term 2 overwrites the uncommitted 6..=10 with 6..=7.
    storage
        .persist(Some(&hard_state(2, 2, 5)), &entries(6, 7, 2), None)
        .unwrap();
    storage.persist(None, &entries(8, 8, 2), None).unwrap();
    drop(storage);
    disk.crash();
    let (storage, recovered) = open(&disk, StorageConfig::default());
    let mut expected = entries(1, 5, 1);
    expected.extend(entries(6, 8, 2));
    assert_eq!(recovered.state.entries, expected);
    assert_eq!(recovered.state.hard_state, hard_state(2, 2, 5));
    assert_eq!(storage.last_index(), Index(8));
}

#[test]
fn overwrite_across_segments_is_replayed() {
    let disk = SimDisk::new(1);
    let (mut storage, _) = open(&disk, small_segments());
    for index in 1..=30 {
        storage.persist(None, &[entry(index, 1)], None).unwrap();
    }
    let segments_before = storage.wal_segment_paths().len();
    storage
        .persist(Some(&hard_state(2, 1, 3)), &entries(4, 5, 2), None)
        .unwrap();
    drop(storage);
    disk.crash();
    let (storage, recovered) = open(&disk, small_segments());
    let mut expected = entries(1, 3, 1);
    expected.extend(entries(4, 5, 2));
    assert_eq!(recovered.state.entries, expected);
    assert!(storage.wal_segment_paths().len() >= segments_before);
}

#[test]
fn snapshot_releases_the_wal_and_restart_is_snapshot_plus_tail() {
    let disk = SimDisk::new(1);
    let (mut storage, _) = open(&disk, small_segments());
    for index in 1..=60 {
        storage
            .persist(Some(&hard_state(3, 1, index)), &[entry(index, 3)], None)
            .unwrap();
    }
    let segments_before = storage.wal_segment_paths().len();
    storage.save_snapshot(&snapshot(50, 3)).unwrap();
    let segments_after = storage.wal_segment_paths().len();
    assert!(
        segments_after < segments_before,
        "segments {segments_before} -> {segments_after}: nothing released"
    );
    assert_eq!(storage.snapshot_index(), Index(50));
    storage
        .persist(Some(&hard_state(3, 1, 61)), &[entry(61, 3)], None)
        .unwrap();
    drop(storage);
    disk.crash();
    let (_, recovered) = open(&disk, small_segments());
    assert_eq!(recovered.state.snapshot, Some(snapshot(50, 3)));
    assert_eq!(recovered.state.entries, entries(51, 61, 3));
    assert_eq!(recovered.state.hard_state, hard_state(3, 1, 61));
}

#[test]
fn older_snapshot_files_are_removed_beyond_the_kept_count() {
    let disk = SimDisk::new(1);
    let (mut storage, _) = open(&disk, small_segments());
    for index in 1..=40 {
        storage
            .persist(Some(&hard_state(1, 1, index)), &[entry(index, 1)], None)
            .unwrap();
        if index % 10 == 0 {
            storage.save_snapshot(&snapshot(index, 1)).unwrap();
        }
    }
    let snapshot_files: Vec<PathBuf> = disk
        .file_paths()
        .into_iter()
        .filter(|path| path.extension().is_some_and(|e| e == "snap"))
        .collect();
    assert_eq!(
        snapshot_files.len(),
        cairn_server::storage::SNAPSHOT_FILES_KEPT,
        "{snapshot_files:?}"
    );
    drop(storage);
    disk.crash();
    let (_, recovered) = open(&disk, small_segments());
    assert_eq!(recovered.state.snapshot, Some(snapshot(40, 1)));
    assert!(recovered.state.entries.is_empty());
}

#[test]
fn received_snapshot_replaces_the_log() {
    let disk = SimDisk::new(1);
    let (mut storage, _) = open(&disk, StorageConfig::default());
    storage
        .persist(Some(&hard_state(1, 1, 3)), &entries(1, 8, 1), None)
        .unwrap();
    // The leader sends a snapshot at 20 (term 4); entries 4..=8 are not in it.
    storage
        .persist(
            Some(&hard_state(4, 2, 20)),
            &entries(21, 22, 4),
            Some(&snapshot(20, 4)),
        )
        .unwrap();
    drop(storage);
    disk.crash();
    let (storage, recovered) = open(&disk, StorageConfig::default());
    assert_eq!(recovered.state.snapshot, Some(snapshot(20, 4)));
    assert_eq!(recovered.state.entries, entries(21, 22, 4));
    assert_eq!(recovered.state.hard_state, hard_state(4, 2, 20));
    assert_eq!(storage.last_index(), Index(22));
}

#[test]
fn snapshot_not_named_by_the_wal_is_ignored() {
    let disk = SimDisk::new(7);
    let (mut storage, _) = open(&disk, StorageConfig::default());
    storage
        .persist(Some(&hard_state(1, 1, 2)), &entries(1, 3, 1), None)
        .unwrap();
    disk.set_fail_syncs(true);
    // The snapshot file's sync fails: the WAL never names it.
    let error = storage
        .persist(Some(&hard_state(5, 2, 30)), &[], Some(&snapshot(30, 5)))
        .unwrap_err();
    assert!(matches!(error, StorageError::Io { .. }), "{error}");
    disk.set_fail_syncs(false);
    drop(storage);
    disk.crash();
    let (_, recovered) = open(&disk, StorageConfig::default());
    assert_eq!(recovered.state.snapshot, None);
    assert_eq!(recovered.state.entries, entries(1, 3, 1));
    assert_eq!(recovered.state.hard_state, hard_state(1, 1, 2));
}

#[test]
fn hard_state_is_raised_to_the_snapshot() {
    let disk = SimDisk::new(7);
    let (mut storage, _) = open(&disk, StorageConfig::default());
    storage
        .persist(Some(&hard_state(1, 1, 2)), &entries(1, 3, 1), None)
        .unwrap();
    // A snapshot whose hard state did not become durable with it (as after a
    // crash between the marker and the hard state of one Ready).
    storage.persist(None, &[], Some(&snapshot(30, 5))).unwrap();
    drop(storage);
    disk.crash();
    let (_, recovered) = open(&disk, StorageConfig::default());
    assert_eq!(recovered.state.snapshot, Some(snapshot(30, 5)));
    assert!(recovered.state.entries.is_empty());
    let raised = HardState {
        term: Term(5),
        vote: None,
        commit: Index(30),
    };
    assert_eq!(recovered.state.hard_state, raised);
}

#[test]
fn torn_tail_is_cut_and_earlier_records_kept() {
    for seed in 0..40 {
        let disk = SimDisk::new(seed);
        let (mut storage, _) = open(&disk, StorageConfig::default());
        storage
            .persist(Some(&hard_state(1, 1, 5)), &entries(1, 5, 1), None)
            .unwrap();
        // Make the next Ready's write reach the file but not its fsync.
        disk.set_fail_syncs(true);
        storage
            .persist(Some(&hard_state(1, 1, 9)), &entries(6, 9, 1), None)
            .unwrap_err();
        disk.set_fail_syncs(false);
        drop(storage);
        let torn = disk
            .crash_tearing_last_write()
            .expect("an unsynced write to tear");
        let (mut storage, recovered) = open(&disk, StorageConfig::default());
        // The torn Ready is cut whole: a Ready is all or nothing.
        let kept = recovered.state.entries.len();
        assert_eq!(
            recovered.state.entries,
            entries(1, 5, 1),
            "seed {seed}, torn {torn:?}"
        );
        assert_eq!(
            recovered.state.hard_state,
            hard_state(1, 1, 5),
            "seed {seed}"
        );
        // The cut segment accepts new writes, and they survive.
        let next = kept as u64 + 1;
        storage
            .persist(Some(&hard_state(2, 1, next)), &[entry(next, 2)], None)
            .unwrap();
        drop(storage);
        disk.crash();
        let (_, recovered) = open(&disk, StorageConfig::default());
        assert_eq!(
            recovered.state.entries.last(),
            Some(&entry(next, 2)),
            "seed {seed}"
        );
        assert_eq!(recovered.state.entries.len(), kept + 1, "seed {seed}");
    }
}

#[test]
fn write_torn_by_missing_pages_is_cut_not_refused() {
    for seed in 0..40 {
        let disk = SimDisk::new(seed);
        let (mut storage, _) = open(&disk, StorageConfig::default());
        storage
            .persist(Some(&hard_state(1, 1, 5)), &entries(1, 5, 1), None)
            .unwrap();
        disk.set_fail_syncs(true);
        storage
            .persist(Some(&hard_state(1, 1, 9)), &entries(6, 9, 1), None)
            .unwrap_err();
        disk.set_fail_syncs(false);
        drop(storage);
        // The file keeps the batch's length, with a hole of zeros somewhere
        // inside it (possibly with whole valid records after the hole).
        let torn = disk
            .crash_zeroing_in_last_write()
            .expect("an unsynced write to tear");
        let (_, recovered) = open(&disk, StorageConfig::default());
        let state = recovered.state;
        assert!(
            state.entries == entries(1, 5, 1) || state.entries == entries(1, 9, 1),
            "seed {seed}, torn {torn:?}: {:?}",
            state.entries
        );
    }
}

#[test]
fn zero_filled_tail_is_cut() {
    let disk = SimDisk::new(1);
    let (mut storage, _) = open(&disk, StorageConfig::default());
    storage
        .persist(Some(&hard_state(1, 1, 3)), &entries(1, 3, 1), None)
        .unwrap();
    let segment = storage.wal_segment_paths().pop().unwrap();
    drop(storage);
    // A file system that extended the file but never wrote the data.
    let mut file = disk.open_append(&segment).unwrap();
    file.append(&[0u8; 4096]).unwrap();
    file.sync().unwrap();
    drop(file);
    let (_, recovered) = open(&disk, StorageConfig::default());
    assert_eq!(recovered.state.entries, entries(1, 3, 1));
}

#[test]
fn bit_flip_in_the_middle_of_the_log_is_refused_naming_file_and_offset() {
    let disk = SimDisk::new(1);
    let (mut storage, _) = open(&disk, StorageConfig::default());
    for index in 1..=10 {
        storage
            .persist(Some(&hard_state(1, 1, index)), &[entry(index, 1)], None)
            .unwrap();
    }
    let segment = storage.wal_segment_paths().pop().unwrap();
    let length = disk.file_len(&segment).unwrap();
    drop(storage);
    let offset = length / 2;
    disk.flip_bit(&segment, offset, 4).unwrap();
    let error = try_open(&disk, StorageConfig::default()).unwrap_err();
    let StorageError::Corrupted {
        segment: reported,
        offset: reported_offset,
        ..
    } = &error
    else {
        panic!("expected Corrupted, got {error}");
    };
    assert_eq!(reported, &segment);
    assert!(
        *reported_offset <= offset,
        "bad record at {reported_offset} after the flip at {offset}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&segment.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!("offset {reported_offset}")),
        "{message}"
    );
    assert!(message.contains("bytes follow the batch"), "{message}");
    // Refused every time: opening did not "repair" it.
    assert!(try_open(&disk, StorageConfig::default()).is_err());
}

#[test]
fn every_bit_flip_in_a_synced_log_is_refused_or_cuts_only_the_last_ready() {
    let write = |disk: &SimDisk, readys: u64| {
        let (mut storage, _) = open(disk, StorageConfig::default());
        for index in 1..=readys {
            storage
                .persist(Some(&hard_state(1, 1, index)), &[entry(index, 1)], None)
                .unwrap();
        }
        storage.wal_segment_paths().pop().unwrap()
    };
    let disk = SimDisk::new(1);
    let segment = write(&disk, 2);
    let last_ready_start = disk.file_len(&segment).unwrap();
    let length = {
        let disk = SimDisk::new(1);
        write(&disk, 3);
        disk.file_len(&segment).unwrap()
    };
    for byte in 0..length {
        let flipped = SimDisk::new(1);
        write(&flipped, 3);
        flipped.flip_bit(&segment, byte, (byte % 8) as u8).unwrap();
        match try_open(&flipped, StorageConfig::default()) {
            Err(StorageError::Corrupted {
                segment: reported,
                offset,
                ..
            }) => {
                assert_eq!(reported, segment);
                assert!(offset <= byte, "flip at {byte} reported at {offset}");
            }
            Err(other) => panic!("flip at {byte}: unexpected error {other}"),
            Ok((_, recovered)) => {
                // Damage in the last Ready is indistinguishable from a torn
                // write: that Ready is cut whole, never applied.
                assert!(byte >= last_ready_start, "flip at {byte} silently accepted");
                assert_eq!(recovered.state.entries, entries(1, 2, 1), "flip at {byte}");
                assert_eq!(
                    recovered.state.hard_state,
                    hard_state(1, 1, 2),
                    "flip at {byte}"
                );
            }
        }
    }
}

#[test]
fn damage_in_a_segment_that_is_not_the_last_is_refused() {
    let disk = SimDisk::new(1);
    let (mut storage, _) = open(&disk, small_segments());
    for index in 1..=30 {
        storage.persist(None, &[entry(index, 1)], None).unwrap();
    }
    let first = storage.wal_segment_paths()[0].clone();
    drop(storage);
    let length = disk.file_len(&first).unwrap();
    disk.truncate(&first, length - 3).unwrap();
    let error = try_open(&disk, small_segments()).unwrap_err();
    let message = error.to_string();
    assert!(message.contains(&first.display().to_string()), "{message}");
    assert!(message.contains("not the last"), "{message}");
}

#[test]
fn missing_middle_segment_is_refused() {
    let disk = SimDisk::new(1);
    let (mut storage, _) = open(&disk, small_segments());
    for index in 1..=40 {
        storage.persist(None, &[entry(index, 1)], None).unwrap();
    }
    let segments = storage.wal_segment_paths();
    assert!(segments.len() >= 3);
    drop(storage);
    disk.remove(&segments[1]).unwrap();
    let error = try_open(&disk, small_segments()).unwrap_err();
    assert!(
        error.to_string().contains("a segment is missing"),
        "{error}"
    );
}

#[test]
fn failed_fsync_poisons_the_storage() {
    let disk = SimDisk::new(1);
    let (mut storage, _) = open(&disk, StorageConfig::default());
    storage
        .persist(Some(&hard_state(1, 1, 1)), &entries(1, 1, 1), None)
        .unwrap();
    disk.set_fail_syncs(true);
    let error = storage.persist(None, &entries(2, 2, 1), None).unwrap_err();
    assert!(error.to_string().contains("fsync failure"), "{error}");
    disk.set_fail_syncs(false);
    // Never retried: every later call is refused, even though syncs work again.
    let syncs = disk.stats().syncs;
    for attempt in [
        storage.persist(None, &entries(2, 2, 1), None),
        storage.persist(Some(&hard_state(2, 1, 1)), &[], None),
        storage.save_snapshot(&snapshot(1, 1)),
        storage.write_metadata(b"member"),
    ] {
        let error = attempt.unwrap_err();
        assert!(matches!(error, StorageError::Poisoned { .. }), "{error}");
        assert!(error.to_string().contains("must stop"), "{error}");
    }
    assert_eq!(
        disk.stats().syncs,
        syncs,
        "a poisoned storage must not sync"
    );
    assert!(storage.poisoned().is_some());
    drop(storage);
    disk.crash();
    let (_, recovered) = open(&disk, StorageConfig::default());
    assert_eq!(recovered.state.entries, entries(1, 1, 1));
}

#[test]
fn full_disk_is_refused_and_nothing_unsynced_is_reported_durable() {
    let disk = SimDisk::new(1);
    let (mut storage, _) = open(&disk, small_segments());
    storage
        .persist(Some(&hard_state(1, 1, 1)), &entries(1, 2, 1), None)
        .unwrap();
    disk.set_full(true);
    let error = storage
        .persist(Some(&hard_state(1, 1, 2)), &entries(3, 3, 1), None)
        .unwrap_err();
    assert!(matches!(error, StorageError::NoSpace { .. }), "{error}");
    assert!(
        error.to_string().contains("no space left on device"),
        "{error}"
    );
    disk.set_full(false);
    let error = storage.persist(None, &entries(3, 3, 1), None).unwrap_err();
    assert!(matches!(error, StorageError::Poisoned { .. }), "{error}");
    drop(storage);
    disk.crash();
    let (_, recovered) = open(&disk, small_segments());
    assert_eq!(recovered.state.entries, entries(1, 2, 1));
    assert_eq!(recovered.state.hard_state, hard_state(1, 1, 1));
}

#[test]
fn full_disk_during_rollover_is_refused() {
    let disk = SimDisk::new(1);
    let (mut storage, _) = open(&disk, small_segments());
    let mut acknowledged = 0;
    disk.set_full(false);
    for index in 1..=100 {
        if index == 10 {
            disk.set_full(true);
        }
        match storage.persist(None, &[entry(index, 1)], None) {
            Ok(()) => acknowledged = index,
            Err(error) => {
                assert!(matches!(error, StorageError::NoSpace { .. }), "{error}");
                break;
            }
        }
    }
    assert_eq!(acknowledged, 9);
    disk.set_full(false);
    drop(storage);
    disk.crash();
    let (_, recovered) = open(&disk, small_segments());
    assert_eq!(recovered.state.entries, entries(1, 9, 1));
}

#[test]
fn corrupt_snapshot_named_by_the_wal_is_refused() {
    let disk = SimDisk::new(1);
    let (mut storage, _) = open(&disk, StorageConfig::default());
    storage
        .persist(Some(&hard_state(1, 1, 5)), &entries(1, 5, 1), None)
        .unwrap();
    storage.save_snapshot(&snapshot(5, 1)).unwrap();
    drop(storage);
    let file = disk
        .file_paths()
        .into_iter()
        .find(|path| path.extension().is_some_and(|e| e == "snap"))
        .unwrap();
    disk.flip_bit(&file, 30, 0).unwrap();
    let error = try_open(&disk, StorageConfig::default()).unwrap_err();
    assert!(
        matches!(error, StorageError::SnapshotCorrupted { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains(&file.display().to_string()),
        "{error}"
    );
    assert!(error.to_string().contains("checksum mismatch"), "{error}");
}

#[test]
fn metadata_round_trips_and_a_lost_wal_is_detected() {
    let disk = SimDisk::new(1);
    let (mut storage, recovered) = open(&disk, StorageConfig::default());
    assert!(recovered.fresh);
    assert_eq!(recovered.metadata, None);
    storage
        .write_metadata(b"cluster 7, member 3, name n3")
        .unwrap();
    storage
        .write_metadata(b"cluster 7, member 3, name n3b")
        .unwrap();
    drop(storage);
    disk.crash();
    let (_, recovered) = open(&disk, StorageConfig::default());
    assert!(!recovered.fresh);
    assert_eq!(
        recovered.metadata.as_deref(),
        Some(&b"cluster 7, member 3, name n3b"[..])
    );
    for segment in wal_files(&disk) {
        disk.remove(&segment).unwrap();
    }
    let error = try_open(&disk, StorageConfig::default()).unwrap_err();
    assert!(matches!(error, StorageError::MissingWal { .. }), "{error}");
}

#[test]
fn fresh_data_directory_is_small() {
    let disk = SimDisk::new(1);
    let (storage, _) = open(&disk, StorageConfig::default());
    let bytes = storage.size_bytes().unwrap();
    assert!(
        bytes < 1024 * 1024,
        "fresh data directory holds {bytes} bytes"
    );
    assert!(bytes > 0, "the first segment's header is durable");

    let temp = TempDir::new("fresh");
    let disk: Arc<dyn Disk> = Arc::new(OsDisk);
    let (mut storage, recovered) = RaftStorage::open(disk, &temp.0).unwrap();
    assert!(recovered.fresh);
    storage.write_metadata(b"member").unwrap();
    let on_disk: u64 = ["wal", "snap"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(temp.0.join(sub)).unwrap())
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum::<u64>()
        + std::fs::metadata(temp.0.join("meta")).unwrap().len();
    assert!(
        on_disk < 1024 * 1024,
        "fresh data directory holds {on_disk} bytes"
    );
    assert_eq!(storage.size_bytes().unwrap(), on_disk);
}

#[test]
fn os_disk_round_trip_and_torn_tail() {
    let temp = TempDir::new("os-disk");
    let config = StorageConfig {
        segment_bytes_max: 1024,
    };
    let disk: Arc<dyn Disk> = Arc::new(OsDisk);
    let (mut storage, _) = RaftStorage::open_with_config(disk.clone(), &temp.0, config).unwrap();
    for index in 1..=50 {
        storage
            .persist(Some(&hard_state(1, 1, index)), &[entry(index, 1)], None)
            .unwrap();
    }
    storage.save_snapshot(&snapshot(20, 1)).unwrap();
    storage
        .persist(Some(&hard_state(1, 1, 51)), &[entry(51, 1)], None)
        .unwrap();
    let last_segment = storage.wal_segment_paths().pop().unwrap();
    drop(storage);

    // Cut the file in the middle of its last record, as a crash could.
    let length = std::fs::metadata(&last_segment).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&last_segment)
        .unwrap();
    file.set_len(length - 5).unwrap();
    drop(file);

    let (_, recovered) = RaftStorage::open_with_config(disk.clone(), &temp.0, config).unwrap();
    assert_eq!(recovered.state.snapshot, Some(snapshot(20, 1)));
    // The last Ready (entry 51 and its hard state) was torn: cut whole.
    assert_eq!(recovered.state.entries, entries(21, 50, 1));
    assert_eq!(recovered.state.hard_state, hard_state(1, 1, 50));
    assert!(std::fs::metadata(&last_segment).unwrap().len() < length - 5);

    // Damage a record in the middle of the same file: refused, naming it.
    // Byte 20 lies in the segment header record; valid records follow it.
    let mut bytes = std::fs::read(&last_segment).unwrap();
    bytes[20] ^= 0x40;
    std::fs::write(&last_segment, &bytes).unwrap();
    let error = RaftStorage::open_with_config(disk, &temp.0, config).unwrap_err();
    assert!(
        error
            .to_string()
            .contains(&last_segment.display().to_string()),
        "{error}"
    );
}

#[test]
fn steady_snapshots_keep_the_data_directory_bounded() {
    let disk = SimDisk::new(1);
    let (mut storage, _) = open(&disk, small_segments());
    let mut sizes = Vec::new();
    for index in 1..=2000 {
        storage
            .persist(Some(&hard_state(1, 1, index)), &[entry(index, 1)], None)
            .unwrap();
        if index % 100 == 0 {
            storage.save_snapshot(&snapshot(index - 10, 1)).unwrap();
            sizes.push(storage.size_bytes().unwrap());
        }
    }
    let largest = sizes.iter().copied().max().unwrap();
    assert!(
        largest < 20_000,
        "data directory grew to {largest} bytes: {sizes:?}"
    );
    assert!(
        storage.stats().wal_segments_removed > 100,
        "{:?}",
        storage.stats()
    );
    drop(storage);
    disk.crash();
    let (_, recovered) = open(&disk, small_segments());
    assert_eq!(recovered.state.snapshot, Some(snapshot(1990, 1)));
    assert_eq!(recovered.state.entries, entries(1991, 2000, 1));
}

/// A hard state written without an fsync (only its commit moved) is lost by
/// a crash, and only it: the synced entries and hard state before it stay.
/// The next synced write makes it durable too.
#[test]
fn commit_written_unsynced_is_lost_by_a_crash_until_the_next_sync() {
    let disk = SimDisk::new(3);
    let (mut storage, _) = open(&disk, StorageConfig::default());
    storage
        .persist(Some(&hard_state(2, 1, 0)), &entries(1, 3, 2), None)
        .unwrap();
    storage
        .persist_with(Some(&hard_state(2, 1, 3)), &[], None, Durability::Written)
        .unwrap();
    drop(storage);
    disk.crash();
    let (mut storage, recovered) = open(&disk, StorageConfig::default());
    assert_eq!(recovered.state.hard_state, hard_state(2, 1, 0));
    assert_eq!(recovered.state.entries, entries(1, 3, 2));

    storage
        .persist_with(Some(&hard_state(2, 1, 2)), &[], None, Durability::Written)
        .unwrap();
    storage.persist(None, &entries(4, 4, 2), None).unwrap();
    drop(storage);
    disk.crash();
    let (_, recovered) = open(&disk, StorageConfig::default());
    assert_eq!(recovered.state.hard_state, hard_state(2, 1, 2));
    assert_eq!(recovered.state.entries, entries(1, 4, 2));
}

/// A segment that ends in an unsynced write is synced before the next one
/// starts: only the last segment may end torn, so a crash after the roll
/// over must not leave a damaged segment in the middle of the log.
#[test]
fn roll_over_syncs_an_unsynced_tail_first() {
    let disk = SimDisk::new(5);
    let (mut storage, _) = open(&disk, small_segments());
    let mut commit = 0;
    for index in 1..=40 {
        storage
            .persist(Some(&hard_state(1, 1, commit)), &[entry(index, 1)], None)
            .unwrap();
        commit = index;
        storage
            .persist_with(
                Some(&hard_state(1, 1, commit)),
                &[],
                None,
                Durability::Written,
            )
            .unwrap();
    }
    let segments = storage.wal_segment_paths();
    assert!(segments.len() > 3, "segments rolled over");
    let sealed = &segments[..segments.len() - 1];
    let lengths: Vec<u64> = sealed.iter().map(|p| disk.file_len(p).unwrap()).collect();
    drop(storage);
    let torn = disk.crash_tearing_last_write();
    assert!(torn.is_some(), "the last commit was written unsynced");
    let after: Vec<u64> = sealed.iter().map(|p| disk.file_len(p).unwrap()).collect();
    assert_eq!(after, lengths, "a sealed segment lost its unsynced tail");
    let (_, recovered) = open(&disk, small_segments());
    assert_eq!(recovered.state.entries, entries(1, 40, 1));
    assert!(recovered.state.hard_state.commit >= Index(39));
}

/// A synced persist taken in two steps (the simulator's crash inside an
/// fsync): a crash between the write and the sync loses the batch, tears it
/// (cut whole on restart) or keeps it when the sync completed unseen; the
/// log restarts from the batch before either way and takes new writes; a
/// received snapshot's marker releases the WAL only once synced.
#[test]
fn crash_between_write_and_sync_keeps_the_batch_whole_or_not_at_all() {
    type Crash = fn(&SimDisk) -> Option<cairn_server::storage::TornWrite>;
    let crashes: [(&str, Crash); 4] = [
        ("lost", |disk| {
            disk.crash();
            None
        }),
        ("torn", SimDisk::crash_tearing_last_write),
        ("zeroed", SimDisk::crash_zeroing_in_last_write),
        ("kept", SimDisk::crash_syncing_last_write),
    ];
    for seed in 0..20 {
        for (name, crash) in crashes {
            let disk = SimDisk::new(seed);
            let (mut storage, _) = open(&disk, StorageConfig::default());
            storage
                .persist(Some(&hard_state(1, 1, 5)), &entries(1, 5, 1), None)
                .unwrap();
            storage
                .write_unsynced(Some(&hard_state(2, 2, 5)), &entries(6, 9, 2), None)
                .unwrap();
            drop(storage);
            let outcome = crash(&disk);
            let (mut storage, recovered) = open(&disk, StorageConfig::default());
            let before = (entries(1, 5, 1), hard_state(1, 1, 5));
            let after = (
                [entries(1, 5, 1), entries(6, 9, 2)].concat(),
                hard_state(2, 2, 5),
            );
            let recovered_pair = (recovered.state.entries.clone(), recovered.state.hard_state);
            let context = format!("seed {seed}, {name}: {outcome:?}");
            match name {
                "kept" => assert_eq!(recovered_pair, after, "{context}"),
                // Zeros over bytes that were zeros already leave the batch whole.
                "zeroed" => assert!(
                    recovered_pair == before || recovered_pair == after,
                    "{context}: {recovered_pair:?}"
                ),
                _ => assert_eq!(recovered_pair, before, "{context}"),
            }
            let next = recovered.state.entries.len() as u64 + 1;
            storage
                .write_unsynced(Some(&hard_state(3, 1, 5)), &[entry(next, 3)], None)
                .unwrap();
            storage.sync().unwrap();
            drop(storage);
            disk.crash();
            let (_, recovered) = open(&disk, StorageConfig::default());
            assert_eq!(
                recovered.state.entries.last(),
                Some(&entry(next, 3)),
                "{context}"
            );
            assert_eq!(recovered.state.hard_state, hard_state(3, 1, 5), "{context}");
        }
    }
}

#[test]
fn received_snapshot_written_unsynced_is_installed_by_the_sync() {
    let disk = SimDisk::new(9);
    let (mut storage, _) = open(&disk, small_segments());
    for index in 1..=20 {
        storage
            .persist(Some(&hard_state(1, 1, index)), &[entry(index, 1)], None)
            .unwrap();
    }
    let segments = storage.wal_segment_paths().len();
    assert!(segments > 2, "segments rolled over");
    storage
        .write_unsynced(Some(&hard_state(2, 1, 30)), &[], Some(&snapshot(30, 2)))
        .unwrap();
    assert_eq!(
        storage.snapshot_index(),
        Index(0),
        "installed before the sync"
    );
    assert_eq!(
        storage.wal_segment_paths().len(),
        segments,
        "released early"
    );
    storage.sync().unwrap();
    assert_eq!(storage.snapshot_index(), Index(30));
    assert_eq!(storage.wal_segment_paths().len(), 1);
    drop(storage);
    disk.crash();
    let (_, recovered) = open(&disk, small_segments());
    assert_eq!(recovered.state.snapshot, Some(snapshot(30, 2)));
    assert!(recovered.state.entries.is_empty());
}
