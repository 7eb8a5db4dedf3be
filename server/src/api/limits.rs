//! [`RequestLimits`]: the request bounds etcd enforces in its API layer
//! before anything is proposed: `--max-request-bytes` and `--max-txn-ops`.

use cairn_core::kv::KvError;
use tonic::Status;

use super::proto::etcdserverpb as pb;
use super::status::status_from_kv_error;

/// etcd's `--max-request-bytes` default: 1.5 MiB.
pub const REQUEST_BYTES_MAX_DEFAULT: usize = 1024 * 1024 + 512 * 1024;
/// etcd's `--max-txn-ops` default.
pub const TXN_OPS_MAX_DEFAULT: usize = 128;
/// What etcd adds to `--max-request-bytes` for gRPC's own receive limit, so
/// that a request slightly over the limit reaches the server's own check and
/// gets etcd's "request is too large" answer rather than a transport error.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// The bounds on one client request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLimits {
    /// At most this many encoded bytes in one write request.
    pub request_bytes_max: usize,
    /// At most this many compares, success ops or failure ops in one txn.
    pub txn_ops_max: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            request_bytes_max: REQUEST_BYTES_MAX_DEFAULT,
            txn_ops_max: TXN_OPS_MAX_DEFAULT,
        }
    }
}

impl RequestLimits {
    /// The gRPC decoding limit for every service (etcd's MaxRecvMsgSize).
    pub fn grpc_message_bytes_max(&self) -> usize {
        self.request_bytes_max.saturating_add(GRPC_OVERHEAD_BYTES)
    }

    /// Refuses a write whose encoding is larger than `request_bytes_max`
    /// (etcd measures the raft request that wraps it, a few bytes more).
    pub fn check_request_size(&self, encoded_bytes: usize) -> Result<(), Status> {
        if encoded_bytes > self.request_bytes_max {
            return Err(status_from_kv_error(&KvError::RequestTooLarge));
        }
        Ok(())
    }

    /// etcd's checkTxnRequest: too many ops at any level, or an empty key in
    /// a compare or an op, is refused before proposing. A nested txn gets the
    /// budget its parent left over.
    pub fn check_txn(&self, txn: &pb::TxnRequest) -> Result<(), Status> {
        check_txn_ops(txn, self.txn_ops_max)
    }
}

fn check_txn_ops(txn: &pb::TxnRequest, ops_max: usize) -> Result<(), Status> {
    let ops = txn
        .compare
        .len()
        .max(txn.success.len())
        .max(txn.failure.len());
    if ops > ops_max {
        return Err(status_from_kv_error(&KvError::TooManyOps));
    }
    if txn.compare.iter().any(|compare| compare.key.is_empty()) {
        return Err(status_from_kv_error(&KvError::KeyNotProvided));
    }
    for op in txn.success.iter().chain(txn.failure.iter()) {
        check_request_op(op, ops_max - ops)?;
    }
    Ok(())
}

fn check_request_op(op: &pb::RequestOp, ops_max: usize) -> Result<(), Status> {
    use pb::request_op::Request;
    let key_missing = match &op.request {
        Some(Request::RequestRange(range)) => range.key.is_empty(),
        Some(Request::RequestPut(put)) => put.key.is_empty(),
        Some(Request::RequestDeleteRange(delete)) => delete.key.is_empty(),
        Some(Request::RequestTxn(txn)) => return check_txn_ops(txn, ops_max),
        None => false,
    };
    if key_missing {
        return Err(status_from_kv_error(&KvError::KeyNotProvided));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Guards etcd's request bounds: sizes and txn op counts, nested budgets.

    use tonic::Code;

    use super::*;

    fn put_op(key: &[u8]) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key: key.to_vec(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn oversized_request_is_refused_with_etcds_message() {
        let limits = RequestLimits::default();
        assert!(limits.check_request_size(REQUEST_BYTES_MAX_DEFAULT).is_ok());
        let status = limits
            .check_request_size(REQUEST_BYTES_MAX_DEFAULT + 1)
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "etcdserver: request is too large");
        assert_eq!(limits.grpc_message_bytes_max(), 2 * 1024 * 1024);
    }

    #[test]
    fn too_many_ops_is_refused() {
        let limits = RequestLimits {
            request_bytes_max: 100,
            txn_ops_max: 2,
        };
        let ok = pb::TxnRequest {
            success: vec![put_op(b"a"), put_op(b"b")],
            ..Default::default()
        };
        assert!(limits.check_txn(&ok).is_ok());
        let too_many = pb::TxnRequest {
            failure: vec![put_op(b"a"), put_op(b"b"), put_op(b"c")],
            ..Default::default()
        };
        let status = limits.check_txn(&too_many).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "etcdserver: too many operations in txn request"
        );
    }

    #[test]
    fn nested_txn_gets_the_remaining_budget() {
        let limits = RequestLimits {
            request_bytes_max: 100,
            txn_ops_max: 3,
        };
        let nested = pb::TxnRequest {
            success: vec![put_op(b"x"), put_op(b"y")],
            ..Default::default()
        };
        let outer = pb::TxnRequest {
            success: vec![
                put_op(b"a"),
                pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestTxn(nested)),
                },
            ],
            ..Default::default()
        };
        // The outer txn uses 2 of 3; the nested one may use only 1, and has 2.
        let status = limits.check_txn(&outer).unwrap_err();
        assert_eq!(
            status.message(),
            "etcdserver: too many operations in txn request"
        );
    }

    #[test]
    fn empty_key_in_txn_is_refused() {
        let limits = RequestLimits::default();
        let txn = pb::TxnRequest {
            success: vec![put_op(b"")],
            ..Default::default()
        };
        let status = limits.check_txn(&txn).unwrap_err();
        assert_eq!(status.message(), "etcdserver: key is not provided");
    }
}
