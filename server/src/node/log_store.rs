//! [`LogStore`]: the seam between the driver and durable storage. The
//! driver needs four things of a disk: persist a Ready's hard state,
//! entries and snapshot with one fsync; save a snapshot it took itself;
//! keep a small metadata blob (this member's identity and boot count); and
//! say how big it is. [`crate::storage`]'s write-ahead log implements it
//! for real and simulated disks; [`MemoryLogStore`] keeps everything in
//! memory for tests.

use std::path::Path;
use std::sync::{Arc, Mutex};

use cairn_core::raft::{Entry, HardState, PersistedState, Snapshot};
use tracing::warn;

use crate::storage::{Disk, Durability, RaftStorage, StorageError};

/// A storage failure. The node stops on any of them: after a failed fsync
/// nothing written since the last good one can be trusted.
#[derive(Debug, thiserror::Error)]
#[error("storage failure: {message}")]
pub struct LogStoreError {
    /// What failed, with the file and offset where known.
    pub message: String,
}

/// What a store held when opened.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    /// The Raft state to restart from.
    pub persisted: PersistedState,
    /// The last metadata blob written, empty if none.
    pub metadata: Vec<u8>,
    /// True when the store held nothing (a first start).
    pub fresh: bool,
}

/// Durable storage for one member's Raft log.
pub trait LogStore: Send {
    /// Writes a Ready's duty-1 state: one write, and one fsync unless
    /// `durability` is [`Durability::Written`] (only the commit index
    /// moved). Entries at indexes already stored replace them and
    /// everything after them.
    fn persist(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
        snapshot: Option<&Snapshot>,
        durability: Durability,
    ) -> Result<(), LogStoreError>;
    /// A synced [`LogStore::persist`] in two steps, for a simulator that
    /// stretches the fsync over simulated time: writes now, durable only
    /// after [`LogStore::sync`], which must come next.
    fn write_unsynced(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
        snapshot: Option<&Snapshot>,
    ) -> Result<(), LogStoreError>;
    /// Makes what [`LogStore::write_unsynced`] wrote durable (one fsync).
    fn sync(&mut self) -> Result<(), LogStoreError>;
    /// Makes a snapshot the driver took durable; the log before it may go.
    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), LogStoreError>;
    /// Replaces the metadata blob, durably.
    fn write_metadata(&mut self, metadata: &[u8]) -> Result<(), LogStoreError>;
    /// Bytes on disk.
    fn size_bytes(&self) -> u64;
}

impl From<StorageError> for LogStoreError {
    fn from(error: StorageError) -> Self {
        LogStoreError {
            message: error.to_string(),
        }
    }
}

/// Opens the write-ahead log and snapshots in `directory` on `disk` (an
/// [`crate::storage::OsDisk`] in production, a
/// [`crate::storage::SimDisk`] in the simulator).
pub fn open_raft_storage(
    disk: Arc<dyn Disk>,
    directory: &Path,
) -> Result<(RaftStorage, Recovery), LogStoreError> {
    let (storage, recovered) = RaftStorage::open(disk, directory)?;
    let recovery = Recovery {
        persisted: recovered.state,
        metadata: recovered.metadata.unwrap_or_default(),
        fresh: recovered.fresh,
    };
    Ok((storage, recovery))
}

impl LogStore for RaftStorage {
    fn persist(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
        snapshot: Option<&Snapshot>,
        durability: Durability,
    ) -> Result<(), LogStoreError> {
        Ok(RaftStorage::persist_with(
            self, hard_state, entries, snapshot, durability,
        )?)
    }

    fn write_unsynced(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
        snapshot: Option<&Snapshot>,
    ) -> Result<(), LogStoreError> {
        Ok(RaftStorage::write_unsynced(
            self, hard_state, entries, snapshot,
        )?)
    }

    fn sync(&mut self) -> Result<(), LogStoreError> {
        Ok(RaftStorage::sync(self)?)
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), LogStoreError> {
        Ok(RaftStorage::save_snapshot(self, snapshot)?)
    }

    fn write_metadata(&mut self, metadata: &[u8]) -> Result<(), LogStoreError> {
        Ok(RaftStorage::write_metadata(self, metadata)?)
    }

