//! The write-ahead log and snapshot files, behind the [`Disk`] seam the simulator replaces.
//!
//! [`RaftStorage`] is what the node driver uses. Per Ready it calls
//! [`RaftStorage::persist`] before sending the Ready's messages: the hard
//! state, entries and received snapshot become durable together (one WAL
//! write and one fsync), and after a crash a Ready is recovered whole or not
//! at all. After the application has applied enough entries
//! (the driver's `--snapshot-count`), the driver hands a snapshot of its
//! state to [`RaftStorage::save_snapshot`], which writes the snapshot file
//! and releases the WAL segments it covers. On restart,
//! [`RaftStorage::open`] loads the snapshot and replays the WAL after it.
//!
//! ```text
//! let (mut storage, recovered) = RaftStorage::open(disk, data_dir)?;
//! if recovered.fresh { storage.write_metadata(&member_blob)?; /* Start::New or Join */ }
//! else { /* Start::Restart(recovered.state) */ }
//! loop {
//!     let ready = raft.ready();
//!     storage.persist(ready.hard_state.as_ref(), &ready.entries, ready.snapshot.as_ref())?;
//!     send(ready.messages); apply(ready.committed_entries); raft.advance(ready);
//!     if applied - snapshot_index >= snapshot_count { storage.save_snapshot(&snapshot)?; }
//! }
//! ```
//!
//! Layout of a data directory:
//!
//! ```text
//! <data-dir>/meta                      member metadata (atomically replaced)
//! <data-dir>/wal/<seq>-<index>.wal     WAL segments
//! <data-dir>/snap/<index>-<term>.snap  snapshot files
//! ```
//!
//! A fresh data directory holds one WAL segment with only its header (tens of
//! bytes): nothing is preallocated.
//!
//! Any error from a call that writes poisons the storage: every later call
//! returns [`StorageError::Poisoned`] and the node must stop. Opening never
//! panics on bad disk contents: it returns an error naming the file.

pub mod disk;
pub mod error;
pub mod metadata;
pub mod sim_disk;
pub mod snapshot;
pub mod wal;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_core::raft::{Entry, HardState, Index, PersistedState, Snapshot, Term};

pub use self::disk::{Disk, DiskFile, OsDisk};
pub use self::error::StorageError;
pub use self::sim_disk::{SimDisk, SimDiskStats, TornWrite};
pub use self::snapshot::SNAPSHOT_FILES_KEPT;
pub use self::wal::segment::SEGMENT_BYTES_MAX_DEFAULT;
pub use self::wal::Durability;

use self::snapshot::SnapshotStore;
use self::wal::record::SnapshotMarker;
use self::wal::Wal;

/// The default number of applied entries between snapshots (etcd's
/// `--snapshot-count` default). The driver decides when to call
/// [`RaftStorage::save_snapshot`]; this is the bound it should use unless
/// configured otherwise.
pub const SNAPSHOT_COUNT_DEFAULT: u64 = 100_000;

/// The WAL's subdirectory of the data directory.
pub const WAL_DIRECTORY: &str = "wal";

/// The snapshots' subdirectory of the data directory.
pub const SNAPSHOT_DIRECTORY: &str = "snap";

/// Tuning of [`RaftStorage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageConfig {
    /// A new WAL segment starts once the current one holds this many bytes
    /// (a soft bound: one Ready's records always share a segment).
    pub segment_bytes_max: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            segment_bytes_max: SEGMENT_BYTES_MAX_DEFAULT,
        }
    }
}

/// What a data directory held when it was opened.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// For `Start::Restart`: the last hard state, the snapshot the WAL names,
    /// and the entries after it. The hard state is raised to the snapshot
    /// (commit at least its index; term at least its term, with no vote when
    /// raised) since a crash between the snapshot marker and the hard state
    /// of the same Ready can leave it behind.
    pub state: PersistedState,
    /// The blob given to [`RaftStorage::write_metadata`], if it was ever written.
    pub metadata: Option<Vec<u8>>,
    /// True when the directory holds nothing durable: no metadata, hard
    /// state, snapshot or entry. The driver bootstraps the member.
    pub fresh: bool,
}

