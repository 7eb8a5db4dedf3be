//! `cairn-sim`: runs Cairn's production node driver inside the madsim
//! deterministic simulator under faults and checks what happened.
//!
//! ```text
//! cairn-sim run --scenario scenarios/swarm.scn --seed 42 [--bug NAME] [--check-determinism]
//! cairn-sim scenarios [--dir scenarios] [--seeds 1,2,3|1..1000] [--fresh 2] [--entropy E]
//!     [--weight swarm-quick=500] [--jobs N] [--shard i/n] [--json FILE] [--budget-secs 600]
//! cairn-sim merge FILE...
//! cairn-sim bugs
//! cairn-sim shrink --scenario F --seed N [--bug NAME] [--check NAME] [--out FILE]
//! cairn-sim report --scenario F --seed N [--bug NAME] --out DIR
//! ```
//!
//! Build it with `RUSTFLAGS="--cfg madsim" cargo build -p cairn-sim
//! --target-dir target-sim`; the normal build only says so.

#[cfg(madsim)]
mod cli;
#[cfg(madsim)]
mod workers;

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "cairn-sim runs only in the simulator build: \
         RUSTFLAGS=\"--cfg madsim\" cargo build -p cairn-sim --target-dir target-sim"
    );
    std::process::ExitCode::from(2)
}
