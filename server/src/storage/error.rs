//! [`StorageError`]: why storage refused to open or to persist.
//!
//! Any error from a call that writes (persist, save_snapshot,
//! write_metadata) poisons the storage: the node must stop, because the
//! durable state is unknown and an fsync is never retried.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use cairn_core::raft::{Index, Term};

/// Why the WAL, a snapshot file or the metadata file could not be used.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StorageError {
    /// A file-system operation failed.
    #[error("{operation} {}: {source}", path.display())]
    Io {
        /// What was being done ("sync", "append to", "rename", ...).
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The disk is full; the write was refused and nothing was acknowledged.
    #[error("no space left on device: {operation} {}", path.display())]
    NoSpace {
        /// What was being done.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
    },
    /// A WAL segment holds a bad record that is not a torn tail: refusing to
    /// start rather than silently dropping or applying it.
    #[error("WAL segment {} is corrupted at offset {offset}: {reason}", segment.display())]
    Corrupted {
        /// The segment file.
        segment: PathBuf,
        /// The byte offset of the bad record in the segment.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// The snapshot the WAL refers to is missing or damaged.
    #[error("snapshot file {} is unusable: {reason}", path.display())]
    SnapshotCorrupted {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The member metadata file is damaged.
    #[error("metadata file {} is corrupted: {reason}", path.display())]
    MetadataCorrupted {
        /// The metadata file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The data directory holds Cairn files but no WAL segment.
    #[error("data directory {} has {found} but no WAL segment", directory.display())]
    MissingWal {
        /// The data directory.
        directory: PathBuf,
        /// What was found without a WAL ("a metadata file", "snapshot files").
        found: &'static str,
    },
    /// An earlier write or sync failed; the storage refuses all further work
    /// and the node must stop.
    #[error("storage is poisoned by an earlier failure ({cause}); the node must stop")]
    Poisoned {
        /// The failure that poisoned it.
        cause: String,
    },
    /// One WAL record would exceed the record size bound.
    #[error("WAL record of {bytes} bytes exceeds the bound of {bytes_max} bytes")]
    RecordTooLarge {
        /// The encoded record size.
        bytes: u64,
        /// The bound.
        bytes_max: u64,
    },
    /// A snapshot older than the current one was handed in.
    #[error(
        "snapshot at index {index} term {term} is older than the current one at index \
         {current_index}"
    )]
    StaleSnapshot {
        /// The index of the snapshot handed in.
        index: Index,
        /// Its term.
        term: Term,
        /// The index of the snapshot already stored.
        current_index: Index,
    },
}

impl StorageError {
    /// Wraps an I/O error, recognising a full disk.
    pub(crate) fn io(operation: &'static str, path: impl Into<PathBuf>, error: io::Error) -> Self {
        let path = path.into();
        if error.kind() == io::ErrorKind::StorageFull {
            StorageError::NoSpace { operation, path }
        } else {
            StorageError::Io {
                operation,
                path,
                source: Arc::new(error),
            }
        }
    }
}
