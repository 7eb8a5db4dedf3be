//! [`NodeRequest`]: what a [`super::NodeHandle`] asks of the driver loop,
//! each with the oneshot channel its answer goes back on.

use cairn_core::kv::{
    Command, CommandResponse, LeaseId, LeaseTimeToLiveResponse, RangeRequest, RangeResponse,
    Revision, StreamId, WatchCreateRequest, WatchResponse,
};
use cairn_core::raft::NodeId;
use tokio::sync::{mpsc, oneshot};

use super::error::NodeError;
use super::handle::{Member, ResponseHeader, StatusInfo};

/// Where an answer goes.
pub type Reply<T> = oneshot::Sender<Result<T, NodeError>>;

/// A membership change a client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberChange {
    /// MemberAdd.
    Add {
        /// The new member's peer URLs.
        peer_urls: Vec<String>,
        /// Whether it joins as a learner.
        is_learner: bool,
    },
    /// MemberRemove.
    Remove {
        /// The member.
        id: u64,
    },
    /// MemberUpdate.
    Update {
        /// The member.
        id: u64,
        /// Its new peer URLs.
        peer_urls: Vec<String>,
    },
    /// MemberPromote.
    Promote {
        /// The learner.
        id: u64,
    },
}

/// A read that may need a linearizability round first.
#[derive(Debug)]
pub enum ReadRequest {
    /// KV.Range.
    Range {
        /// The request.
        request: RangeRequest,
        /// The answer.
        reply: Reply<(ResponseHeader, RangeResponse)>,
    },
    /// Lease.LeaseLeases.
    LeaseLeases {
        /// The answer.
        reply: Reply<(ResponseHeader, Vec<LeaseId>)>,
    },
    /// Cluster.MemberList.
    MemberList {
        /// The answer.
        reply: Reply<(ResponseHeader, Vec<Member>)>,
    },
}

impl ReadRequest {
    /// Answers with an error.
    pub fn fail(self, error: NodeError) {
        // A client that went away does not care about the answer.
        match self {
            ReadRequest::Range { reply, .. } => drop(reply.send(Err(error))),
            ReadRequest::LeaseLeases { reply } => drop(reply.send(Err(error))),
            ReadRequest::MemberList { reply } => drop(reply.send(Err(error))),
        }
    }
}

/// One request to the driver.
#[derive(Debug)]
pub enum NodeRequest {
    /// A write through the log.
    Propose {
        /// The command (a lease grant with ID 0 gets one from the driver).
        command: Command,
        /// The answer once applied.
        reply: Reply<(ResponseHeader, CommandResponse)>,
    },
    /// A read.
    Read {
        /// Serve locally without a ReadIndex round.
        serializable: bool,
        /// The read.
        read: ReadRequest,
    },
    /// Lease.LeaseKeepAlive (forwarded to the leader when needed).
    LeaseKeepAlive {
        /// The lease.
        id: LeaseId,
        /// Its TTL in seconds, 0 when it does not exist.
        reply: Reply<(ResponseHeader, i64)>,
    },
    /// Lease.LeaseTimeToLive (forwarded to the leader when needed).
    LeaseTimeToLive {
        /// The lease.
        id: LeaseId,
        /// List attached keys.
        keys: bool,
        /// The answer.
        reply: Reply<(ResponseHeader, LeaseTimeToLiveResponse)>,
    },
    /// Opens a watch stream.
    WatchOpen {
        /// The stream's ID and the receiving end of its responses.
        reply: Reply<(StreamId, mpsc::Receiver<WatchResponse>)>,
    },
    /// Creates a watch on a stream.
    WatchCreate {
        /// The stream.
        stream: StreamId,
        /// The watch.
        request: WatchCreateRequest,
        /// Accepted (the created response follows on the stream) or refused.
        reply: Reply<()>,
    },
    /// Cancels a watch.
    WatchCancel {
        /// The stream.
        stream: StreamId,
        /// The watch.
        watch_id: i64,
        /// Done.
        reply: Reply<()>,
    },
    /// Asks for a progress notification on a stream.
    WatchProgress {
        /// The stream.
        stream: StreamId,
        /// Done (the notification follows on the stream).
        reply: Reply<()>,
    },
    /// A membership change.
    ChangeMembers {
        /// The change.
        change: MemberChange,
        /// The member concerned (for Add, the new one) and the table after it.
        reply: Reply<(ResponseHeader, Member, Vec<Member>)>,
    },
    /// Maintenance.Status.
    Status {
        /// The answer.
        reply: Reply<StatusInfo>,
    },
    /// Maintenance.HashKV.
    HashKv {
        /// Hash history up to this revision (0 = current).
        revision: Revision,
        /// Hash and compact revision.
        reply: Reply<(ResponseHeader, u32, Revision)>,
    },
    /// Maintenance.Snapshot.
    Snapshot {
        /// The state's bytes.
        reply: Reply<(ResponseHeader, Vec<u8>)>,
    },
    /// Maintenance.MoveLeader.
    MoveLeader {
        /// The member to hand leadership to.
        target: NodeId,
        /// Answered once it leads, or on timeout.
        reply: Reply<ResponseHeader>,
    },
    /// The applied index and the hash of the state machine at it, taken
    /// together (for the simulator's "same state at the same index" check).
    AppliedHash {
        /// (applied index, `KvStore::hash`).
        reply: Reply<(u64, u32)>,
    },
    /// The Raft core's observable state.
    RaftStatus {
        /// The answer.
        reply: Reply<cairn_core::raft::Status>,
    },
    /// Stop the node, handing leadership over first if it leads.
    Shutdown {
        /// Answered when the driver stops.
        reply: Reply<()>,
    },
}
