//! Messages between Raft peers. The driver treats them as opaque: it
//! serializes a [`Message`] and delivers it to `to`, nothing more.

use serde::{Deserialize, Serialize};

use super::entry::{Entry, Index, NodeId, SnapshotMetadata, Term};

/// One message from one peer to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The sender's term (for pre-vote messages, the term it would campaign in).
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of Raft message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// Would you vote for me in `term`? (pre-vote; no state changes on receipt)
    PreVote {
        /// The candidate's last log index.
        last_log_index: Index,
        /// The candidate's last log term.
        last_log_term: Term,
    },
    /// Answer to `PreVote`.
    PreVoteResponse {
        /// True when the vote is refused.
        reject: bool,
    },
    /// RequestVote (the Raft paper, §5.2).
    Vote {
        /// The candidate's last log index.
        last_log_index: Index,
        /// The candidate's last log term.
        last_log_term: Term,
        /// Set when the election follows a leader transfer, so that
        /// receivers ignore their leader lease.
        transfer: bool,
    },
    /// Answer to `Vote`.
    VoteResponse {
        /// True when the vote is refused.
        reject: bool,
    },
    /// AppendEntries (the Raft paper, §5.3).
    Append {
        /// Index of the entry before `entries`.
        prev_log_index: Index,
        /// Term of the entry at `prev_log_index`.
        prev_log_term: Term,
        /// The entries to append (possibly none).
        entries: Vec<Entry>,
        /// The leader's commit index.
        commit: Index,
    },
    /// Answer to `Append`.
    AppendResponse {
        /// True when the follower's log did not match at `prev_log_index`.
        reject: bool,
        /// On success, the follower's last matching index; on rejection,
        /// the rejected `prev_log_index`.
        index: Index,
        /// On rejection, a hint for fast backtracking: the follower's last
        /// index whose term is <= the leader's term at `index`.
        reject_hint: Index,
        /// The term of the entry at `reject_hint`.
        reject_hint_term: Term,
    },
    /// Leader heartbeat; also carries read-index confirmation rounds.
    Heartbeat {
        /// min(leader commit, follower match).
        commit: Index,
        /// Read-index round context, empty for a plain heartbeat.
        context: Vec<u8>,
    },
    /// Answer to `Heartbeat`.
    HeartbeatResponse {
        /// Echo of the heartbeat's context.
        context: Vec<u8>,
    },
    /// One chunk of a snapshot.
    Snapshot {
        /// What the whole snapshot covers.
        metadata: SnapshotMetadata,
        /// Byte offset of `data` within the snapshot data.
        offset: u64,
        /// Total size of the snapshot data.
        total_bytes: u64,
        /// This chunk's bytes.
        data: Vec<u8>,
        /// True on the last chunk.
        done: bool,
    },
    /// Answer to a `Snapshot` chunk.
    SnapshotResponse {
        /// The snapshot index the chunk belonged to.
        index: Index,
        /// Next offset the follower expects; `total_bytes` once complete.
        next_offset: u64,
        /// True when the follower cannot take the snapshot.
        reject: bool,
    },
    /// A proposal forwarded from a follower to the leader.
    Propose {
        /// The proposed entries (without term or index yet).
        entries: Vec<Entry>,
    },
    /// A read-index request forwarded from a follower to the leader.
    ReadIndex {
        /// The follower's request context.
        context: Vec<u8>,
    },
    /// The leader's answer to a forwarded `ReadIndex`.
    ReadIndexResponse {
        /// The read index.
        index: Index,
        /// The follower's request context.
        context: Vec<u8>,
    },
    /// Start an election now (leader transfer).
    TimeoutNow,
    /// Ask the leader to transfer leadership to `from` (the transferee).
    TransferLeader,
}
