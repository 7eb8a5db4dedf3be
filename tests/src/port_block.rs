//! A block of TCP ports on 127.0.0.1 owned by one test for its whole life.
//!
//! Tests run in parallel in separate processes (cargo-nextest), restart
//! members on the same ports, and must not collide with each other nor with
//! ports the kernel hands out for outgoing connections. So ports come from
//! a range below the kernel's ephemeral range (32768 and up on Linux), in
//! blocks claimed through lock files created with `create_new` in a shared
//! directory. A claim records the owner's pid; a claim whose owner is gone
//! (a test killed by a timeout) is taken over.

use std::collections::hash_map::RandomState;
use std::fs::{self, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{ErrorKind, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process;

/// First port of the range blocks are taken from.
pub const PORT_RANGE_START: u16 = 10_000;
/// Ports in one block; enough for a 3-member cluster (client and peer each).
pub const PORTS_PER_BLOCK: u16 = 10;
/// Number of blocks in the range: ports 10,000 to 19,999. The range stays
/// below the ephemeral range and away from 2379/2380 and the `make cluster`
/// ports (22379/22380, 32379/32380).
pub const BLOCK_COUNT: u16 = 1_000;
/// Directory (under the system temporary directory) holding the claims.
const CLAIM_DIRECTORY_NAME: &str = "cairn-e2e-port-claims";

/// A claimed block of consecutive ports, released on drop.
#[derive(Debug)]
pub struct PortBlock {
    first_port: u16,
    claim_path: PathBuf,
}

impl PortBlock {
    /// Claims a block whose every port is currently free on 127.0.0.1.
    pub fn claim() -> PortBlock {
        let claim_directory = std::env::temp_dir().join(CLAIM_DIRECTORY_NAME);
        fs::create_dir_all(&claim_directory).unwrap_or_else(|error| {
            panic!(
                "cannot create port claim directory {}: {error}",
                claim_directory.display()
            )
        });
        let start_block = random_block_index();
        for offset in 0..BLOCK_COUNT {
            let block_index = (start_block + offset) % BLOCK_COUNT;
            let first_port = PORT_RANGE_START + block_index * PORTS_PER_BLOCK;
            let claim_path = claim_directory.join(format!("block-{first_port}"));
            if !try_claim(&claim_path) {
                continue;
            }
            let block = PortBlock {
                first_port,
                claim_path,
            };
            if block.ports().all(port_is_free) {
                return block;
            }
            // Dropping releases the claim; some other process uses a port.
        }
        panic!(
            "no free block of {PORTS_PER_BLOCK} ports in {PORT_RANGE_START}..{} (claims in {})",
            PORT_RANGE_START + BLOCK_COUNT * PORTS_PER_BLOCK,
            claim_directory.display()
        );
    }

    /// The `index`-th port of the block.
    pub fn port(&self, index: u16) -> u16 {
        assert!(
            index < PORTS_PER_BLOCK,
            "port index {index} >= block size {PORTS_PER_BLOCK}"
        );
        self.first_port + index
    }

    fn ports(&self) -> impl Iterator<Item = u16> {
        self.first_port..self.first_port + PORTS_PER_BLOCK
    }
}

impl Drop for PortBlock {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_file(&self.claim_path) {
            eprintln!(
                "cannot release port claim {}: {error}",
                self.claim_path.display()
            );
        }
    }
}

/// A random block index, so parallel tests rarely contend for one block.
fn random_block_index() -> u16 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(process::id());
    (hasher.finish() % u64::from(BLOCK_COUNT)) as u16
}

/// Creates the claim file; takes over a claim whose owner process is gone.
fn try_claim(claim_path: &Path) -> bool {
    for _attempt in 0..2 {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(claim_path)
        {
            Ok(mut file) => {
                if let Err(error) = writeln!(file, "{}", process::id()) {
                    panic!("cannot write port claim {}: {error}", claim_path.display());
                }
                return true;
            }
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {
                if owner_is_alive(claim_path) {
                    return false;
                }
                // A stale claim: its owner died without releasing it.
                let _ = fs::remove_file(claim_path);
            }
            Err(error) => panic!("cannot create port claim {}: {error}", claim_path.display()),
        }
    }
    false
}

/// Whether the process recorded in a claim file still runs. An unreadable
/// or half-written claim counts as alive: its owner may be writing it now.
fn owner_is_alive(claim_path: &Path) -> bool {
    let Ok(contents) = fs::read_to_string(claim_path) else {
        return true;
    };
    match contents.trim().parse::<u32>() {
        Ok(pid) => Path::new(&format!("/proc/{pid}")).exists(),
        Err(_) => true,
    }
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}
