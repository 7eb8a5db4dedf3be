//! [`KvError`]: every way a key-value request can fail, each mapped one-to-one
//! onto etcd's gRPC status code and message string (clients switch on them).

use serde::{Deserialize, Serialize};

use super::request::Revision;

/// The gRPC status codes etcd uses (numbered as in gRPC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GrpcCode {
    /// 3
    InvalidArgument = 3,
    /// 5
    NotFound = 5,
    /// 7
    PermissionDenied = 7,
    /// 8
    ResourceExhausted = 8,
    /// 9
    FailedPrecondition = 9,
    /// 11
    OutOfRange = 11,
    /// 14
    Unavailable = 14,
    /// 15
    DataLoss = 15,
    /// 16
    Unauthenticated = 16,
}

/// A failed key-value, lease or watch request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum KvError {
    /// An empty key where one is required.
    #[error("etcdserver: key is not provided")]
    KeyNotProvided,
    /// ignore_value / ignore_lease on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// ignore_value together with a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// ignore_lease together with a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// More ops in one txn than the configured maximum.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// A txn writes the same key twice.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// The request is larger than the configured maximum.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// The revision asked for has been compacted.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted {
        /// The current compact revision.
        compact_revision: Revision,
    },
    /// The revision asked for is beyond the current one.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision {
        /// The current revision.
        current_revision: Revision,
    },
    /// The backend quota is exhausted.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// The lease does not exist.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A grant with an ID already in use.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A TTL above the maximum.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
}

impl KvError {
    /// The gRPC code etcd answers this error with.
    pub fn code(&self) -> GrpcCode {
        match self {
            KvError::KeyNotProvided
            | KvError::KeyNotFound
            | KvError::ValueProvided
            | KvError::LeaseProvided
            | KvError::TooManyOps
            | KvError::DuplicateKey
            | KvError::RequestTooLarge => GrpcCode::InvalidArgument,
            KvError::Compacted { .. } | KvError::FutureRevision { .. } => GrpcCode::OutOfRange,
            KvError::NoSpace => GrpcCode::ResourceExhausted,
            KvError::LeaseNotFound => GrpcCode::NotFound,
            KvError::LeaseExists => GrpcCode::FailedPrecondition,
            KvError::LeaseTtlTooLarge => GrpcCode::OutOfRange,
        }
    }
}
