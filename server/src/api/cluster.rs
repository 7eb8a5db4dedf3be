//! The etcdserverpb.Cluster service: membership list and changes, answered
//! by the node (which proposes configuration changes through Raft).

use tonic::{Request, Response, Status};

use super::leader::ensure_leader;
use super::proto::etcdserverpb as pb;
use super::wire;
use crate::node::NodeHandle;

/// etcdserverpb.Cluster over a node.
#[derive(Clone, Debug)]
pub struct ClusterService {
    node: NodeHandle,
}

impl ClusterService {
    /// A Cluster service over `node`.
    pub fn new(node: NodeHandle) -> ClusterService {
        ClusterService { node }
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        let request = request.into_inner();
        let (header, member, members) = self
            .node
            .member_add(request.peer_ur_ls, request.is_learner)
            .await?;
        Ok(Response::new(pb::MemberAddResponse {
            header: wire::some_header(header),
            member: Some(wire::member_to_wire(member)),
            members: wire::members_to_wire(members),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        let (header, members) = self.node.member_remove(request.into_inner().id).await?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: wire::some_header(header),
            members: wire::members_to_wire(members),
        }))
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        let request = request.into_inner();
        let (header, members) = self
            .node
            .member_update(request.id, request.peer_ur_ls)
            .await?;
        Ok(Response::new(pb::MemberUpdateResponse {
            header: wire::some_header(header),
            members: wire::members_to_wire(members),
        }))
    }

    async fn member_list(
        &self,
        request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        let (header, members) = self.node.member_list().await?;
        Ok(Response::new(pb::MemberListResponse {
            header: wire::some_header(header),
            members: wire::members_to_wire(members),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        let (header, members) = self.node.member_promote(request.into_inner().id).await?;
        Ok(Response::new(pb::MemberPromoteResponse {
            header: wire::some_header(header),
            members: wire::members_to_wire(members),
        }))
    }
}
