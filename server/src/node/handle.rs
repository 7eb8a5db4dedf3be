//! [`NodeHandle`]: how the client API (gRPC services, the simulator's
//! clients) talks to a running node. Cheap to clone; every method is a
//! message to the node's driver loop and an await on its answer.
//! Every call is bounded in time: the driver answers within the request
//! timeout, and the handle gives up shortly after should the driver itself
//! be wedged.

use std::sync::Arc;
use std::time::Duration;

use cairn_core::kv::{
    AlarmAction, AlarmMember, AlarmRequest, AlarmType, Command, CommandResponse, CompactionRequest,
    DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest, LeaseGrantResponse, LeaseId,
    LeaseTimeToLiveResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, Revision,
    StreamId, TxnRequest, TxnResponse, WatchCreateRequest, WatchResponse,
};
use cairn_core::raft::NodeId;
use tokio::sync::{mpsc, oneshot};

use super::error::NodeError;
use super::metrics::NodeMetrics;
use super::request::{MemberChange, NodeRequest, ReadRequest, Reply};

/// etcdserverpb.ResponseHeader.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseHeader {
    /// The cluster's ID.
    pub cluster_id: u64,
    /// The answering member's ID.
    pub member_id: u64,
    /// The KV revision the answer reflects.
    pub revision: Revision,
    /// The answering member's Raft term.
    pub raft_term: u64,
}

/// etcdserverpb.Member.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// The member ID.
    pub id: u64,
    /// Its name; empty until it has started.
    pub name: String,
    /// Its peer URLs.
    pub peer_urls: Vec<String>,
    /// Its client URLs; empty until it has started.
    pub client_urls: Vec<String>,
    /// Whether it is a learner.
    pub is_learner: bool,
}

/// Maintenance.Status's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusInfo {
    /// The header.
    pub header: ResponseHeader,
    /// The server version string (etcd's, for client compatibility).
    pub version: String,
    /// Bytes the state takes (snapshot size estimate).
    pub db_size: i64,
    /// Bytes in use.
    pub db_size_in_use: i64,
    /// The leader's member ID, 0 if none.
    pub leader: u64,
    /// The last Raft index.
    pub raft_index: u64,
    /// The Raft term.
    pub raft_term: u64,
    /// The applied Raft index.
    pub raft_applied_index: u64,
    /// Alarm or health messages.
    pub errors: Vec<String>,
    /// Whether this member is a learner.
    pub is_learner: bool,
}

/// A handle to a running node.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    requests: mpsc::Sender<NodeRequest>,
    cluster_id: u64,
    member_id: NodeId,
    metrics: Arc<NodeMetrics>,
    /// The driver's request timeout plus a margin: the handle's own bound.
    call_timeout: Duration,
    /// True once this member's name and client URLs are in the replicated
    /// member table (etcd's "publish"); clients are served only after it.
    published: tokio::sync::watch::Receiver<bool>,
}

/// One client watch stream: create and cancel watches on it, receive their
/// responses. Dropping it closes the stream and its watches.
#[derive(Debug)]
pub struct WatchSession {
    handle: NodeHandle,
    stream: StreamId,
    responses: mpsc::Receiver<WatchResponse>,
}

impl NodeHandle {
    pub(crate) fn new(
        requests: mpsc::Sender<NodeRequest>,
        cluster_id: u64,
        member_id: NodeId,
        metrics: Arc<NodeMetrics>,
        request_timeout: Duration,
        published: tokio::sync::watch::Receiver<bool>,
    ) -> NodeHandle {
        NodeHandle {
            requests,
            cluster_id,
            member_id,
            metrics,
            published,
            // Twice the driver's bound: the driver answers first unless wedged.
            call_timeout: request_timeout * 2,
        }
    }

    /// Completes once this member has published its name and client URLs
    /// to the cluster, as etcd does before it serves clients; `Stopped` if
    /// the node ends first.
    pub async fn wait_published(&self) -> Result<(), NodeError> {
        let mut published = self.published.clone();
        published
            .wait_for(|published| *published)
            .await
            .map(|_| ())
            .map_err(|_| NodeError::Stopped)
    }

