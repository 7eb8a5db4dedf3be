//! [`SimDisk`]: an in-memory, deterministic [`Disk`] that misbehaves on demand.
//!
//! The simulator and the storage tests run the real WAL and snapshot code on
//! top of it and inject the faults a real disk can produce:
//!
//! - **Crash** ([`SimDisk::crash`]): everything not made durable is lost.
//!   Each file has a durable image and a volatile image; [`DiskFile::sync`]
//!   makes the volatile image durable. The directory namespace has a durable
//!   and a volatile view too: a create, rename or remove is durable only after
//!   [`Disk::sync_dir`] on its parent directory. After a crash every file is
//!   its durable image under its durable name, and open handles go stale.
//! - **Torn write** ([`SimDisk::crash_tearing_last_write`]): as a crash, but
//!   the last unsynced append keeps a random prefix (drawn from the seeded
//!   RNG), and the unsynced appends before it in the same file survive.
//!   [`SimDisk::crash_zeroing_in_last_write`] instead keeps the whole length
//!   of the last append but zeroes a random range inside it, as when a file
//!   system persisted the new file size and some of the pages but not others.
//!   [`SimDisk::crash_syncing_last_write`] is the other end: the sync of
//!   that file completed and the crash came before it returned.
//! - **Bit flip** ([`SimDisk::flip_bit`]): flips one bit of a file, in both
//!   images, as media corruption would.
//! - **Failed fsync** ([`SimDisk::set_fail_syncs`], or from a chosen sync
//!   on with [`SimDisk::fail_syncs_after`]): file and directory syncs (and
//!   the sync inside truncate) return an I/O error and make nothing durable.
//! - **Disk full** ([`SimDisk::set_full`]): appends and creates fail with
//!   `StorageFull` and write nothing.
//! - **Slow fsync** ([`SimDisk::set_sync_latency`]): every successful sync
//!   calls the [`SyncStallHook`] with the latency. The disk itself keeps no
//!   clock; the simulator's hook stalls the member's process for that long
//!   in simulated time, as a real fsync blocks the thread that called it.
//! - **Wipe** ([`SimDisk::wipe`]): every file and directory is gone, as
//!   when an operator replaces a dead disk.
//!
//! NB: directories themselves are durable as soon as they are created, and a
//! rename across directories is modelled per directory (syncing only the
//! target directory makes the file appear under both names after a crash).
//! Cairn's storage never renames across directories.
//!
//! Everything is deterministic: no wall clock, no hash-map iteration, and the
//! only randomness is a ChaCha8 RNG seeded at construction. The type is a
//! cheap handle (`Arc` inside): the simulator keeps a clone across a member's
//! "process restarts" and hands another clone to each new `RaftStorage`.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::disk::{Disk, DiskFile};

/// An in-memory [`Disk`] with fault injection. Cloning shares the disk.
#[derive(Clone, Debug)]
pub struct SimDisk {
    state: Arc<Mutex<SimDiskState>>,
}

/// Counters of operations and injected faults, for the simulator's trace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimDiskStats {
    /// Successful appends.
    pub appends: u64,
    /// Bytes written by successful appends.
    pub bytes_appended: u64,
    /// Successful file syncs.
    pub syncs: u64,
    /// Successful directory syncs.
    pub directory_syncs: u64,
    /// Syncs (file, directory or truncate) failed by injection.
    pub sync_failures: u64,
    /// Files created.
    pub creates: u64,
    /// Renames.
    pub renames: u64,
    /// Removals.
    pub removes: u64,
    /// Truncations.
    pub truncates: u64,
    /// Appends and creates refused because the disk is full.
    pub no_space_errors: u64,
    /// Crashes.
    pub crashes: u64,
    /// Crashes that tore a write.
    pub torn_writes: u64,
    /// Bits flipped.
    pub bit_flips: u64,
    /// Successful syncs (file or directory) made slow by a latency.
    pub slow_syncs: u64,
    /// Wipes.
    pub wipes: u64,
}

/// Called after every successful sync while a sync latency is set, with
/// that latency, outside the disk's lock: the simulator stalls the calling
/// member's process for that long.
#[derive(Clone)]
pub struct SyncStallHook(Arc<dyn Fn(Duration) + Send + Sync>);