/// Counters for metrics. The driver times `persist` itself for the fsync
/// duration histogram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// WAL file and directory syncs issued.
    pub wal_syncs: u64,
    /// Bytes appended to the WAL.
    pub wal_bytes_written: u64,
    /// WAL segments created.
    pub wal_segments_created: u64,
    /// WAL segments released after a snapshot.
    pub wal_segments_removed: u64,
    /// Snapshot files written.
    pub snapshots_saved: u64,
}

/// The durable state of one member: WAL, snapshot files and metadata.
#[derive(Debug)]
pub struct RaftStorage {
    disk: Arc<dyn Disk>,
    directory: PathBuf,
    wal: Wal,
    snapshots: SnapshotStore,
    /// The snapshot the WAL names.
    snapshot: Option<SnapshotMarker>,
    /// Set by the first failed write; all later calls are refused.
    poisoned: Option<String>,
    snapshots_saved: u64,
    /// The marker of a received snapshot written by
    /// [`RaftStorage::write_unsynced`], installed by the sync owed for it.
    marker_owed: Option<SnapshotMarker>,
}

impl RaftStorage {
    /// Opens (creating when absent) the data directory `directory` with the
    /// default configuration.
    pub fn open(
        disk: Arc<dyn Disk>,
        directory: &Path,
    ) -> Result<(RaftStorage, Recovered), StorageError> {
        RaftStorage::open_with_config(disk, directory, StorageConfig::default())
    }

    /// Opens (creating when absent) the data directory `directory`: reads the
    /// metadata, replays the WAL (cutting a torn tail), loads the snapshot the
    /// WAL names and removes leftovers of interrupted writes.
    pub fn open_with_config(
        disk: Arc<dyn Disk>,
        directory: &Path,
        config: StorageConfig,
    ) -> Result<(RaftStorage, Recovered), StorageError> {
        let directory = directory.to_path_buf();
        let wal_directory = directory.join(WAL_DIRECTORY);
        let snapshot_directory = directory.join(SNAPSHOT_DIRECTORY);
        let existed = disk
            .exists(&directory)
            .map_err(|error| StorageError::io("stat", &directory, error))?;
        for path in [&directory, &wal_directory, &snapshot_directory] {
            disk.create_dir_all(path)
                .map_err(|error| StorageError::io("create directory", path, error))?;
        }
        let parent = directory
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty());
        if let (false, Some(parent)) = (existed, parent) {
            // Make the new data directory's own entry durable. NB: a relative
            // data directory's parent is the working directory, not synced.
            disk.sync_dir(parent)
                .map_err(|error| StorageError::io("sync directory", parent, error))?;
        }
        disk.sync_dir(&directory)
            .map_err(|error| StorageError::io("sync directory", &directory, error))?;

        let metadata = metadata::read_metadata(&*disk, &directory)?;
        let snapshots = SnapshotStore::open(disk.clone(), &snapshot_directory)?;
        let has_segments = disk
            .list_dir(&wal_directory)
            .map_err(|error| StorageError::io("list directory", &wal_directory, error))?
            .iter()
            .any(|name| name.ends_with(wal::segment::SEGMENT_SUFFIX));
        if !has_segments {
            // Segment 1 is durable before anything else is written, so Cairn
            // files without a segment mean the WAL was lost.
            if metadata.is_some() {
                return Err(StorageError::MissingWal {
                    directory,
                    found: "a metadata file",
                });
            }
            if !snapshots.list()?.is_empty() {
                return Err(StorageError::MissingWal {
                    directory,
                    found: "snapshot files",
                });
            }
        }

        let (wal, replay) = Wal::open(disk.clone(), &wal_directory, config.segment_bytes_max)?;
        let snapshot = match replay.snapshot {
            Some(marker) => Some(snapshots.load(marker)?),
            None => None,
        };
        snapshots.remove_unused(replay.snapshot)?;