    /// Sends a request and awaits its answer; `Stopped` if the driver is
    /// gone, `Timeout` if it does not answer in time.
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> NodeRequest) -> Result<T, NodeError> {
        let (reply, answer) = oneshot::channel();
        let exchange = async {
            self.requests
                .send(make(reply))
                .await
                .map_err(|_| NodeError::Stopped)?;
            answer.await.map_err(|_| NodeError::Stopped)?
        };
        match tokio::time::timeout(self.call_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(NodeError::Timeout),
        }
    }

    async fn propose(
        &self,
        command: Command,
    ) -> Result<(ResponseHeader, CommandResponse), NodeError> {
        self.call(|reply| NodeRequest::Propose { command, reply })
            .await
    }

    /// This member's ID.
    pub fn member_id(&self) -> u64 {
        self.member_id.0
    }

    /// The cluster's ID.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// What the node reports (shared with the `/metrics` endpoint).
    pub fn metrics(&self) -> &Arc<NodeMetrics> {
        &self.metrics
    }

    /// A header with the member's current revision and term, for answers the
    /// API layer builds itself.
    pub fn header(&self) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id.0,
            revision: self.metrics.revision(),
            raft_term: self.metrics.term(),
        }
    }

    /// KV.Range: linearizable unless `request.serializable`.
    pub async fn range(
        &self,
        request: RangeRequest,
    ) -> Result<(ResponseHeader, RangeResponse), NodeError> {
        let serializable = request.serializable;
        self.call(|reply| NodeRequest::Read {
            serializable,
            read: ReadRequest::Range { request, reply },
        })
        .await
    }

    /// KV.Put.
    pub async fn put(
        &self,
        request: PutRequest,
    ) -> Result<(ResponseHeader, PutResponse), NodeError> {
        match self.propose(Command::Put(request)).await? {
            (header, CommandResponse::Put(response)) => Ok((header, response)),
            (_, other) => unexpected("put", &other),
        }
    }

    /// KV.DeleteRange.
    pub async fn delete_range(
        &self,
        request: DeleteRangeRequest,
    ) -> Result<(ResponseHeader, DeleteRangeResponse), NodeError> {
        match self.propose(Command::DeleteRange(request)).await? {
            (header, CommandResponse::DeleteRange(response)) => Ok((header, response)),
            (_, other) => unexpected("delete_range", &other),
        }
    }

    /// KV.Txn.
    pub async fn txn(
        &self,
        request: TxnRequest,
    ) -> Result<(ResponseHeader, TxnResponse), NodeError> {
        match self.propose(Command::Txn(request)).await? {
            (header, CommandResponse::Txn(response)) => Ok((header, response)),
            (_, other) => unexpected("txn", &other),
        }
    }

    /// KV.Compact.
    pub async fn compact(&self, request: CompactionRequest) -> Result<ResponseHeader, NodeError> {
        match self.propose(Command::Compact(request)).await? {
            (header, CommandResponse::Compact) => Ok(header),
            (_, other) => unexpected("compact", &other),
        }
    }

    /// Maintenance.Alarm GET: the active alarms, read through the log (as
    /// etcd does) so every member answers the same.
    pub async fn alarms(&self) -> Result<(ResponseHeader, Vec<AlarmMember>), NodeError> {
        let member = AlarmMember {
            member_id: self.member_id.0,
            alarm: AlarmType::NoSpace,
        };
        self.alarm(AlarmAction::Get, member).await
    }

    /// Maintenance.Alarm DEACTIVATE: clears `member`'s alarm; answers the
    /// alarm cleared, or nothing if it was not active.
    pub async fn alarm_disarm(
        &self,
        member: AlarmMember,
    ) -> Result<(ResponseHeader, Vec<AlarmMember>), NodeError> {
        self.alarm(AlarmAction::Deactivate, member).await
    }

    async fn alarm(
        &self,
        action: AlarmAction,
        member: AlarmMember,
    ) -> Result<(ResponseHeader, Vec<AlarmMember>), NodeError> {
        match self
            .propose(Command::Alarm(AlarmRequest { action, member }))
            .await?
        {
            (header, CommandResponse::Alarm { alarms }) => Ok((header, alarms)),
            (_, other) => unexpected("alarm", &other),
        }
    }

    /// Lease.LeaseGrant; `id` 0 lets the node choose one.
    pub async fn lease_grant(
        &self,
        ttl: i64,
        id: LeaseId,
    ) -> Result<(ResponseHeader, LeaseGrantResponse), NodeError> {
        match self
            .propose(Command::LeaseGrant(LeaseGrantRequest { ttl, id }))
            .await?
        {
            (header, CommandResponse::LeaseGrant(response)) => Ok((header, response)),
            (_, other) => unexpected("lease_grant", &other),
        }
    }

    /// Lease.LeaseRevoke.
    pub async fn lease_revoke(&self, id: LeaseId) -> Result<ResponseHeader, NodeError> {
        match self.propose(Command::LeaseRevoke { id }).await? {
            (header, CommandResponse::LeaseRevoke) => Ok(header),
            (_, other) => unexpected("lease_revoke", &other),
        }
    }

    /// Renews a lease; returns its TTL in seconds, 0 when it does not exist.
    pub async fn lease_keep_alive(&self, id: LeaseId) -> Result<(ResponseHeader, i64), NodeError> {
        self.call(|reply| NodeRequest::LeaseKeepAlive { id, reply })
            .await
    }

    /// Lease.LeaseTimeToLive (TTL -1 when the lease does not exist).
    pub async fn lease_time_to_live(
        &self,
        id: LeaseId,
        keys: bool,
    ) -> Result<(ResponseHeader, LeaseTimeToLiveResponse), NodeError> {
        self.call(|reply| NodeRequest::LeaseTimeToLive { id, keys, reply })
            .await
    }

    /// Lease.LeaseLeases (linearizable).
    pub async fn lease_leases(&self) -> Result<(ResponseHeader, Vec<LeaseId>), NodeError> {
        self.call(|reply| NodeRequest::Read {
            serializable: false,
            read: ReadRequest::LeaseLeases { reply },
        })
        .await
    }

    /// Opens a watch stream.
    pub async fn watch_session(&self) -> Result<WatchSession, NodeError> {
        let (stream, responses) = self.call(|reply| NodeRequest::WatchOpen { reply }).await?;
        Ok(WatchSession {
            handle: self.clone(),
            stream,
            responses,
        })
    }

    /// Cluster.MemberList, served locally (the table is replicated).
    pub async fn member_list(&self) -> Result<(ResponseHeader, Vec<Member>), NodeError> {
        self.member_list_with(false).await
    }

    /// Cluster.MemberList; `linearizable` confirms leadership first.
    pub async fn member_list_with(
        &self,
        linearizable: bool,
    ) -> Result<(ResponseHeader, Vec<Member>), NodeError> {
        self.call(|reply| NodeRequest::Read {
            serializable: !linearizable,
            read: ReadRequest::MemberList { reply },
        })
        .await
    }

    async fn change_members(
        &self,
        change: MemberChange,
    ) -> Result<(ResponseHeader, Member, Vec<Member>), NodeError> {
        self.call(|reply| NodeRequest::ChangeMembers { change, reply })
            .await
    }

    /// Cluster.MemberAdd: the new member and the table after it.
    pub async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(ResponseHeader, Member, Vec<Member>), NodeError> {
        self.change_members(MemberChange::Add {
            peer_urls,
            is_learner,
        })
        .await
    }

    /// Cluster.MemberRemove: the table after it.
    pub async fn member_remove(&self, id: u64) -> Result<(ResponseHeader, Vec<Member>), NodeError> {
        let (header, _, members) = self.change_members(MemberChange::Remove { id }).await?;
        Ok((header, members))
    }

    /// Cluster.MemberUpdate: the table after it.
    pub async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<(ResponseHeader, Vec<Member>), NodeError> {
        let (header, _, members) = self
            .change_members(MemberChange::Update { id, peer_urls })
            .await?;
        Ok((header, members))
    }

    /// Cluster.MemberPromote: the table after it.
    pub async fn member_promote(
        &self,
        id: u64,
    ) -> Result<(ResponseHeader, Vec<Member>), NodeError> {
        let (header, _, members) = self.change_members(MemberChange::Promote { id }).await?;
        Ok((header, members))
    }

    /// Maintenance.Status.
    pub async fn status(&self) -> Result<StatusInfo, NodeError> {
        self.call(|reply| NodeRequest::Status { reply }).await
    }

    /// HashKV: hash of the KV state up to `revision` (0 = current), and the compact revision.
    pub async fn hash_kv(
        &self,
        revision: Revision,
    ) -> Result<(ResponseHeader, u32, Revision), NodeError> {
        self.call(|reply| NodeRequest::HashKv { revision, reply })
            .await
    }

    /// A consistent snapshot of the whole state, as bytes to stream to the client.
    pub async fn snapshot(&self) -> Result<(ResponseHeader, Vec<u8>), NodeError> {
        self.call(|reply| NodeRequest::Snapshot { reply }).await
    }

    /// Maintenance.MoveLeader: answered once `target` leads.
    pub async fn move_leader(&self, target: u64) -> Result<ResponseHeader, NodeError> {
        let target = NodeId(target);
        self.call(|reply| NodeRequest::MoveLeader { target, reply })
            .await
    }

    /// The applied index and the state machine's hash at it, read together.
    pub async fn applied_hash(&self) -> Result<(u64, u32), NodeError> {
        self.call(|reply| NodeRequest::AppliedHash { reply }).await
    }

    /// The Raft core's observable state (term, leader, commit, applied,
    /// configuration; match indexes on a leader).
    pub async fn raft_status(&self) -> Result<cairn_core::raft::Status, NodeError> {
        self.call(|reply| NodeRequest::RaftStatus { reply }).await
    }

    /// Stops the node gracefully: a leader hands leadership to its most
    /// up-to-date voter first (bounded in time). Returns once stopped; the
    /// node's task then ends.
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        match self.call(|reply| NodeRequest::Shutdown { reply }).await {
            // Already stopped is as good as stopped.
            Err(NodeError::Stopped) => Ok(()),
            other => other,
        }
    }
}

