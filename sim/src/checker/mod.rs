//! The checkers: each takes what the simulator recorded (the client
//! history, the committed event log, per-step node observations, watch
//! streams) and returns a report. They are pure and deterministic: no
//! clock, no unseeded randomness, bounded by step budgets, so a seed's
//! verdict replays exactly.

pub mod convergence;
pub mod durability;
pub mod implicated;
pub mod lease;
pub mod linearizable;
pub mod raft;
pub mod revision;
pub mod txn;
pub mod verdict;
pub mod watch;
