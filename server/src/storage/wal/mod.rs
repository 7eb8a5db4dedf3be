//! [`Wal`]: the write-ahead log of Raft hard states, entries and snapshot
//! markers.
//!
//! Group commit: everything of one Ready is encoded into one batch (a
//! `BatchStart` record with the batch's length, then the records), written
//! with one append and made durable with one sync, before the driver sends
//! the messages that depend on it. The log is split into segments
//! ([`segment`]); a new segment starts once the current one reaches
//! `segment_bytes_max` (a soft bound: a batch is never split) and opens with
//! the current hard state and snapshot marker, so the segments before it can
//! be released once a snapshot covers their entries.
//!
//! Replay applies records in order: a hard state replaces the previous one;
//! an entry at index `i` replaces the replayed entry at `i` and everything
//! after it (a new leader overwriting an uncommitted suffix); a
//! `SnapshotInstalled` marker replaces the whole log; a `Compacted` marker
//! drops the entries it covers.
//!
//! A failed write or sync poisons the WAL: every later call returns
//! [`StorageError::Poisoned`]. An fsync is never retried, because after a
//! failure the kernel may already have dropped the dirty pages.

pub mod record;
pub mod segment;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_core::raft::{Entry, HardState, Index};

use self::record::{
    encode_record, BatchStart, RecordKind, SnapshotMarker, WalRecord, RECORD_HEADER_BYTES,
};
use self::segment::{scan_segment, SegmentName, SEGMENT_SUFFIX};
use super::disk::{Disk, DiskFile};
use super::error::StorageError;

/// What the WAL held on open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalReplay {
    /// The last hard state written, if any.
    pub hard_state: Option<HardState>,
    /// The last snapshot marker written, if any.
    pub snapshot: Option<SnapshotMarker>,
    /// The log entries after the snapshot, contiguous, in index order.
    pub entries: Vec<Entry>,
    /// True when the directory held no segment (a new WAL was started).
    pub created: bool,
}

/// Whether a WAL write must be durable before it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Written and fsynced: survives a crash.
    Synced,
    /// Written only: a crash may lose it (and only it, with what follows).
    /// Allowed for a hard state whose commit index alone moved, which a
    /// restarted member learns again from the leader; the next synced write
    /// makes it durable too.
    Written,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// File and directory syncs issued.
    pub syncs: u64,
    /// Bytes appended to segments.
    pub bytes_written: u64,
    /// Segments created.
    pub segments_created: u64,
    /// Segments removed after a snapshot covered them.
    pub segments_removed: u64,
}

/// The write-ahead log of one member.
#[derive(Debug)]
pub struct Wal {
    disk: Arc<dyn Disk>,
    directory: PathBuf,
    segment_bytes_max: u64,
    /// Invariant: non-empty, consecutive sequences; the last is open in `file`.
    segments: Vec<SegmentName>,
    file: Box<dyn DiskFile>,
    /// Bytes in the last segment.
    file_bytes: u64,
    /// The index of the last entry (or of the snapshot when no entry follows it).
    last_index: Index,
    /// The last hard state written, carried into each new segment.
    hard_state: Option<HardState>,
    /// Bytes were appended to the open segment without a sync since the
    /// last one (a [`Durability::Written`] batch).
    unsynced: bool,
    /// A batch of [`Wal::append_unsynced`] waits for the [`Wal::sync`] its
    /// caller owes. Invariant: no other batch is written meanwhile.
    sync_owed: bool,
    /// The last snapshot marker written, carried into each new segment.
    snapshot: Option<SnapshotMarker>,
    /// Set by the first failed write or sync; the WAL refuses all work after.
    poisoned: Option<String>,
    stats: WalStats,
}