impl SyncStallHook {
    /// A hook that runs `stall`.
    pub fn new(stall: impl Fn(Duration) + Send + Sync + 'static) -> SyncStallHook {
        SyncStallHook(Arc::new(stall))
    }
}

impl std::fmt::Debug for SyncStallHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncStallHook")
    }
}

/// What a crash that tore a write did to the last unsynced append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornWrite {
    /// The file written.
    pub path: PathBuf,
    /// The length of the write.
    pub write_bytes: u64,
    /// How many of its leading bytes are in the file after the crash.
    pub kept_bytes: u64,
    /// The bytes of the write (relative to its start) that read back as
    /// zeros: pages the file system never wrote, although the file's length
    /// covers them.
    pub zeroed: Option<Range<u64>>,
}

/// How a crash treats the last unsynced append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TearMode {
    /// Lost with everything else unsynced.
    None,
    /// A strict prefix survives.
    Prefix,
    /// Its length survives, with a range of zeros inside.
    ZeroedRange,
}

/// What a file's durable image is, relative to its volatile image.
#[derive(Clone, Debug)]
enum DurableImage {
    /// The durable image is the first `len` bytes of the volatile image (the
    /// common case: appends since the last sync).
    Prefix(usize),
    /// The volatile image was truncated or recreated below the durable image.
    Divergent(Vec<u8>),
}

/// One file's contents (an inode: names refer to it).
#[derive(Clone, Debug)]
struct Inode {
    volatile: Vec<u8>,
    durable: DurableImage,
}

impl Inode {
    fn durable_bytes(&self) -> &[u8] {
        match &self.durable {
            DurableImage::Prefix(len) => &self.volatile[..*len],
            DurableImage::Divergent(bytes) => bytes,
        }
    }

    /// Freezes the durable image before the volatile image shrinks below it.
    fn detach_durable(&mut self, new_volatile_len: usize) {
        if let DurableImage::Prefix(len) = self.durable {
            if new_volatile_len < len {
                self.durable = DurableImage::Divergent(self.volatile[..len].to_vec());
            }
        }
    }
}

/// The last append not yet followed by a sync of its file.
#[derive(Clone, Copy, Debug)]
struct UnsyncedAppend {
    inode: u64,
    start: usize,
    len: usize,
}

