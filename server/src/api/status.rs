//! Maps a failed request onto the gRPC status etcd answers with: clients and
//! etcdctl switch on the code and the exact message string, so both come
//! from [`NodeError`] (`code()` and `Display`) unchanged.

use cairn_core::kv::{GrpcCode, KvError};
use tonic::{Code, Status};

use crate::node::NodeError;

/// The tonic code for one of etcd's codes.
pub fn code_from_grpc(code: GrpcCode) -> Code {
    match code {
        GrpcCode::InvalidArgument => Code::InvalidArgument,
        GrpcCode::NotFound => Code::NotFound,
        GrpcCode::PermissionDenied => Code::PermissionDenied,
        GrpcCode::ResourceExhausted => Code::ResourceExhausted,
        GrpcCode::FailedPrecondition => Code::FailedPrecondition,
        GrpcCode::OutOfRange => Code::OutOfRange,
        GrpcCode::Unavailable => Code::Unavailable,
        GrpcCode::DataLoss => Code::DataLoss,
        GrpcCode::Unauthenticated => Code::Unauthenticated,
    }
}

/// The status etcd answers `error` with.
pub fn status_from_node_error(error: &NodeError) -> Status {
    Status::new(code_from_grpc(error.code()), error.to_string())
}

/// The status etcd answers a state-machine error with.
pub fn status_from_kv_error(error: &KvError) -> Status {
    Status::new(code_from_grpc(error.code()), error.to_string())
}

/// etcd's answer to an auth request while authentication is disabled.
pub const AUTH_NOT_ENABLED: &str = "etcdserver: authentication is not enabled";
/// etcd's answer to AuthEnable without a root user.
pub const ROOT_USER_NOT_EXIST: &str = "etcdserver: root user does not exist";
/// etcd's answer for a user that does not exist.
pub const USER_NOT_FOUND: &str = "etcdserver: user name not found";
/// etcd's answer for a role that does not exist.
pub const ROLE_NOT_FOUND: &str = "etcdserver: role name not found";

impl From<NodeError> for Status {
    fn from(error: NodeError) -> Status {
        status_from_node_error(&error)
    }
}

#[cfg(test)]
mod tests {
    //! Guards the error contract: every code and message reaches the wire
    //! exactly as etcd sends it.

    use super::*;

    #[test]
    fn node_errors_keep_etcd_codes_and_messages() {
        let cases = [
            (
                NodeError::NoLeader,
                Code::Unavailable,
                "etcdserver: no leader",
            ),
            (
                NodeError::Timeout,
                Code::Unavailable,
                "etcdserver: request timed out",
            ),
            (
                NodeError::MemberNotFound,
                Code::NotFound,
                "etcdserver: member not found",
            ),
            (
                NodeError::Corrupt,
                Code::DataLoss,
                "etcdserver: corrupt cluster",
            ),
            (
                NodeError::Kv(KvError::Compacted {
                    compact_revision: 7,
                }),
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                NodeError::Kv(KvError::RequestTooLarge),
                Code::InvalidArgument,
                "etcdserver: request is too large",
            ),
            (
                NodeError::Kv(KvError::LeaseNotFound),
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                NodeError::Kv(KvError::NoSpace),
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
        ];
        for (error, code, message) in cases {
            let status = Status::from(error.clone());
            assert_eq!(status.code(), code, "code of {error:?}");
            assert_eq!(status.message(), message, "message of {error:?}");
        }
    }

    #[test]
    fn every_grpc_code_maps_to_the_same_number() {
        let codes = [
            GrpcCode::InvalidArgument,
            GrpcCode::NotFound,
            GrpcCode::PermissionDenied,
            GrpcCode::ResourceExhausted,
            GrpcCode::FailedPrecondition,
            GrpcCode::OutOfRange,
            GrpcCode::Unavailable,
            GrpcCode::DataLoss,
            GrpcCode::Unauthenticated,
        ];
        for code in codes {
            assert_eq!(code_from_grpc(code) as i32, code as i32, "{code:?}");
        }
    }
}
