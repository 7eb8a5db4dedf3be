//! [`Disk`]: the seam between Cairn's storage and the file system.
//!
//! Everything the WAL, the snapshot files and the metadata file do to a disk
//! goes through this small synchronous trait, so the simulator can swap the
//! real file system ([`OsDisk`]) for an in-memory one that loses unsynced
//! writes, tears the last write and flips bits (`SimDisk`). The storage code
//! above the seam is the same in both: what is tested is what ships.
//!
//! The trait deliberately mirrors POSIX durability rules rather than hiding
//! them: data reaches stable storage only after [`DiskFile::sync`], and a
//! created, renamed or removed directory entry only after
//! [`Disk::sync_dir`] on its parent directory.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// A file opened for appending. Dropping it closes it.
pub trait DiskFile: Send + fmt::Debug {
    /// Appends `bytes` at the end of the file in one write. The bytes are not
    /// durable until [`DiskFile::sync`] returns `Ok`.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;

    /// Makes every byte appended so far durable (fdatasync). An error means
    /// the file's durable contents are unknown: the caller must not retry.
    fn sync(&mut self) -> io::Result<()>;
}

/// A synchronous file system. Paths are absolute or relative to the process's
/// working directory; the storage code only ever passes paths inside its data
/// directory.
pub trait Disk: Send + Sync + fmt::Debug + 'static {
    /// Creates `path` and its missing parents (like `mkdir -p`).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// The names of the entries (files and directories) directly inside the
    /// directory `path`, sorted.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;

    /// True when `path` names an existing file or directory.
    fn exists(&self, path: &Path) -> io::Result<bool>;

    /// The whole contents of the file `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;

    /// The length of the file `path` in bytes.
    fn file_len(&self, path: &Path) -> io::Result<u64>;

    /// Creates the file `path` empty (truncating it if it exists) and opens
    /// it for appending.
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;

    /// Opens the existing file `path` for appending at its end.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;

    /// Cuts the file `path` to `len` bytes and makes the new length durable.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;

    /// Renames `from` to `to`, replacing `to` if it exists. Durable after
    /// [`Disk::sync_dir`] on the parent directory.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes the file `path`. Durable after [`Disk::sync_dir`] on the parent.
    fn remove(&self, path: &Path) -> io::Result<()>;

    /// Makes the entries of directory `path` (creations, renames, removals)
    /// durable (fsync of the directory).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// The production [`Disk`]: `std::fs`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsDisk;

/// A file of an [`OsDisk`].
#[derive(Debug)]
struct OsFile {
    file: File,
}

impl DiskFile for OsFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

impl Disk for OsDisk {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            match entry.file_name().into_string() {
                Ok(name) => names.push(name),
                Err(name) => {
                    // Cairn never writes such names; they cannot be ours.
                    let directory = path.display();
                    tracing::warn!(%directory, ?name, "ignoring a non-UTF-8 file name");
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        Ok(Box::new(OsFile { file }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Box::new(OsFile { file }))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}