#[derive(Debug)]
struct SimDiskState {
    rng: ChaCha8Rng,
    /// Incremented by each crash; handles of an older generation are stale.
    generation: u64,
    next_inode: u64,
    inodes: BTreeMap<u64, Inode>,
    /// The namespace as the running process sees it.
    names: BTreeMap<PathBuf, u64>,
    /// The namespace as it would be after a crash.
    durable_names: BTreeMap<PathBuf, u64>,
    directories: BTreeSet<PathBuf>,
    last_unsynced_append: Option<UnsyncedAppend>,
    fail_syncs: bool,
    /// When set, this many more syncs succeed and then `fail_syncs` turns on.
    syncs_before_failure: Option<u64>,
    full: bool,
    /// How long each successful sync takes, when slow.
    sync_latency: Option<Duration>,
    sync_stall_hook: Option<SyncStallHook>,
    stats: SimDiskStats,
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

fn no_space() -> io::Error {
    io::Error::new(
        io::ErrorKind::StorageFull,
        "no space left on device (simulated disk full)",
    )
}

fn injected_sync_failure(path: &Path) -> io::Error {
    io::Error::other(format!(
        "{}: input/output error (simulated fsync failure)",
        path.display()
    ))
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl SimDiskState {
    fn parent_exists(&self, path: &Path) -> bool {
        let parent = parent_of(path);
        parent.as_os_str().is_empty() || self.directories.contains(&parent)
    }

    fn inode_of(&self, path: &Path) -> io::Result<u64> {
        self.names.get(path).copied().ok_or_else(|| not_found(path))
    }

    /// Whether the sync being attempted fails (counting down
    /// `syncs_before_failure`).
    /// Counts a successful sync and returns the stall it owes, if syncs are
    /// slow: the caller runs the hook once the lock is released.
    fn sync_stall(&mut self) -> Option<(SyncStallHook, Duration)> {
        let latency = self.sync_latency?;
        let hook = self.sync_stall_hook.clone()?;
        self.stats.slow_syncs += 1;
        Some((hook, latency))
    }

    fn sync_fails(&mut self) -> bool {
        if let Some(remaining) = self.syncs_before_failure {
            if remaining == 0 {
                self.syncs_before_failure = None;
                self.fail_syncs = true;
            } else {
                self.syncs_before_failure = Some(remaining - 1);
            }
        }
        self.fail_syncs
    }

    /// Drops inodes no name refers to, volatile or durable.
    fn collect_garbage(&mut self) {
        let referenced: BTreeSet<u64> = self
            .names
            .values()
            .chain(self.durable_names.values())
            .copied()
            .collect();
        self.inodes.retain(|inode, _| referenced.contains(inode));
    }
}

impl SimDisk {
    /// An empty disk whose torn writes are drawn from `seed`.
    pub fn new(seed: u64) -> SimDisk {
        SimDisk {
            state: Arc::new(Mutex::new(SimDiskState {
                rng: ChaCha8Rng::seed_from_u64(seed),
                generation: 0,
                next_inode: 1,
                inodes: BTreeMap::new(),
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                directories: BTreeSet::new(),
                last_unsynced_append: None,
                fail_syncs: false,
                syncs_before_failure: None,
                full: false,
                sync_latency: None,
                sync_stall_hook: None,
                stats: SimDiskStats::default(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SimDiskState> {
        // A panic elsewhere while holding the lock cannot leave the maps
        // half-updated in a way that matters to a test that is failing anyway.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Simulates power loss: every file reverts to its durable image under
    /// its durable name, and every open handle goes stale.
    pub fn crash(&self) {
        self.crash_inner(TearMode::None);
    }

    /// Simulates power loss during the last unsynced append: as
    /// [`SimDisk::crash`], but that append keeps a random strict prefix of
    /// its bytes (and the unsynced appends before it in the same file
    /// survive). Returns what was torn, or `None` when there was no unsynced
    /// append to tear (then it is a plain crash).
    pub fn crash_tearing_last_write(&self) -> Option<TornWrite> {
        self.crash_inner(TearMode::Prefix)
    }

    /// Simulates power loss after the file system persisted the size of the
    /// last unsynced append but not all of its pages: that append keeps its
    /// length, with a random non-empty range of it read back as zeros (the
    /// unsynced appends before it in the same file survive). Returns what
    /// was torn, or `None` when there was no unsynced append to tear.
    pub fn crash_zeroing_in_last_write(&self) -> Option<TornWrite> {
        self.crash_inner(TearMode::ZeroedRange)
    }

    /// Simulates power loss right after the sync of the file holding the
    /// last unsynced append completed, before its caller saw it return:
    /// that file is durable whole (its earlier unsynced appends too), and
    /// everything else unsynced is lost as in [`SimDisk::crash`]. Returns
    /// the write kept (`kept_bytes == write_bytes`), or `None` when there
    /// was no unsynced append (then it is a plain crash).
    pub fn crash_syncing_last_write(&self) -> Option<TornWrite> {
        let kept = {
            let mut state = self.lock();
            let state = &mut *state;
            let append = state.last_unsynced_append.take();
            append.and_then(|append| {
                let inode = state.inodes.get_mut(&append.inode)?;
                inode.durable = DurableImage::Prefix(inode.volatile.len());
                let path = state
                    .names
                    .iter()
                    .find(|(_, id)| **id == append.inode)
                    .map(|(path, _)| path.clone())
                    .unwrap_or_default();
                Some(TornWrite {
                    path,
                    write_bytes: append.len as u64,
                    kept_bytes: append.len as u64,
                    zeroed: None,
                })
            })
        };
        self.crash_inner(TearMode::None);
        kept
    }

    fn crash_inner(&self, mode: TearMode) -> Option<TornWrite> {
        let mut state = self.lock();
        let state = &mut *state;
        state.generation += 1;
        state.stats.crashes += 1;
        state.names = state.durable_names.clone();
        state.collect_garbage();
        let torn_append = match mode {
            TearMode::None => None,
            TearMode::Prefix | TearMode::ZeroedRange => state.last_unsynced_append,
        };
        state.last_unsynced_append = None;
        let mut torn_write = None;
        for (inode_id, inode) in state.inodes.iter_mut() {
            let tear_here = torn_append.filter(|append| append.inode == *inode_id);
            match (&inode.durable, tear_here) {
                (DurableImage::Prefix(durable_len), Some(append))
                    if append.start >= *durable_len && append.len > 0 =>
                {
                    let (kept, zeroed) = match mode {
                        TearMode::ZeroedRange => {
                            let start = state.rng.gen_range(0..append.len);
                            let end = state.rng.gen_range(start + 1..=append.len);
                            inode.volatile[append.start + start..append.start + end].fill(0);
                            (append.len, Some(start as u64..end as u64))
                        }
                        TearMode::Prefix | TearMode::None => {
                            (state.rng.gen_range(0..append.len), None)
                        }
                    };
                    inode.volatile.truncate(append.start + kept);
                    let path = state
                        .durable_names
                        .iter()
                        .find(|(_, id)| **id == *inode_id)
                        .map(|(path, _)| path.clone())
                        .unwrap_or_default();
                    torn_write = Some(TornWrite {
                        path,
                        write_bytes: append.len as u64,
                        kept_bytes: kept as u64,
                        zeroed,
                    });
                }
                (DurableImage::Prefix(durable_len), _) => {
                    let durable_len = *durable_len;
                    inode.volatile.truncate(durable_len);
                }
                (DurableImage::Divergent(bytes), _) => {
                    inode.volatile = bytes.clone();
                }
            }
            inode.durable = DurableImage::Prefix(inode.volatile.len());
        }
        if torn_write.is_some() {
            state.stats.torn_writes += 1;
        }
        tracing::debug!(generation = state.generation, torn = ?torn_write, "simulated crash");
        torn_write
    }

    /// Flips bit `bit` (0..8) of the byte at `byte_offset` of the file
    /// `path`, in its volatile and (where it has one) durable image.
    pub fn flip_bit(&self, path: &Path, byte_offset: u64, bit: u8) -> io::Result<()> {
        if bit >= 8 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bit {bit} >= 8"),
            ));
        }
        let mut state = self.lock();
        let inode_id = state.inode_of(path)?;
        let inode = state
            .inodes
            .get_mut(&inode_id)
            .ok_or_else(|| not_found(path))?;
        let len = inode.volatile.len();
        let offset = usize::try_from(byte_offset).unwrap_or(usize::MAX);
        if offset >= len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: offset {byte_offset} >= length {len}", path.display()),
            ));
        }
        let mask = 1u8 << bit;
        inode.volatile[offset] ^= mask;
        if let DurableImage::Divergent(bytes) = &mut inode.durable {
            if let Some(byte) = bytes.get_mut(offset) {
                *byte ^= mask;
            }
        }
        state.stats.bit_flips += 1;
        Ok(())
    }

    /// While `fail` is true, every sync fails with an I/O error. Setting it
    /// either way cancels [`SimDisk::fail_syncs_after`].
    pub fn set_fail_syncs(&self, fail: bool) {
        let mut state = self.lock();
        state.fail_syncs = fail;
        state.syncs_before_failure = None;
    }

    /// Lets the next `successful_syncs` syncs (file, directory or truncate)
    /// succeed, then fails every sync as [`SimDisk::set_fail_syncs`] does,
    /// so a test can fail each sync point of an operation in turn.
    pub fn fail_syncs_after(&self, successful_syncs: u64) {
        let mut state = self.lock();
        state.fail_syncs = false;
        state.syncs_before_failure = Some(successful_syncs);
    }

    /// While `full` is true, appends and creates fail with `StorageFull`.
    pub fn set_full(&self, full: bool) {
        self.lock().full = full;
    }

    /// While `latency` is set, every successful sync (file or directory)
    /// calls the stall hook with it. `None` makes syncs fast again.
    pub fn set_sync_latency(&self, latency: Option<Duration>) {
        self.lock().sync_latency = latency;
    }

    /// Installs the hook slow syncs call (see [`SyncStallHook`]).
    pub fn set_sync_stall_hook(&self, hook: SyncStallHook) {
        self.lock().sync_stall_hook = Some(hook);
    }

    /// Erases every file and directory, durable or not, as a replaced disk:
    /// open handles go stale. Fault switches (failing syncs, full, slow)
    /// and the stall hook stay as they are.
    pub fn wipe(&self) {
        let mut state = self.lock();
        state.generation += 1;
        state.names.clear();
        state.durable_names.clear();
        state.directories.clear();
        state.inodes.clear();
        state.last_unsynced_append = None;
        state.stats.wipes += 1;
        tracing::debug!(generation = state.generation, "simulated disk wiped");
    }

    /// The operation and fault counters so far.
    pub fn stats(&self) -> SimDiskStats {
        self.lock().stats
    }

    /// Every file path the running process sees, sorted.
    pub fn file_paths(&self) -> Vec<PathBuf> {
        self.lock().names.keys().cloned().collect()
    }

    /// The length of the durable image of `path` (what a crash would keep).
    pub fn durable_len(&self, path: &Path) -> io::Result<u64> {
        let state = self.lock();
        let inode_id = state
            .durable_names
            .get(path)
            .copied()
            .ok_or_else(|| not_found(path))?;
        let inode = state.inodes.get(&inode_id).ok_or_else(|| not_found(path))?;
        Ok(inode.durable_bytes().len() as u64)
    }

    fn handle(&self, state: &SimDiskState, inode: u64, path: &Path) -> Box<dyn DiskFile> {
        Box::new(SimFile {
            disk: self.clone(),
            inode,
            generation: state.generation,
            path: path.to_path_buf(),
        })
    }
}

impl Disk for SimDisk {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        for ancestor in path.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                state.directories.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let state = self.lock();
        if !state.directories.contains(path) {
            return Err(not_found(path));
        }
        let files = state.names.keys();
        let directories = state.directories.iter();
        let names: BTreeSet<String> = files
            .chain(directories)
            .filter(|child| child.parent() == Some(path))
            .filter_map(|child| child.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        Ok(names.into_iter().collect())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let state = self.lock();
        Ok(state.names.contains_key(path) || state.directories.contains(path))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.lock();
        let inode_id = state.inode_of(path)?;
        let inode = state.inodes.get(&inode_id).ok_or_else(|| not_found(path))?;
        Ok(inode.volatile.clone())
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        let state = self.lock();
        let inode_id = state.inode_of(path)?;
        let inode = state.inodes.get(&inode_id).ok_or_else(|| not_found(path))?;
        Ok(inode.volatile.len() as u64)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let mut state = self.lock();
        if state.full {
            state.stats.no_space_errors += 1;
            return Err(no_space());
        }
        if !state.parent_exists(path) {
            return Err(not_found(&parent_of(path)));
        }
        let inode_id = match state.names.get(path).copied() {
            Some(inode_id) => {
                let inode = state
                    .inodes
                    .get_mut(&inode_id)
                    .ok_or_else(|| not_found(path))?;
                inode.detach_durable(0);
                inode.volatile.clear();
                if state
                    .last_unsynced_append
                    .is_some_and(|append| append.inode == inode_id)
                {
                    state.last_unsynced_append = None;
                }
                inode_id
            }
            None => {
                let inode_id = state.next_inode;
                state.next_inode += 1;
                let inode = Inode {
                    volatile: Vec::new(),
                    durable: DurableImage::Prefix(0),
                };
                state.inodes.insert(inode_id, inode);
                state.names.insert(path.to_path_buf(), inode_id);
                inode_id
            }
        };
        state.stats.creates += 1;
        Ok(self.handle(&state, inode_id, path))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let state = self.lock();
        let inode_id = state.inode_of(path)?;
        Ok(self.handle(&state, inode_id, path))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = self.lock();
        let inode_id = state.inode_of(path)?;
        let fail_syncs = state.sync_fails();
        let new_len = usize::try_from(len).unwrap_or(usize::MAX);
        let inode = state
            .inodes
            .get_mut(&inode_id)
            .ok_or_else(|| not_found(path))?;
        inode.detach_durable(new_len);
        inode.volatile.resize(new_len, 0);
        if state
            .last_unsynced_append
            .is_some_and(|append| append.inode == inode_id)
        {
            state.last_unsynced_append = None;
        }
        if fail_syncs {
            state.stats.sync_failures += 1;
            return Err(injected_sync_failure(path));
        }
        let inode = state
            .inodes
            .get_mut(&inode_id)
            .ok_or_else(|| not_found(path))?;
        inode.durable = DurableImage::Prefix(inode.volatile.len());
        state.stats.truncates += 1;
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        if !state.parent_exists(to) {
            return Err(not_found(&parent_of(to)));
        }
        let inode_id = state.names.remove(from).ok_or_else(|| not_found(from))?;
        state.names.insert(to.to_path_buf(), inode_id);
        state.stats.renames += 1;
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.names.remove(path).ok_or_else(|| not_found(path))?;
        state.stats.removes += 1;
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        if !state.directories.contains(path) {
            return Err(not_found(path));
        }
        if state.sync_fails() {
            state.stats.sync_failures += 1;
            return Err(injected_sync_failure(path));
        }
        let in_directory = |child: &PathBuf| child.parent() == Some(path);
        state.durable_names.retain(|child, _| !in_directory(child));
        let entries: Vec<(PathBuf, u64)> = state
            .names
            .iter()
            .filter(|(child, _)| in_directory(child))
            .map(|(child, inode)| (child.clone(), *inode))
            .collect();
        state.durable_names.extend(entries);
        state.collect_garbage();
        state.stats.directory_syncs += 1;
        let stall = state.sync_stall();
        drop(state);
        if let Some((hook, latency)) = stall {
            (hook.0)(latency);
        }
        Ok(())
    }
}

/// A handle to a [`SimDisk`] file. It refers to the file's inode, as a file
/// descriptor does, so it survives a rename.
#[derive(Debug)]
struct SimFile {
    disk: SimDisk,
    inode: u64,
    generation: u64,
    path: PathBuf,
}

impl SimFile {
    fn check_fresh(&self, state: &SimDiskState) -> io::Result<()> {
        if state.generation != self.generation || !state.inodes.contains_key(&self.inode) {
            return Err(io::Error::other(format!(
                "{}: stale file handle (the disk crashed or the file was collected)",
                self.path.display()
            )));
        }
        Ok(())
    }
}

impl DiskFile for SimFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.disk.lock();
        self.check_fresh(&state)?;
        if state.full {
            state.stats.no_space_errors += 1;
            return Err(no_space());
        }
        let inode = state
            .inodes
            .get_mut(&self.inode)
            .ok_or_else(|| not_found(&self.path))?;
        let start = inode.volatile.len();
        inode.volatile.extend_from_slice(bytes);
        state.last_unsynced_append = Some(UnsyncedAppend {
            inode: self.inode,
            start,
            len: bytes.len(),
        });
        state.stats.appends += 1;
        state.stats.bytes_appended += bytes.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut state = self.disk.lock();
        self.check_fresh(&state)?;
        if state.sync_fails() {
            state.stats.sync_failures += 1;
            return Err(injected_sync_failure(&self.path));
        }
        let inode = state
            .inodes
            .get_mut(&self.inode)
            .ok_or_else(|| not_found(&self.path))?;
        inode.durable = DurableImage::Prefix(inode.volatile.len());
        if state
            .last_unsynced_append
            .is_some_and(|append| append.inode == self.inode)
        {
            state.last_unsynced_append = None;
        }
        state.stats.syncs += 1;
        let stall = state.sync_stall();
        drop(state);
        if let Some((hook, latency)) = stall {
            (hook.0)(latency);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Creates `dir()/name` on `disk` with its directory entry synced.
    fn durably_created(disk: &SimDisk, name: &str) -> (PathBuf, Box<dyn DiskFile>) {
        disk.create_dir_all(&dir()).unwrap();
        let path = dir().join(name);
        let file = disk.create(&path).unwrap();
        disk.sync_dir(&dir()).unwrap();
        (path, file)
    }

    fn dir() -> PathBuf {
        PathBuf::from("/data")
    }

    #[test]
    fn crash_keeps_synced_bytes_and_loses_the_rest() {
        let disk = SimDisk::new(1);
        let (path, mut file) = durably_created(&disk, "a");
        file.append(b"hello").unwrap();
        file.sync().unwrap();
        file.append(b" world").unwrap();
        assert_eq!(disk.read(&path).unwrap(), b"hello world");
        disk.crash();
        assert_eq!(disk.read(&path).unwrap(), b"hello");
        assert!(
            file.append(b"!").is_err(),
            "a handle from before the crash must be stale"
        );
    }

    #[test]
    fn crash_forgets_entries_not_followed_by_a_directory_sync() {
        let disk = SimDisk::new(1);
        disk.create_dir_all(&dir()).unwrap();
        let kept = dir().join("kept");
        let lost = dir().join("lost");
        let mut file = disk.create(&kept).unwrap();
        file.append(b"1").unwrap();
        file.sync().unwrap();
        disk.sync_dir(&dir()).unwrap();
        let mut file = disk.create(&lost).unwrap();
        file.append(b"2").unwrap();
        file.sync().unwrap();
        disk.rename(&kept, &dir().join("renamed")).unwrap();
        disk.crash();
        assert_eq!(disk.list_dir(&dir()).unwrap(), vec!["kept".to_string()]);
        assert_eq!(disk.read(&kept).unwrap(), b"1");
    }

    #[test]
    fn torn_write_keeps_a_strict_prefix_of_the_last_append() {
        for seed in 0..32 {
            let disk = SimDisk::new(seed);
            disk.create_dir_all(&dir()).unwrap();
            let path = dir().join("a");
            let mut file = disk.create(&path).unwrap();
            disk.sync_dir(&dir()).unwrap();
            file.append(b"synced").unwrap();
            file.sync().unwrap();
            file.append(b"first").unwrap();
            file.append(b"second").unwrap();
            let torn = disk
                .crash_tearing_last_write()
                .expect("an unsynced append to tear");
            assert_eq!(torn.write_bytes, 6);
            assert!(torn.kept_bytes < 6, "kept {} of 6", torn.kept_bytes);
            let contents = disk.read(&path).unwrap();
            let expected = b"syncedfirstsecond";
            assert_eq!(contents.len() as u64, 11 + torn.kept_bytes);
            assert_eq!(&contents[..], &expected[..contents.len()]);
        }
    }

    #[test]
    fn zeroing_crash_keeps_the_length_and_zeroes_a_range_of_the_last_append() {
        for seed in 0..32 {
            let disk = SimDisk::new(seed);
            disk.create_dir_all(&dir()).unwrap();
            let path = dir().join("a");
            let mut file = disk.create(&path).unwrap();
            disk.sync_dir(&dir()).unwrap();
            file.append(b"synced").unwrap();
            file.sync().unwrap();
            file.append(b"abcdefgh").unwrap();
            let torn = disk
                .crash_zeroing_in_last_write()
                .expect("an unsynced append to tear");
            let zeroed = torn.zeroed.clone().expect("a zeroed range");
            assert!(zeroed.start < zeroed.end && zeroed.end <= 8, "{zeroed:?}");
            let contents = disk.read(&path).unwrap();
            let mut expected = b"syncedabcdefgh".to_vec();
            expected[6 + zeroed.start as usize..6 + zeroed.end as usize].fill(0);
            assert_eq!(contents, expected, "seed {seed}");
        }
    }

    #[test]
    fn crash_syncing_last_write_keeps_that_file_whole_and_loses_the_rest() {
        let disk = SimDisk::new(5);
        let (other_path, mut other) = durably_created(&disk, "other");
        let (path, mut file) = durably_created(&disk, "wal");
        file.append(b"synced ").unwrap();
        file.sync().unwrap();
        other.append(b"lost").unwrap();
        file.append(b"earlier ").unwrap();
        file.append(b"last").unwrap();
        let kept = disk.crash_syncing_last_write().expect("an unsynced append");
        assert_eq!(kept.path, path);
        assert_eq!(
            (kept.write_bytes, kept.kept_bytes, kept.zeroed),
            (4, 4, None)
        );
        assert_eq!(disk.read(&path).unwrap(), b"synced earlier last");
        assert_eq!(disk.read(&other_path).unwrap(), b"");
        assert!(file.append(b"x").is_err(), "handles go stale");
        // Nothing unsynced left: a plain crash.
        assert_eq!(disk.crash_syncing_last_write(), None);
        assert_eq!(disk.read(&path).unwrap(), b"synced earlier last");
    }

    #[test]
    fn failed_sync_makes_nothing_durable() {
        let disk = SimDisk::new(1);
        let (path, mut file) = durably_created(&disk, "a");
        file.append(b"data").unwrap();
        disk.set_fail_syncs(true);
        assert!(file.sync().is_err());
        assert!(disk.sync_dir(&dir()).is_err());
        disk.crash();
        assert_eq!(disk.read(&path).unwrap(), b"");
        assert_eq!(disk.stats().sync_failures, 2);
    }

    #[test]
    fn syncs_fail_after_the_countdown() {
        let disk = SimDisk::new(1);
        disk.create_dir_all(&dir()).unwrap();
        let mut file = disk.create(&dir().join("a")).unwrap();
        disk.fail_syncs_after(2);
        file.sync().unwrap();
        disk.sync_dir(&dir()).unwrap();
        assert!(file.sync().is_err());
        assert!(file.sync().is_err(), "failures persist");
        disk.set_fail_syncs(false);
        file.sync().unwrap();
    }

    #[test]
    fn full_disk_refuses_appends_and_writes_nothing() {
        let disk = SimDisk::new(1);
        disk.create_dir_all(&dir()).unwrap();
        let path = dir().join("a");
        let mut file = disk.create(&path).unwrap();
        disk.set_full(true);
        let error = file.append(b"data").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
        assert!(disk.create(&dir().join("b")).is_err());
        assert_eq!(disk.read(&path).unwrap(), b"");
    }

    #[test]
    fn slow_syncs_call_the_stall_hook_after_succeeding() {
        let disk = SimDisk::new(1);
        let stalls = Arc::new(Mutex::new(Vec::new()));
        let recorded = stalls.clone();
        disk.set_sync_stall_hook(SyncStallHook::new(move |latency| {
            recorded.lock().unwrap().push(latency);
        }));
        disk.create_dir_all(&dir()).unwrap();
        let mut file = disk.create(&dir().join("a")).unwrap();
        file.sync().unwrap();
        assert!(stalls.lock().unwrap().is_empty(), "fast syncs do not stall");
        let latency = Duration::from_millis(250);
        disk.set_sync_latency(Some(latency));
        file.append(b"data").unwrap();
        file.sync().unwrap();
        disk.sync_dir(&dir()).unwrap();
        disk.set_fail_syncs(true);
        assert!(file.sync().is_err());
        assert_eq!(*stalls.lock().unwrap(), vec![latency, latency]);
        disk.set_fail_syncs(false);
        disk.set_sync_latency(None);
        file.sync().unwrap();
        assert_eq!(stalls.lock().unwrap().len(), 2);
        assert_eq!(disk.stats().slow_syncs, 2);
    }

    #[test]
    fn wipe_erases_everything_and_stales_handles() {
        let disk = SimDisk::new(1);
        let (path, mut file) = durably_created(&disk, "a");
        file.append(b"data").unwrap();
        file.sync().unwrap();
        disk.wipe();
        assert!(!disk.exists(&path).unwrap());
        assert!(!disk.exists(&dir()).unwrap());
        assert!(disk.file_paths().is_empty());
        assert!(file.append(b"more").is_err(), "the old handle is stale");
        disk.crash();
        assert!(
            !disk.exists(&path).unwrap(),
            "nothing durable survives a wipe"
        );
        disk.create_dir_all(&dir()).unwrap();
        assert!(disk.create(&path).is_ok(), "the wiped disk is usable again");
        assert_eq!(disk.stats().wipes, 1);
    }

    #[test]
    fn flip_bit_changes_one_bit_in_both_images() {
        let disk = SimDisk::new(1);
        let (path, mut file) = durably_created(&disk, "a");
        file.append(&[0u8; 4]).unwrap();
        file.sync().unwrap();
        disk.flip_bit(&path, 2, 3).unwrap();
        assert_eq!(disk.read(&path).unwrap(), vec![0, 0, 8, 0]);
        disk.crash();
        assert_eq!(disk.read(&path).unwrap(), vec![0, 0, 8, 0]);
        assert!(disk.flip_bit(&path, 4, 0).is_err());
        assert!(disk.flip_bit(&path, 0, 8).is_err());
    }

    #[test]
    fn truncate_then_crash_keeps_the_truncation() {
        let disk = SimDisk::new(1);
        let (path, mut file) = durably_created(&disk, "a");
        file.append(b"abcdef").unwrap();
        file.sync().unwrap();
        disk.truncate(&path, 3).unwrap();
        disk.crash();
        assert_eq!(disk.read(&path).unwrap(), b"abc");
    }
}
