//! [`SnapshotStore`]: snapshot files, written atomically and checked on load.
//!
//! A snapshot file `<index>-<term>.snap` (16 hex digits each) holds
//!
//! ```text
//! magic "CAIRNSNP" | body_length: u64 LE | body_crc: u32 LE | body
//! ```
//!
//! where the body is bincode of [`cairn_core::raft::Snapshot`] and
//! `body_crc` is its crc32c. A snapshot is written to `<name>.tmp`, synced,
//! renamed into place and the directory synced, so a crash leaves either the
//! whole file or none. Only then does the WAL record a marker pointing at it;
//! on restart the snapshot used is the one the last WAL marker names.
//!
//! Choice: if the snapshot the WAL names is missing or damaged, opening
//! fails with [`StorageError::SnapshotCorrupted`]. Falling back to an older
//! snapshot would need the WAL to still cover the gap, and the segments
//! before the newest snapshot are released once it is durable, so a silent
//! fallback would start from a state with a hole in it. Files newer than the
//! marker (written, but the crash came before the marker was durable) are
//! removed; of the rest, the newest [`SNAPSHOT_FILES_KEPT`] stay.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_core::raft::{Index, Snapshot, Term};

use super::disk::Disk;
use super::error::StorageError;
use super::wal::record::SnapshotMarker;

/// How many snapshot files are kept: the one in use and older ones for
/// forensics.
pub const SNAPSHOT_FILES_KEPT: usize = 2;

/// The file-name suffix of snapshot files.
pub const SNAPSHOT_SUFFIX: &str = ".snap";

/// The suffix of files being written, removed on open.
pub const TEMPORARY_SUFFIX: &str = ".tmp";

/// Identifies a snapshot file as Cairn's.
const SNAPSHOT_MAGIC: [u8; 8] = *b"CAIRNSNP";

/// Bytes before the body: magic, length, checksum.
const SNAPSHOT_HEADER_BYTES: usize = 8 + 8 + 4;

/// The snapshot files of one member.
#[derive(Debug)]
pub struct SnapshotStore {
    disk: Arc<dyn Disk>,
    directory: PathBuf,
}

impl SnapshotStore {
    /// Opens (creating when absent) the snapshot directory and removes
    /// temporary files a crash left behind.
    pub fn open(disk: Arc<dyn Disk>, directory: &Path) -> Result<SnapshotStore, StorageError> {
        let directory = directory.to_path_buf();
        disk.create_dir_all(&directory)
            .map_err(|error| StorageError::io("create directory", &directory, error))?;
        let store = SnapshotStore { disk, directory };
        let mut removed = false;
        for file_name in store.list_names()? {
            if file_name.ends_with(TEMPORARY_SUFFIX) {
                let path = store.directory.join(&file_name);
                tracing::info!(file = %path.display(), "removing an unfinished snapshot file");
                store
                    .disk
                    .remove(&path)
                    .map_err(|error| StorageError::io("remove", &path, error))?;
                removed = true;
            }
        }
        if removed {
            store.sync_directory()?;
        }
        Ok(store)
    }

    /// The file name of the snapshot at `marker`.
    pub fn file_name(marker: SnapshotMarker) -> String {
        format!(
            "{:016x}-{:016x}{SNAPSHOT_SUFFIX}",
            marker.index.0, marker.term.0
        )
    }

    /// The path of the snapshot at `marker`.
    pub fn path(&self, marker: SnapshotMarker) -> PathBuf {
        self.directory.join(SnapshotStore::file_name(marker))
    }

    fn parse(file_name: &str) -> Option<SnapshotMarker> {
        let stem = file_name.strip_suffix(SNAPSHOT_SUFFIX)?;
        let (index, term) = stem.split_once('-')?;
        if index.len() != 16 || term.len() != 16 {
            return None;
        }
        Some(SnapshotMarker {
            index: Index(u64::from_str_radix(index, 16).ok()?),
            term: Term(u64::from_str_radix(term, 16).ok()?),
        })
    }

    fn list_names(&self) -> Result<Vec<String>, StorageError> {
        self.disk
            .list_dir(&self.directory)
            .map_err(|error| StorageError::io("list directory", &self.directory, error))
    }

    /// The snapshot files present, oldest first.
    pub fn list(&self) -> Result<Vec<SnapshotMarker>, StorageError> {
        let mut markers: Vec<SnapshotMarker> = self
            .list_names()?
            .iter()
            .filter_map(|name| SnapshotStore::parse(name))
            .collect();
        markers.sort_by_key(|marker| (marker.index, marker.term));
        Ok(markers)
    }

