//! [`Config`]: the knobs of one Raft node, every bound named.

use super::entry::NodeId;

/// Configuration of one Raft node.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's identity. Never 0.
    pub id: NodeId,
    /// Ticks without hearing from a leader before a follower campaigns. The
    /// actual timeout is drawn from [election, 2 × election) per election.
    pub election_timeout_ticks: u64,
    /// Ticks between leader heartbeats. Must be < `election_timeout_ticks`.
    pub heartbeat_interval_ticks: u64,
    /// Ask peers before disrupting the cluster with a new term.
    pub pre_vote: bool,
    /// A leader that cannot hear a quorum for an election timeout steps down.
    pub check_quorum: bool,
    /// At most this many append messages in flight to one follower.
    pub inflight_messages_max: usize,
    /// At most this many bytes of entries in one append message (one entry
    /// larger than this still goes alone).
    pub message_bytes_max: u64,
    /// At most this many bytes of snapshot data in one snapshot chunk.
    pub snapshot_chunk_bytes_max: u64,
    /// At most this many bytes of proposed-but-uncommitted entries on the
    /// leader; further proposals are refused until commit catches up.
    pub uncommitted_bytes_max: u64,
    /// Seed for the randomized election timeout. The only source of randomness.
    pub seed: u64,
    /// A deliberate bug the simulator switches on to prove its checkers
    /// catch it (simulator build only).
    #[cfg(madsim)]
    pub planted_bug: Option<PlantedRaftBug>,
}

/// A deliberate Raft bug (simulator build only).
#[cfg(madsim)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PlantedRaftBug {
    /// Grant votes (and pre-votes) without checking that the candidate's
    /// log is at least as up to date: a stale member can win an election
    /// and overwrite committed entries.
    VoteIgnoringLog,
    /// A leader commits what it persisted itself, without waiting for a
    /// quorum of voters.
    CommitWithoutQuorum,
    /// A follower accepts an append when it holds any entry at the prev
    /// index, without checking that entry's term: a follower holding a
    /// deposed leader's entry there keeps it under the new leader's entries.
    AppendIgnoringPrevTerm,
}

impl Config {
    /// A configuration with etcd's defaults for a 100 ms tick (heartbeat 1
    /// tick, election timeout 10 ticks).
    pub fn new(id: NodeId, seed: u64) -> Config {
        Config {
            id,
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 1,
            pre_vote: true,
            check_quorum: true,
            inflight_messages_max: 256,
            message_bytes_max: 1024 * 1024,
            snapshot_chunk_bytes_max: 1024 * 1024,
            uncommitted_bytes_max: 64 * 1024 * 1024,
            seed,
            #[cfg(madsim)]
            planted_bug: None,
        }
    }
}
