//! The protobuf messages and gRPC service stubs generated from `server/proto/`
//! (etcd's wire format). Each module is named after its protobuf package so
//! that the generated cross-package paths (`super::mvccpb::KeyValue`) resolve.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// mvccpb: KeyValue and Event.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// authpb: users, roles, permissions.
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// etcdserverpb: the KV, Watch, Lease, Cluster, Maintenance and Auth services.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// v3lockpb: the Lock service.
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

/// v3electionpb: the Election service.
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

/// grpc.health.v1: the standard health service.
pub mod grpc {
    /// grpc.health.
    pub mod health {
        /// grpc.health.v1.
        pub mod v1 {
            tonic::include_proto!("grpc.health.v1");
        }
    }
}