    /// Writes `snapshot` durably: temporary file, sync, rename, directory sync.
    pub fn save(&self, snapshot: &Snapshot) -> Result<SnapshotMarker, StorageError> {
        let marker = SnapshotMarker {
            index: snapshot.metadata.index,
            term: snapshot.metadata.term,
        };
        let path = self.path(marker);
        let temporary = path.with_extension(format!("snap{TEMPORARY_SUFFIX}"));
        // The body is encoded in place after a header filled in afterwards:
        // the snapshot is the whole state, so no second copy of it is made.
        let body_bytes = bincode::serialized_size(snapshot)
            .unwrap_or_else(|error| panic!("bincode failed to size a snapshot: {error}"));
        let mut bytes = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + body_bytes as usize);
        bytes.extend_from_slice(&SNAPSHOT_MAGIC);
        bytes.extend_from_slice(&body_bytes.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        assert_eq!(bytes.len(), SNAPSHOT_HEADER_BYTES, "snapshot header layout");
        bincode::serialize_into(&mut bytes, snapshot)
            .unwrap_or_else(|error| panic!("bincode failed to encode a snapshot: {error}"));
        assert_eq!(
            bytes.len() as u64,
            SNAPSHOT_HEADER_BYTES as u64 + body_bytes,
            "snapshot body size"
        );
        let checksum = crc32c::crc32c(&bytes[SNAPSHOT_HEADER_BYTES..]);
        bytes[SNAPSHOT_HEADER_BYTES - 4..SNAPSHOT_HEADER_BYTES]
            .copy_from_slice(&checksum.to_le_bytes());
        if cfg!(debug_assertions) {
            // Pair assertion: what we write must read back as written.
            let decoded = decode(&path, marker, &bytes).expect("fresh snapshot bytes decode");
            assert_eq!(&decoded, snapshot, "snapshot round trip");
        }
        let mut file = self
            .disk
            .create(&temporary)
            .map_err(|error| StorageError::io("create", &temporary, error))?;
        file.append(&bytes)
            .map_err(|error| StorageError::io("append to", &temporary, error))?;
        file.sync()
            .map_err(|error| StorageError::io("sync", &temporary, error))?;
        drop(file);
        self.disk
            .rename(&temporary, &path)
            .map_err(|error| StorageError::io("rename", &temporary, error))?;
        self.sync_directory()?;
        tracing::info!(
            index = marker.index.0,
            term = marker.term.0,
            bytes = bytes.len(),
            file = %path.display(),
            "saved snapshot"
        );
        Ok(marker)
    }

    /// Reads and checks the snapshot at `marker`.
    pub fn load(&self, marker: SnapshotMarker) -> Result<Snapshot, StorageError> {
        let path = self.path(marker);
        let exists = self
            .disk
            .exists(&path)
            .map_err(|error| StorageError::io("stat", &path, error))?;
        if !exists {
            return Err(StorageError::SnapshotCorrupted {
                path,
                reason: "missing, though the WAL refers to it".to_string(),
            });
        }
        let bytes = self
            .disk
            .read(&path)
            .map_err(|error| StorageError::io("read", &path, error))?;
        decode(&path, marker, &bytes)
    }

    /// Removes snapshot files newer than `current` (never referenced by the
    /// WAL) and all but the newest [`SNAPSHOT_FILES_KEPT`] of the rest.
    pub fn remove_unused(&self, current: Option<SnapshotMarker>) -> Result<(), StorageError> {
        let markers = self.list()?;
        let (usable, orphans): (Vec<SnapshotMarker>, Vec<SnapshotMarker>) = markers
            .into_iter()
            .partition(|marker| current.is_some_and(|current| marker.index <= current.index));
        let surplus = usable.len().saturating_sub(SNAPSHOT_FILES_KEPT);
        let mut removed = false;
        for marker in orphans.iter().chain(&usable[..surplus]) {
            if Some(*marker) == current {
                continue;
            }
            let path = self.path(*marker);
            tracing::debug!(file = %path.display(), "removing snapshot file");
            self.disk
                .remove(&path)
                .map_err(|error| StorageError::io("remove", &path, error))?;
            removed = true;
        }
        if removed {
            self.sync_directory()?;
        }
        Ok(())
    }

    /// The total size of the snapshot files in bytes.
    pub fn size_bytes(&self) -> Result<u64, StorageError> {
        let mut total = 0;
        for file_name in self.list_names()? {
            let path = self.directory.join(file_name);
            total += self
                .disk
                .file_len(&path)
                .map_err(|error| StorageError::io("stat", &path, error))?;
        }
        Ok(total)
    }

    fn sync_directory(&self) -> Result<(), StorageError> {
        self.disk
            .sync_dir(&self.directory)
            .map_err(|error| StorageError::io("sync directory", &self.directory, error))
    }
}

/// Checks and decodes the bytes of the snapshot file at `path`.
fn decode(path: &Path, marker: SnapshotMarker, bytes: &[u8]) -> Result<Snapshot, StorageError> {
    let corrupted = |reason: String| StorageError::SnapshotCorrupted {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < SNAPSHOT_HEADER_BYTES {
        return Err(corrupted(format!(
            "{} bytes, shorter than the header",
            bytes.len()
        )));
    }
    if bytes[..8] != SNAPSHOT_MAGIC {
        return Err(corrupted("bad magic".to_string()));
    }
    let mut length = [0u8; 8];
    length.copy_from_slice(&bytes[8..16]);
    let body_length = u64::from_le_bytes(length);
    let mut checksum = [0u8; 4];
    checksum.copy_from_slice(&bytes[16..20]);
    let stored_crc = u32::from_le_bytes(checksum);
    let body = &bytes[SNAPSHOT_HEADER_BYTES..];
    if body.len() as u64 != body_length {
        return Err(corrupted(format!(
            "body is {} bytes, header says {body_length}",
            body.len()
        )));
    }
    let computed_crc = crc32c::crc32c(body);
    if stored_crc != computed_crc {
        return Err(corrupted(format!(
            "checksum mismatch (stored {stored_crc:#010x}, computed {computed_crc:#010x})"
        )));
    }
    let snapshot: Snapshot = bincode::deserialize(body)
        .map_err(|error| corrupted(format!("undecodable body: {error}")))?;
    if snapshot.metadata.index != marker.index || snapshot.metadata.term != marker.term {
        return Err(corrupted(format!(
            "holds index {} term {}, but its name says index {} term {}",
            snapshot.metadata.index, snapshot.metadata.term, marker.index, marker.term
        )));
    }
    Ok(snapshot)
}