        let mut hard_state = replay.hard_state.unwrap_or_default();
        if let Some(marker) = replay.snapshot {
            let before = hard_state;
            hard_state = raise_to_snapshot(hard_state, marker.index, marker.term);
            if hard_state != before {
                tracing::info!(
                    ?before,
                    after = ?hard_state,
                    snapshot_index = marker.index.0,
                    "raised the recovered hard state to the snapshot"
                );
            }
        }
        let fresh = metadata.is_none()
            && replay.hard_state.is_none()
            && replay.snapshot.is_none()
            && replay.entries.is_empty();
        let recovered = Recovered {
            state: PersistedState {
                hard_state,
                snapshot,
                entries: replay.entries,
            },
            metadata,
            fresh,
        };
        let storage = RaftStorage {
            disk,
            directory,
            wal,
            snapshots,
            snapshot: replay.snapshot,
            poisoned: None,
            snapshots_saved: 0,
            marker_owed: None,
        };
        Ok((storage, recovered))
    }

    /// Makes one Ready's duty 1 durable and returns once it is: the received
    /// `snapshot` (as a snapshot file first), then `entries` (an entry at an
    /// index already stored replaces it and everything after) and
    /// `hard_state`, in one WAL write and one fsync. An error poisons the
    /// storage; the node must stop.
    pub fn persist(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
        snapshot: Option<&Snapshot>,
    ) -> Result<(), StorageError> {
        self.persist_with(hard_state, entries, snapshot, Durability::Synced)
    }

    /// [`RaftStorage::persist`] with a choice of durability: a Ready whose
    /// only change is the hard state's commit index may be written without
    /// an fsync ([`Durability::Written`]); anything else must be synced.
    pub fn persist_with(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
        snapshot: Option<&Snapshot>,
        durability: Durability,
    ) -> Result<(), StorageError> {
        let marker = self.save_received_snapshot(snapshot)?;
        let result = self.wal.append(marker, entries, hard_state, durability);
        self.poison_on_error(result)?;
        self.install_marker(marker)
    }

    /// [`RaftStorage::persist`] in two steps, so that the fsync can take
    /// time during which a crash lands (the simulator's seam): this writes
    /// the received `snapshot` (durably, as a file), `entries` and
    /// `hard_state` without syncing the WAL; nothing of it is durable, and
    /// nothing may depend on it, until [`RaftStorage::sync`], which must
    /// come next. An error poisons the storage.
    pub fn write_unsynced(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
        snapshot: Option<&Snapshot>,
    ) -> Result<(), StorageError> {
        let marker = self.save_received_snapshot(snapshot)?;
        let result = self.wal.append_unsynced(marker, entries, hard_state);
        self.poison_on_error(result)?;
        self.marker_owed = marker;
        Ok(())
    }

    /// Makes what [`RaftStorage::write_unsynced`] wrote durable (one fsync),
    /// then releases what a snapshot it carried makes useless. An error
    /// poisons the storage.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.refuse_if_poisoned()?;
        let result = self.wal.sync();
        self.poison_on_error(result)?;
        let marker = self.marker_owed.take();
        self.install_marker(marker)
    }

    /// Saves a snapshot received from the leader as a file (durably), the
    /// first step of persisting the Ready that carries it.
    fn save_received_snapshot(
        &mut self,
        snapshot: Option<&Snapshot>,
    ) -> Result<Option<SnapshotMarker>, StorageError> {
        self.refuse_if_poisoned()?;
        let Some(snapshot) = snapshot else {
            return Ok(None);
        };
        self.refuse_stale(snapshot)?;
        let result = self.snapshots.save(snapshot);
        let marker = self.poison_on_error(result)?;
        self.snapshots_saved += 1;
        Ok(Some(marker))
    }

    /// The WAL's marker of a received snapshot is durable: it is the
    /// current snapshot, and what it covers may go.
    fn install_marker(&mut self, marker: Option<SnapshotMarker>) -> Result<(), StorageError> {
        if let Some(marker) = marker {
            self.snapshot = Some(marker);
            self.release(marker)?;
        }
        Ok(())
    }

    /// Saves a snapshot the application took at its applied index, then
    /// releases the WAL segments and older snapshot files it makes useless.
    pub fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.refuse_if_poisoned()?;
        self.refuse_stale(snapshot)?;
        let result = self.snapshots.save(snapshot);
        let marker = self.poison_on_error(result)?;
        self.snapshots_saved += 1;
        let result = self.wal.mark_compacted(marker);
        self.poison_on_error(result)?;
        self.snapshot = Some(marker);
        self.release(marker)
    }

    /// Replaces the member metadata blob atomically and durably.
    pub fn write_metadata(&mut self, blob: &[u8]) -> Result<(), StorageError> {
        self.refuse_if_poisoned()?;
        let result = metadata::write_metadata(&*self.disk, &self.directory, blob);
        self.poison_on_error(result)
    }

    /// The bytes the data directory holds (metadata, WAL, snapshots).
    pub fn size_bytes(&self) -> Result<u64, StorageError> {
        let mut total = self.snapshots.size_bytes()?;
        let metadata_path = metadata::metadata_path(&self.directory);
        let exists = self
            .disk
            .exists(&metadata_path)
            .map_err(|error| StorageError::io("stat", &metadata_path, error))?;
        if exists {
            total += self
                .disk
                .file_len(&metadata_path)
                .map_err(|error| StorageError::io("stat", &metadata_path, error))?;
        }
        for path in self.wal.segment_paths() {
            total += self
                .disk
                .file_len(&path)
                .map_err(|error| StorageError::io("stat", &path, error))?;
        }
        Ok(total)
    }

    /// Counters for metrics.
    pub fn stats(&self) -> StorageStats {
        let wal = self.wal.stats();
        StorageStats {
            wal_syncs: wal.syncs,
            wal_bytes_written: wal.bytes_written,
            wal_segments_created: wal.segments_created,
            wal_segments_removed: wal.segments_removed,
            snapshots_saved: self.snapshots_saved,
        }
    }

    /// The data directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The index of the last entry stored (or of the snapshot when none follows it).
    pub fn last_index(&self) -> Index {
        self.wal.last_index()
    }

    /// The index of the current snapshot (0 when there is none).
    pub fn snapshot_index(&self) -> Index {
        self.snapshot.map(|marker| marker.index).unwrap_or_default()
    }

    /// The WAL segment files, oldest first (for tests and operators).
    pub fn wal_segment_paths(&self) -> Vec<PathBuf> {
        self.wal.segment_paths()
    }

    /// The failure that poisoned the storage, if any.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    fn release(&mut self, marker: SnapshotMarker) -> Result<(), StorageError> {
        let result = self.wal.release_before(marker.index);
        self.poison_on_error(result)?;
        let result = self.snapshots.remove_unused(Some(marker));
        self.poison_on_error(result)
    }

    fn refuse_stale(&self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let current_index = self.snapshot_index();
        if snapshot.metadata.index < current_index {
            return Err(StorageError::StaleSnapshot {
                index: snapshot.metadata.index,
                term: snapshot.metadata.term,
                current_index,
            });
        }
        Ok(())
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
            if self.poisoned.is_none() {
                tracing::error!(
                    %error,
                    directory = %self.directory.display(),
                    "storage write failed; the node must stop"
                );
                self.poisoned = Some(error.to_string());
            }
        }
        result
    }
}