    fn size_bytes(&self) -> u64 {
        match RaftStorage::size_bytes(self) {
            Ok(bytes) => bytes,
            Err(error) => {
                // Only a metric: report 0 rather than stop the node.
                warn!(%error, "cannot measure the data dir");
                0
            }
        }
    }
}

/// What a [`MemoryLogStore`] holds; shared so a test can "restart" a node
/// on the same contents.
#[derive(Debug, Default)]
struct MemoryContents {
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
    metadata: Vec<u8>,
    written: bool,
    /// When set, every write fails (a poisoned disk).
    failing: bool,
}

/// An in-memory [`LogStore`] whose contents outlive it (clone the
/// [`MemoryDisk`] to reopen). Every write is "durable" at once.
#[derive(Clone, Debug, Default)]
pub struct MemoryDisk {
    contents: Arc<Mutex<MemoryContents>>,
}

/// A store open on a [`MemoryDisk`].
#[derive(Debug)]
pub struct MemoryLogStore {
    disk: MemoryDisk,
}

impl MemoryDisk {
    /// An empty disk.
    pub fn new() -> MemoryDisk {
        MemoryDisk::default()
    }

    /// Opens a store on this disk and returns what it holds.
    pub fn open(&self) -> (MemoryLogStore, Recovery) {
        let contents = self.lock();
        let recovery = Recovery {
            persisted: PersistedState {
                hard_state: contents.hard_state,
                snapshot: contents.snapshot.clone(),
                entries: contents.entries.clone(),
            },
            metadata: contents.metadata.clone(),
            fresh: !contents.written,
        };
        drop(contents);
        (MemoryLogStore { disk: self.clone() }, recovery)
    }

    /// Makes every later write fail, as a disk whose fsync failed.
    pub fn fail_writes(&self) {
        self.lock().failing = true;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryContents> {
        // A panic while holding the lock already failed the test that did it.
        self.contents
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl MemoryContents {
    fn check_writable(&self) -> Result<(), LogStoreError> {
        if self.failing {
            return Err(LogStoreError {
                message: "memory disk set to fail writes".to_string(),
            });
        }
        Ok(())
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) {
        let index = snapshot.metadata.index;
        if self
            .snapshot
            .as_ref()
            .is_some_and(|current| current.metadata.index >= index)
        {
            return;
        }
        self.entries.retain(|entry| entry.index > index);
        self.snapshot = Some(snapshot.clone());
    }
}

impl LogStore for MemoryLogStore {
    fn persist(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
        snapshot: Option<&Snapshot>,
        // Every write to memory is as good as synced.
        _durability: Durability,
    ) -> Result<(), LogStoreError> {
        let mut contents = self.disk.lock();
        contents.check_writable()?;
        contents.written = true;
        if let Some(snapshot) = snapshot {
            contents.install_snapshot(snapshot);
            // A received snapshot replaces the whole log.
            let index = snapshot.metadata.index;
            contents.entries.retain(|entry| entry.index > index);
        }
        if let Some(first) = entries.first() {
            contents.entries.retain(|entry| entry.index < first.index);
            contents.entries.extend_from_slice(entries);
        }
        if let Some(hard_state) = hard_state {
            contents.hard_state = *hard_state;
        }
        Ok(())
    }

    fn write_unsynced(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
        snapshot: Option<&Snapshot>,
    ) -> Result<(), LogStoreError> {
        // Memory has no crash to lose the write to.
        self.persist(hard_state, entries, snapshot, Durability::Synced)
    }

    fn sync(&mut self) -> Result<(), LogStoreError> {
        self.disk.lock().check_writable()
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), LogStoreError> {
        let mut contents = self.disk.lock();
        contents.check_writable()?;
        contents.written = true;
        contents.install_snapshot(snapshot);
        Ok(())
    }

    fn write_metadata(&mut self, metadata: &[u8]) -> Result<(), LogStoreError> {
        let mut contents = self.disk.lock();
        contents.check_writable()?;
        contents.metadata = metadata.to_vec();
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        let contents = self.disk.lock();
        let entries: usize = contents
            .entries
            .iter()
            .map(|entry| entry.data.len() + 32)
            .sum();
        let snapshot = contents
            .snapshot
            .as_ref()
            .map_or(0, |snapshot| snapshot.data.len());
        (entries + snapshot + contents.metadata.len()) as u64
    }
}
