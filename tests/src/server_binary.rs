//! Which server the suite runs against, and where its binary is.
//!
//! The same tests run against the real etcd (to prove the tests and their
//! expected outputs right) and against cairn (to prove cairn compatible).
//! `CAIRN_E2E_SERVER` selects the server; both take etcd's flag names.

use std::env;
use std::path::{Path, PathBuf};

/// Environment variable selecting the server: `cairn` (default) or `etcd`.
pub const SERVER_VARIABLE: &str = "CAIRN_E2E_SERVER";
/// Environment variable naming the cairn binary explicitly.
pub const CAIRN_BINARY_VARIABLE: &str = "CAIRN_BIN";
/// Environment variable naming the etcd binary explicitly.
pub const ETCD_BINARY_VARIABLE: &str = "CAIRN_E2E_ETCD_BIN";
/// Where Debian's etcd-server package installs etcd.
const ETCD_SYSTEM_PATH: &str = "/usr/bin/etcd";

/// The server implementation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// Cairn's `cairn` binary, built from this workspace.
    Cairn,
    /// The real etcd, the reference behaviour.
    Etcd,
}

impl ServerKind {
    /// Reads `CAIRN_E2E_SERVER`; panics on a value that is neither server.
    pub fn from_environment() -> ServerKind {
        match env::var(SERVER_VARIABLE) {
            Err(env::VarError::NotPresent) => ServerKind::Cairn,
            Ok(value) if value.is_empty() || value == "cairn" => ServerKind::Cairn,
            Ok(value) if value == "etcd" => ServerKind::Etcd,
            Ok(value) => panic!("{SERVER_VARIABLE}={value:?}: expected \"cairn\" or \"etcd\""),
            Err(error) => panic!("{SERVER_VARIABLE} is not valid unicode: {error}"),
        }
    }
}

/// A located, existing server binary.
#[derive(Clone, Debug)]
pub struct ServerBinary {
    /// Which server the binary is.
    pub kind: ServerKind,
    /// Absolute or `PATH`-free path to the executable.
    pub path: PathBuf,
}

impl ServerBinary {
    /// Finds the binary of the server selected by the environment, or
    /// panics with a message saying how to provide it.
    pub fn locate() -> ServerBinary {
        let kind = ServerKind::from_environment();
        let path = match kind {
            ServerKind::Cairn => locate_cairn(),
            ServerKind::Etcd => locate_etcd(),
        };
        ServerBinary { kind, path }
    }
}

fn locate_cairn() -> PathBuf {
    if let Some(explicit) = env::var_os(CAIRN_BINARY_VARIABLE) {
        let path = PathBuf::from(explicit);
        assert!(
            path.is_file(),
            "{CAIRN_BINARY_VARIABLE}={} does not name a file",
            path.display()
        );
        return path;
    }
    let mut candidates = Vec::new();
    // The test executable lives in <target>/<profile>/deps/; the binary of
    // the same build is <target>/<profile>/cairn. This honours
    // CARGO_TARGET_DIR and the profile the tests were built with.
    if let Ok(test_executable) = env::current_exe() {
        if let Some(profile_directory) = test_executable.parent().and_then(Path::parent) {
            candidates.push(profile_directory.join("cairn"));
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for profile in ["debug", "release"] {
        candidates.push(workspace.join("target").join(profile).join("cairn"));
    }
    let newest = candidates
        .iter()
        .filter(|candidate| candidate.is_file())
        .max_by_key(|candidate| {
            candidate
                .metadata()
                .and_then(|metadata| metadata.modified())
                .ok()
        });
    match newest {
        Some(path) => path.clone(),
        None => panic!(
            "cairn binary not found (looked at {candidates:?}); build it with \
             `cargo build -p cairn-server`, set {CAIRN_BINARY_VARIABLE}=<path>, or run against \
             etcd with {SERVER_VARIABLE}=etcd"
        ),
    }
}

fn locate_etcd() -> PathBuf {
    if let Some(explicit) = env::var_os(ETCD_BINARY_VARIABLE) {
        let path = PathBuf::from(explicit);
        assert!(
            path.is_file(),
            "{ETCD_BINARY_VARIABLE}={} does not name a file",
            path.display()
        );
        return path;
    }
    find_on_path("etcd")
        .or_else(|| Some(PathBuf::from(ETCD_SYSTEM_PATH)).filter(|path| path.is_file()))
        .unwrap_or_else(|| {
            panic!(
                "etcd binary not found on PATH nor at {ETCD_SYSTEM_PATH}; install the Debian \
                 package etcd-server or set {ETCD_BINARY_VARIABLE}=<path>"
            )
        })
}

/// The first file called `name` in a `PATH` directory.
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let search_path = env::var_os("PATH")?;
    env::split_paths(&search_path)
        .map(|directory| directory.join(name))
        .find(|candidate| candidate.is_file())
}