impl Wal {
    /// Opens the WAL in `directory` (creating it when absent), replays it and
    /// cuts a torn tail off the last segment.
    pub fn open(
        disk: Arc<dyn Disk>,
        directory: &Path,
        segment_bytes_max: u64,
    ) -> Result<(Wal, WalReplay), StorageError> {
        assert!(segment_bytes_max > 0, "segment_bytes_max must be positive");
        let directory = directory.to_path_buf();
        disk.create_dir_all(&directory)
            .map_err(|error| StorageError::io("create directory", &directory, error))?;
        let mut segments = Vec::new();
        let names = disk
            .list_dir(&directory)
            .map_err(|error| StorageError::io("list directory", &directory, error))?;
        for file_name in names {
            match SegmentName::parse(&file_name) {
                Some(name) => segments.push(name),
                None if file_name.ends_with(SEGMENT_SUFFIX) => {
                    return Err(StorageError::Corrupted {
                        segment: directory.join(&file_name),
                        offset: 0,
                        reason: "malformed segment file name".to_string(),
                    });
                }
                None => {
                    let file = directory.join(&file_name);
                    let file = file.display();
                    tracing::warn!(%file, "ignoring an unknown file in the WAL directory");
                }
            }
        }
        segments.sort();
        for pair in segments.windows(2) {
            if pair[1].sequence != pair[0].sequence + 1 {
                return Err(StorageError::Corrupted {
                    segment: directory.join(pair[1].file_name()),
                    offset: 0,
                    reason: format!(
                        "segment sequence {} follows {}: a segment is missing",
                        pair[1].sequence, pair[0].sequence
                    ),
                });
            }
        }

        let mut replayer = Replayer::default();
        let mut next_sequence = 1;
        let segment_count = segments.len();
        for (position, name) in segments.clone().into_iter().enumerate() {
            let path = directory.join(name.file_name());
            let bytes = disk
                .read(&path)
                .map_err(|error| StorageError::io("read", &path, error))?;
            let is_last = position + 1 == segment_count;
            let scanned = scan_segment(&path, name, &bytes, is_last)?;
            for (offset, record) in scanned.records {
                replayer.apply(&path, offset, record)?;
            }
            next_sequence = name.sequence + 1;
            if let Some(torn) = scanned.torn_tail {
                tracing::warn!(
                    segment = %path.display(),
                    offset = torn.offset,
                    file_bytes = bytes.len(),
                    reason = %torn.reason,
                    "cutting a torn write off the end of the WAL"
                );
                if scanned.valid_bytes == 0 {
                    // Not even the header survived: the segment was created
                    // but never made durable. Nothing can depend on it.
                    disk.remove(&path)
                        .map_err(|error| StorageError::io("remove", &path, error))?;
                    disk.sync_dir(&directory)
                        .map_err(|error| StorageError::io("sync directory", &directory, error))?;
                    segments.pop();
                    next_sequence = name.sequence;
                } else {
                    disk.truncate(&path, scanned.valid_bytes)
                        .map_err(|error| StorageError::io("truncate", &path, error))?;
                }
            }
        }
        let replay = replayer.finish(&directory)?;
        let last_index = replay
            .entries
            .last()
            .map(|entry| entry.index)
            .or(replay.snapshot.map(|marker| marker.index))
            .unwrap_or_default();

        let mut stats = WalStats::default();
        let created = segment_count == 0;
        let (file, file_bytes) = match segments.last() {
            Some(last) => {
                let path = directory.join(last.file_name());
                let file = disk
                    .open_append(&path)
                    .map_err(|error| StorageError::io("open for appending", &path, error))?;
                let bytes = disk
                    .file_len(&path)
                    .map_err(|error| StorageError::io("read the length of", &path, error))?;
                (file, bytes)
            }
            None => {
                let name = SegmentName {
                    sequence: next_sequence,
                    first_index: Index(last_index.0 + 1),
                };
                let (file, bytes) = create_segment(
                    &*disk,
                    &directory,
                    name,
                    replay.hard_state,
                    replay.snapshot,
                    &mut stats,
                )?;
                segments.push(name);
                (file, bytes)
            }
        };
        let wal = Wal {
            disk,
            directory,
            segment_bytes_max,
            segments,
            file,
            file_bytes,
            last_index,
            hard_state: replay.hard_state,
            unsynced: false,
            sync_owed: false,
            snapshot: replay.snapshot,
            poisoned: None,
            stats,
        };
        wal.check_invariants();
        tracing::info!(
            directory = %wal.directory.display(),
            segments = wal.segments.len(),
            entries = replay.entries.len(),
            last_index = wal.last_index.0,
            "opened WAL"
        );
        Ok((wal, WalReplay { created, ..replay }))
    }