fn unexpected<T>(call: &str, response: &CommandResponse) -> Result<T, NodeError> {
    panic!("{call} answered with a mismatched response {response:?}")
}

impl WatchSession {
    /// This stream's ID on the node.
    pub fn stream_id(&self) -> StreamId {
        self.stream
    }

    /// Creates a watch; its `created` response (and later events) arrive via
    /// `next`. A refused watch (empty range, duplicate ID, compacted start)
    /// is also answered on the stream, created and canceled with the reason,
    /// so the caller only forwards what `next` yields; the error here is
    /// for logging.
    pub async fn create(&mut self, request: WatchCreateRequest) -> Result<(), NodeError> {
        let stream = self.stream;
        self.handle
            .call(|reply| NodeRequest::WatchCreate {
                stream,
                request,
                reply,
            })
            .await
    }

    /// Cancels a watch; its canceled response arrives via `next`.
    pub async fn cancel(&mut self, watch_id: i64) -> Result<(), NodeError> {
        let stream = self.stream;
        self.handle
            .call(|reply| NodeRequest::WatchCancel {
                stream,
                watch_id,
                reply,
            })
            .await
    }

    /// Asks for a progress notification (answered with watch_id -1).
    pub async fn progress(&mut self) -> Result<(), NodeError> {
        let stream = self.stream;
        self.handle
            .call(|reply| NodeRequest::WatchProgress { stream, reply })
            .await
    }

    /// The next response for any watch of this session; None when the node
    /// stopped (or dropped this stream because it fell too far behind).
    pub async fn next(&mut self) -> Option<WatchResponse> {
        self.responses.recv().await
    }
}
