//! cairn-core: Cairn's pure consensus and state machine.
//!
//! Nothing in this crate performs I/O, reads a clock, spawns a thread or
//! draws unseeded randomness. Time enters as [`raft::Raft::tick`], messages
//! as [`raft::Raft::step`], and every effect leaves as a [`raft::Ready`]
//! that the driver carries out.

#![warn(missing_docs)]

pub mod kv;
pub mod raft;