/// A hard state at least as far along as a durable snapshot at `index`/`term`.
/// A snapshot holds only committed entries, so its index is committed; a term
/// is raised without a vote, which is safe because no vote in the higher
/// term was ever durable (and so none was ever sent).
fn raise_to_snapshot(hard_state: HardState, index: Index, term: Term) -> HardState {
    let mut raised = hard_state;
    raised.commit = raised.commit.max(index);
    if raised.term < term {
        raised.term = term;
        raised.vote = None;
    }
    raised
}

#[cfg(test)]
mod tests {
    use cairn_core::raft::NodeId;

    use super::*;

    fn assert_send<T: Send>() {}
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn storage_can_move_to_a_blocking_thread() {
        assert_send::<RaftStorage>();
        assert_send_sync::<StorageError>();
        assert_send_sync::<SimDisk>();
        assert_send_sync::<OsDisk>();
    }

    #[test]
    fn hard_state_is_raised_only_where_it_lags_the_snapshot() {
        let hard_state = HardState {
            term: Term(3),
            vote: Some(NodeId(2)),
            commit: Index(10),
        };
        assert_eq!(raise_to_snapshot(hard_state, Index(5), Term(2)), hard_state);
        assert_eq!(
            raise_to_snapshot(hard_state, Index(20), Term(3)),
            HardState {
                commit: Index(20),
                ..hard_state
            }
        );
        assert_eq!(
            raise_to_snapshot(hard_state, Index(20), Term(4)),
            HardState {
                term: Term(4),
                vote: None,
                commit: Index(20)
            }
        );
    }
}
