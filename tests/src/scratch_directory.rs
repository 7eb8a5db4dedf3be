//! A per-test temporary directory, removed when the test ends.
//!
//! Data directories and server logs of one test must never collide with
//! those of a test running in parallel, nor outlive the test (unless
//! `CAIRN_E2E_KEEP_DIRS` asks to keep them for a post-mortem).

use std::fs;
use std::path::{Path, PathBuf};
use std::process;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Environment variable that keeps scratch directories after the test.
pub const KEEP_DIRECTORIES_VARIABLE: &str = "CAIRN_E2E_KEEP_DIRS";

/// Distinguishes directories created by one process in the same nanosecond.
static NEXT_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A fresh directory under the system temporary directory.
#[derive(Debug)]
pub struct ScratchDirectory {
    path: PathBuf,
}

impl ScratchDirectory {
    /// Creates `<tmp>/cairn-e2e-<label>-<pid>-<nanos>-<sequence>`.
    pub fn new(label: &str) -> ScratchDirectory {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or(0);
        let sequence = NEXT_SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "cairn-e2e-{label}-{}-{nanos}-{sequence}",
            process::id()
        ));
        fs::create_dir_all(&path)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", path.display()));
        ScratchDirectory { path }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDirectory {
    fn drop(&mut self) {
        if std::env::var_os(KEEP_DIRECTORIES_VARIABLE).is_some() {
            eprintln!("keeping scratch directory {}", self.path.display());
            return;
        }
        if let Err(error) = fs::remove_dir_all(&self.path) {
            eprintln!(
                "cannot remove scratch directory {}: {error}",
                self.path.display()
            );
        }
    }
}
