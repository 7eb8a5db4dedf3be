//! The etcdserverpb.Auth service as etcd answers with authentication
//! disabled and an empty user and role store: status says disabled,
//! Authenticate and AuthEnable fail with etcd's messages, lists are empty and
//! lookups or changes of a user or role fail with "not found".
//!
//! NB: creating users and roles (UserAdd, RoleAdd) is not supported and
//! answers Unimplemented; a replicated auth store would make all of this real.

use tonic::{Code, Request, Response, Status};

use super::proto::etcdserverpb as pb;
use super::status::{AUTH_NOT_ENABLED, ROLE_NOT_FOUND, ROOT_USER_NOT_EXIST, USER_NOT_FOUND};
use super::wire;
use crate::node::NodeHandle;

/// etcdserverpb.Auth with authentication disabled.
#[derive(Clone, Debug)]
pub struct AuthService {
    node: NodeHandle,
}

impl AuthService {
    /// An Auth service answering with `node`'s header.
    pub fn new(node: NodeHandle) -> AuthService {
        AuthService { node }
    }

    fn header(&self) -> Option<pb::ResponseHeader> {
        wire::some_header(self.node.header())
    }
}

fn user_not_found() -> Status {
    Status::new(Code::FailedPrecondition, USER_NOT_FOUND)
}

fn role_not_found() -> Status {
    Status::new(Code::FailedPrecondition, ROLE_NOT_FOUND)
}

fn store_unsupported(what: &str) -> Status {
    Status::unimplemented(format!("cairn: {what} is not supported (no auth store)"))
}

#[tonic::async_trait]
impl pb::auth_server::Auth for AuthService {
    async fn auth_enable(
        &self,
        _request: Request<pb::AuthEnableRequest>,
    ) -> Result<Response<pb::AuthEnableResponse>, Status> {
        Err(Status::new(Code::FailedPrecondition, ROOT_USER_NOT_EXIST))
    }

    async fn auth_disable(
        &self,
        _request: Request<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        Ok(Response::new(pb::AuthDisableResponse {
            header: self.header(),
        }))
    }

    async fn auth_status(
        &self,
        _request: Request<pb::AuthStatusRequest>,
    ) -> Result<Response<pb::AuthStatusResponse>, Status> {
        Ok(Response::new(pb::AuthStatusResponse {
            header: self.header(),
            enabled: false,
            auth_revision: 0,
        }))
    }

    async fn authenticate(
        &self,
        _request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        Err(Status::new(Code::FailedPrecondition, AUTH_NOT_ENABLED))
    }

    async fn user_add(
        &self,
        _request: Request<pb::AuthUserAddRequest>,
    ) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        Err(store_unsupported("adding users"))
    }

    async fn user_get(
        &self,
        _request: Request<pb::AuthUserGetRequest>,
    ) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        Err(user_not_found())
    }

    async fn user_list(
        &self,
        _request: Request<pb::AuthUserListRequest>,
    ) -> Result<Response<pb::AuthUserListResponse>, Status> {
        Ok(Response::new(pb::AuthUserListResponse {
            header: self.header(),
            users: Vec::new(),
        }))
    }

    async fn user_delete(
        &self,
        _request: Request<pb::AuthUserDeleteRequest>,
    ) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        Err(user_not_found())
    }

    async fn user_change_password(
        &self,
        _request: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        Err(user_not_found())
    }

    async fn user_grant_role(
        &self,
        _request: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        Err(user_not_found())
    }

    async fn user_revoke_role(
        &self,
        _request: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        Err(user_not_found())
    }

    async fn role_add(
        &self,
        _request: Request<pb::AuthRoleAddRequest>,
    ) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        Err(store_unsupported("adding roles"))
    }

    async fn role_get(
        &self,
        _request: Request<pb::AuthRoleGetRequest>,
    ) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        Err(role_not_found())
    }

    async fn role_list(
        &self,
        _request: Request<pb::AuthRoleListRequest>,
    ) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        Ok(Response::new(pb::AuthRoleListResponse {
            header: self.header(),
            roles: Vec::new(),
        }))
    }

    async fn role_delete(
        &self,
        _request: Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        Err(role_not_found())
    }

    async fn role_grant_permission(
        &self,
        _request: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        Err(role_not_found())
    }

    async fn role_revoke_permission(
        &self,
        _request: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        Err(role_not_found())
    }
}