    /// Appends one Ready's worth of records with one write and, for
    /// [`Durability::Synced`], one sync: first the marker of a snapshot
    /// received from the leader (if any), then `entries`, then `hard_state`.
    /// Returns once they are written (and durable, when synced).
    pub fn append(
        &mut self,
        snapshot_installed: Option<SnapshotMarker>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        durability: Durability,
    ) -> Result<(), StorageError> {
        assert!(
            durability == Durability::Synced
                || (snapshot_installed.is_none() && entries.is_empty()),
            "entries and snapshot markers must be synced ({} entries written unsynced)",
            entries.len()
        );
        self.append_batch(snapshot_installed, entries, hard_state, durability)
    }

    /// [`Wal::append`] of a batch that must be synced, in two steps: this
    /// writes it, and the caller owes the [`Wal::sync`] that makes it
    /// durable before anything depends on it and before any other write.
    /// The driver takes the two steps when the simulator stretches an fsync
    /// over simulated time, so a crash can land inside it.
    pub fn append_unsynced(
        &mut self,
        snapshot_installed: Option<SnapshotMarker>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), StorageError> {
        self.append_batch(snapshot_installed, entries, hard_state, Durability::Written)?;
        self.sync_owed = self.unsynced;
        Ok(())
    }

    /// Makes every batch written so far durable (one sync of the open
    /// segment; nothing when nothing is unsynced), settling the sync owed
    /// by [`Wal::append_unsynced`].
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.refuse_if_poisoned()?;
        if self.unsynced {
            self.sync_segment()?;
        }
        self.sync_owed = false;
        Ok(())
    }

    fn append_batch(
        &mut self,
        snapshot_installed: Option<SnapshotMarker>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        durability: Durability,
    ) -> Result<(), StorageError> {
        assert!(
            !self.sync_owed,
            "a WAL batch written before the sync owed for the previous one"
        );
        self.refuse_if_poisoned()?;
        if snapshot_installed.is_none() && entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        let mut last_index = self.last_index;
        let mut snapshot_index = self.snapshot.map(|marker| marker.index).unwrap_or_default();
        if let Some(marker) = snapshot_installed {
            assert!(
                marker.index >= snapshot_index,
                "installed snapshot index {} < current snapshot index {}",
                marker.index,
                snapshot_index
            );
            snapshot_index = marker.index;
            last_index = marker.index;
        }
        for (position, entry) in entries.iter().enumerate() {
            if position == 0 {
                assert!(
                    entry.index > snapshot_index,
                    "entry index {} <= snapshot index {snapshot_index}",
                    entry.index
                );
                assert!(
                    entry.index.0 <= last_index.0 + 1,
                    "entry index {} leaves a gap after last index {last_index}",
                    entry.index
                );
            } else {
                let previous = entries[position - 1].index;
                assert!(
                    entry.index.0 == previous.0 + 1,
                    "entry index {} does not follow {previous}",
                    entry.index
                );
            }
            last_index = entry.index;
        }

        let mut buffer = begin_batch();
        if let Some(marker) = snapshot_installed {
            encode_record(RecordKind::SnapshotInstalled, &marker, &mut buffer)?;
        }
        for entry in entries {
            encode_record(RecordKind::Entry, entry, &mut buffer)?;
        }
        if let Some(hard_state) = hard_state {
            encode_record(RecordKind::HardState, hard_state, &mut buffer)?;
        }
        self.write_batch(&mut buffer, durability)?;
        self.last_index = last_index;
        if let Some(marker) = snapshot_installed {
            self.snapshot = Some(marker);
        }
        if let Some(hard_state) = hard_state {
            self.hard_state = Some(*hard_state);
        }
        self.check_invariants();
        Ok(())
    }

    /// Records (durably) that a local snapshot at `marker` now covers the log
    /// up to its index; entries after it stay.
    pub fn mark_compacted(&mut self, marker: SnapshotMarker) -> Result<(), StorageError> {
        assert!(
            !self.sync_owed,
            "a compaction marker written before the sync owed for the previous batch"
        );
        self.refuse_if_poisoned()?;
        let current = self.snapshot.map(|marker| marker.index).unwrap_or_default();
        assert!(
            marker.index >= current,
            "compaction index {} < snapshot index {current}",
            marker.index
        );
        let mut buffer = begin_batch();
        encode_record(RecordKind::Compacted, &marker, &mut buffer)?;
        self.write_batch(&mut buffer, Durability::Synced)?;
        self.snapshot = Some(marker);
        self.last_index = self.last_index.max(marker.index);
        self.check_invariants();
        Ok(())
    }

    /// Removes the segments whose entries all lie at or below `index` (a
    /// durable snapshot covers them). The last segment always stays.
    pub fn release_before(&mut self, index: Index) -> Result<(), StorageError> {
        self.refuse_if_poisoned()?;
        let snapshot_index = self.snapshot.map(|marker| marker.index).unwrap_or_default();
        assert!(
            index <= snapshot_index,
            "release up to {index} beyond the durable snapshot at {snapshot_index}"
        );
        // Every live entry of segment k has an index below the first index of
        // segment k + 1, and segment k + 1 opens with the hard state and
        // snapshot marker, so segment k is dead once that first index is at
        // most index + 1. Remove oldest first, syncing the directory after
        // each removal, so a crash leaves a contiguous run of segments.
        while self.segments.len() >= 2 && self.segments[1].first_index.0 <= index.0 + 1 {
            let path = self.directory.join(self.segments[0].file_name());
            let result = self
                .disk
                .remove(&path)
                .map_err(|error| StorageError::io("remove", &path, error))
                .and_then(|()| self.sync_directory());
            self.poison_on_error(result)?;
            tracing::debug!(segment = %path.display(), index = index.0, "released WAL segment");
            self.segments.remove(0);
            self.stats.segments_removed += 1;
        }
        self.check_invariants();
        Ok(())
    }

    /// The index of the last entry, or of the snapshot when no entry follows it.
    pub fn last_index(&self) -> Index {
        self.last_index
    }

    /// The segment files, oldest first.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments
            .iter()
            .map(|name| self.directory.join(name.file_name()))
            .collect()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> WalStats {
        self.stats
    }

    /// The failure that poisoned the WAL, if any.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    fn refuse_if_poisoned(&self) -> Result<(), StorageError> {
        match &self.poisoned {
            Some(cause) => Err(StorageError::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn poison_on_error<T>(&mut self, result: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Err(error) = &result {
            tracing::error!(%error, "WAL write failed; refusing all further writes");
            self.poisoned = Some(error.to_string());
        }
        result
    }

    /// Writes the batch in `buffer` (from [`begin_batch`]) to the current
    /// segment (rolling over first when it is full) with one append and, for
    /// [`Durability::Synced`], one sync (which also makes every earlier
    /// unsynced batch durable).
    fn write_batch(
        &mut self,
        buffer: &mut [u8],
        durability: Durability,
    ) -> Result<(), StorageError> {
        finish_batch(buffer);
        if self.file_bytes >= self.segment_bytes_max {
            let result = self.roll_over();
            self.poison_on_error(result)?;
        }
        let path = self.current_path();
        let result = self
            .file
            .append(buffer)
            .map_err(|error| StorageError::io("append to", &path, error));
        self.poison_on_error(result)?;
        self.file_bytes += buffer.len() as u64;
        self.stats.bytes_written += buffer.len() as u64;
        self.unsynced = true;
        if durability == Durability::Synced {
            self.sync_segment()?;
        }
        Ok(())
    }

    /// Syncs the open segment.
    fn sync_segment(&mut self) -> Result<(), StorageError> {
        let path = self.current_path();
        let result = self
            .file
            .sync()
            .map_err(|error| StorageError::io("sync", &path, error));
        self.poison_on_error(result)?;
        self.stats.syncs += 1;
        self.unsynced = false;
        Ok(())
    }

    fn roll_over(&mut self) -> Result<(), StorageError> {
        // Only the last segment may end torn: finish this one durably first.
        if self.unsynced {
            self.sync_segment()?;
        }
        let previous = *self.segments.last().expect("the WAL always has a segment");
        let name = SegmentName {
            sequence: previous.sequence + 1,
            first_index: Index(self.last_index.0 + 1),
        };
        let (file, bytes) = create_segment(
            &*self.disk,
            &self.directory,
            name,
            self.hard_state,
            self.snapshot,
            &mut self.stats,
        )?;
        tracing::debug!(
            sequence = name.sequence,
            first_index = name.first_index.0,
            "new WAL segment"
        );
        self.segments.push(name);
        self.file = file;
        self.file_bytes = bytes;
        Ok(())
    }

    fn sync_directory(&mut self) -> Result<(), StorageError> {
        self.disk
            .sync_dir(&self.directory)
            .map_err(|error| StorageError::io("sync directory", &self.directory, error))?;
        self.stats.syncs += 1;
        Ok(())
    }

    fn current_path(&self) -> PathBuf {
        let last = self.segments.last().expect("the WAL always has a segment");
        self.directory.join(last.file_name())
    }

    fn check_invariants(&self) {
        assert!(!self.segments.is_empty(), "the WAL has no segment");
        if cfg!(debug_assertions) {
            for pair in self.segments.windows(2) {
                assert_eq!(
                    pair[1].sequence,
                    pair[0].sequence + 1,
                    "segment sequences not consecutive: {pair:?}"
                );
            }
            if let Some(marker) = self.snapshot {
                assert!(
                    marker.index <= self.last_index,
                    "snapshot index {} > last index {}",
                    marker.index,
                    self.last_index
                );
            }
        }
    }
}

/// Bytes of a [`BatchStart`] frame (its payload is one fixed-width u64).
const BATCH_START_BYTES: usize = RECORD_HEADER_BYTES + 8;

/// A buffer with room for the [`BatchStart`] frame, which [`finish_batch`]
/// fills in once the records after it are encoded.
fn begin_batch() -> Vec<u8> {
    vec![0; BATCH_START_BYTES]
}

/// Writes the [`BatchStart`] frame at the front of a [`begin_batch`] buffer.
fn finish_batch(buffer: &mut [u8]) {
    assert!(
        buffer.len() > BATCH_START_BYTES,
        "empty batch ({} bytes)",
        buffer.len()
    );
    let batch = BatchStart {
        bytes: (buffer.len() - BATCH_START_BYTES) as u64,
    };
    let mut frame = Vec::with_capacity(BATCH_START_BYTES);
    encode_record(RecordKind::BatchStart, &batch, &mut frame)
        .expect("a batch start is far below the record bound");
    assert_eq!(
        frame.len(),
        BATCH_START_BYTES,
        "batch start frame is {} bytes, expected {BATCH_START_BYTES}",
        frame.len()
    );
    buffer[..BATCH_START_BYTES].copy_from_slice(&frame);
}

/// Creates segment `name`, writes its header (and the carried hard state and
/// snapshot marker), and makes file and directory entry durable.
fn create_segment(
    disk: &dyn Disk,
    directory: &Path,
    name: SegmentName,
    hard_state: Option<HardState>,
    snapshot: Option<SnapshotMarker>,
    stats: &mut WalStats,
) -> Result<(Box<dyn DiskFile>, u64), StorageError> {
    let path = directory.join(name.file_name());
    let mut buffer = Vec::new();
    encode_record(RecordKind::SegmentHeader, &name.header(), &mut buffer)?;
    if let Some(marker) = snapshot {
        // Carried as Compacted: it must not clear entries written after the
        // original marker in earlier segments.
        encode_record(RecordKind::Compacted, &marker, &mut buffer)?;
    }
    if let Some(hard_state) = hard_state {
        encode_record(RecordKind::HardState, &hard_state, &mut buffer)?;
    }
    let mut file = disk
        .create(&path)
        .map_err(|error| StorageError::io("create", &path, error))?;
    file.append(&buffer)
        .map_err(|error| StorageError::io("append to", &path, error))?;
    file.sync()
        .map_err(|error| StorageError::io("sync", &path, error))?;
    disk.sync_dir(directory)
        .map_err(|error| StorageError::io("sync directory", directory, error))?;
    stats.syncs += 2;
    stats.bytes_written += buffer.len() as u64;
    stats.segments_created += 1;
    Ok((file, buffer.len() as u64))
}

/// Rebuilds the log from records in WAL order.
#[derive(Debug, Default)]
struct Replayer {
    hard_state: Option<HardState>,
    snapshot: Option<SnapshotMarker>,
    /// Ascending by index; may have gaps until a later marker covers them.
    entries: Vec<Entry>,
    /// Where each entry of `entries` was read (segment, offset).
    positions: Vec<(PathBuf, u64)>,
}

impl Replayer {
    fn apply(
        &mut self,
        segment: &Path,
        offset: u64,
        record: WalRecord,
    ) -> Result<(), StorageError> {
        match record {
            WalRecord::HardState(hard_state) => self.hard_state = Some(hard_state),
            WalRecord::Entry(entry) => {
                if self
                    .snapshot
                    .is_some_and(|marker| entry.index <= marker.index)
                {
                    return Ok(());
                }
                // An entry at index i replaces the entry at i and all after it.
                let keep = self
                    .entries
                    .partition_point(|kept| kept.index < entry.index);
                self.entries.truncate(keep);
                self.positions.truncate(keep);
                self.entries.push(entry);
                self.positions.push((segment.to_path_buf(), offset));
            }
            WalRecord::SnapshotInstalled(marker) => {
                self.snapshot = Some(marker);
                self.entries.clear();
                self.positions.clear();
            }
            WalRecord::Compacted(marker) => {
                self.snapshot = Some(marker);
                let covered = self
                    .entries
                    .partition_point(|kept| kept.index <= marker.index);
                self.entries.drain(..covered);
                self.positions.drain(..covered);
            }
            WalRecord::SegmentHeader(_) | WalRecord::Metadata(_) | WalRecord::BatchStart(_) => {
                return Err(StorageError::Corrupted {
                    segment: segment.to_path_buf(),
                    offset,
                    reason: "unexpected record kind in the log".to_string(),
                });
            }
        }
        Ok(())
    }

    fn finish(self, directory: &Path) -> Result<WalReplay, StorageError> {
        let mut expected = Index(self.snapshot.map_or(0, |marker| marker.index.0) + 1);
        for (entry, (segment, offset)) in self.entries.iter().zip(&self.positions) {
            if entry.index != expected {
                return Err(StorageError::Corrupted {
                    segment: segment.clone(),
                    offset: *offset,
                    reason: format!(
                        "log gap: expected entry {expected}, found entry {} (WAL in {})",
                        entry.index,
                        directory.display()
                    ),
                });
            }
            expected = Index(expected.0 + 1);
        }
        Ok(WalReplay {
            hard_state: self.hard_state,
            snapshot: self.snapshot,
            entries: self.entries,
            created: false,
        })
    }
}
