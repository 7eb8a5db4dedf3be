//! The member metadata file: a small blob (cluster id, member id, name) the
//! driver writes once at bootstrap and reads back on every restart.
//!
//! The file `meta` holds one WAL-framed [`RecordKind::Metadata`] record, so
//! it carries the same checksums as the log. It is replaced atomically:
//! written to `meta.tmp`, synced, renamed, and the directory synced.

use std::path::{Path, PathBuf};

use super::disk::Disk;
use super::error::StorageError;
use super::wal::record::{decode_frame, encode_raw_record, Frame, RecordKind};

/// The metadata file's name inside the data directory.
pub const METADATA_FILE: &str = "meta";

/// The name of the metadata file while it is being written.
pub const METADATA_TEMPORARY_FILE: &str = "meta.tmp";

/// The metadata file of the data directory `directory`.
pub fn metadata_path(directory: &Path) -> PathBuf {
    directory.join(METADATA_FILE)
}

/// Reads the metadata blob, or `None` when it was never written. Removes a
/// temporary file left by a crash during [`write_metadata`].
pub fn read_metadata(disk: &dyn Disk, directory: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    let temporary = directory.join(METADATA_TEMPORARY_FILE);
    if disk
        .exists(&temporary)
        .map_err(|error| StorageError::io("stat", &temporary, error))?
    {
        disk.remove(&temporary)
            .map_err(|error| StorageError::io("remove", &temporary, error))?;
        disk.sync_dir(directory)
            .map_err(|error| StorageError::io("sync directory", directory, error))?;
    }
    let path = metadata_path(directory);
    if !disk
        .exists(&path)
        .map_err(|error| StorageError::io("stat", &path, error))?
    {
        return Ok(None);
    }
    let bytes = disk
        .read(&path)
        .map_err(|error| StorageError::io("read", &path, error))?;
    let corrupted = |reason: String| StorageError::MetadataCorrupted {
        path: path.clone(),
        reason,
    };
    match decode_frame(&bytes, 0) {
        Frame::Complete {
            kind: RecordKind::Metadata,
            payload,
            end,
        } if end == bytes.len() => Ok(Some(payload.to_vec())),
        Frame::Complete { kind, end, .. } => Err(corrupted(format!(
            "holds a {kind:?} record of {end} bytes in a file of {} bytes",
            bytes.len()
        ))),
        Frame::Incomplete { reason } | Frame::Invalid { reason } => Err(corrupted(reason)),
    }
}

/// Replaces the metadata blob atomically and durably.
pub fn write_metadata(disk: &dyn Disk, directory: &Path, blob: &[u8]) -> Result<(), StorageError> {
    let mut bytes = Vec::new();
    encode_raw_record(RecordKind::Metadata, blob, &mut bytes)?;
    let temporary = directory.join(METADATA_TEMPORARY_FILE);
    let path = metadata_path(directory);
    let mut file = disk
        .create(&temporary)
        .map_err(|error| StorageError::io("create", &temporary, error))?;
    file.append(&bytes)
        .map_err(|error| StorageError::io("append to", &temporary, error))?;
    file.sync()
        .map_err(|error| StorageError::io("sync", &temporary, error))?;
    drop(file);
    disk.rename(&temporary, &path)
        .map_err(|error| StorageError::io("rename", &temporary, error))?;
    disk.sync_dir(directory)
        .map_err(|error| StorageError::io("sync directory", directory, error))
}
