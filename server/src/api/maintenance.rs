//! The etcdserverpb.Maintenance service: status, hashes, snapshot streaming,
//! leader transfer, alarms (NOSPACE, raised when the state passes
//! --quota-backend-bytes), and etcd's answers for what Cairn has no
//! counterpart to (defragmentation is a no-op, Downgrade does not exist in
//! etcd 3.4).

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::leader::ensure_leader;
use super::proto::etcdserverpb as pb;
use super::stream::{channel_stream, ResponseStream};
use super::wire;
use crate::node::NodeHandle;

/// Bytes per snapshot message (etcd's chunk size).
pub const SNAPSHOT_CHUNK_BYTES: usize = 32 * 1024;
/// Snapshot messages buffered before the sender waits for the client.
pub const SNAPSHOT_CHUNKS_BUFFERED_MAX: usize = 4;

/// etcdserverpb.Maintenance over a node.
#[derive(Clone, Debug)]
pub struct MaintenanceService {
    node: NodeHandle,
}

impl MaintenanceService {
    /// A Maintenance service over `node`.
    pub fn new(node: NodeHandle) -> MaintenanceService {
        MaintenanceService { node }
    }
}

/// etcd's snapshot files are whole database pages; clients (etcdctl
/// `snapshot save`) check that the streamed size modulo this is the size of
/// the SHA-256 trailer.
pub const SNAPSHOT_ALIGNMENT_BYTES: usize = 512;
/// The SHA-256 digest etcd appends to the snapshot stream.
pub const SNAPSHOT_CHECKSUM_BYTES: usize = 32;

/// The bytes etcd streams for a snapshot: the node's snapshot, zero bytes up
/// to the next multiple of [`SNAPSHOT_ALIGNMENT_BYTES`], then the SHA-256 of
/// everything before it. A restore strips the last
/// [`SNAPSHOT_CHECKSUM_BYTES`], checks them, and reads the node's snapshot
/// from the front (its format must tolerate, or delimit, trailing zeros).
pub fn snapshot_file(snapshot: &[u8]) -> Vec<u8> {
    let padded_len = snapshot.len().div_ceil(SNAPSHOT_ALIGNMENT_BYTES) * SNAPSHOT_ALIGNMENT_BYTES;
    let mut file = Vec::with_capacity(padded_len + SNAPSHOT_CHECKSUM_BYTES);
    file.extend_from_slice(snapshot);
    file.resize(padded_len, 0);
    let checksum = Sha256::digest(&file);
    file.extend_from_slice(&checksum);
    assert_eq!(
        file.len() % SNAPSHOT_ALIGNMENT_BYTES,
        SNAPSHOT_CHECKSUM_BYTES,
        "snapshot file of {} bytes is misaligned",
        file.len()
    );
    file
}

/// Splits snapshot file bytes into etcd's stream of messages:
/// `remaining_bytes` counts what follows each chunk, and the first message
/// carries the header that says which point in time the snapshot is.
pub fn snapshot_messages(
    header: Option<pb::ResponseHeader>,
    file: &[u8],
    chunk_bytes: usize,
) -> Vec<pb::SnapshotResponse> {
    assert!(
        chunk_bytes > 0,
        "snapshot chunk size {chunk_bytes} must be positive"
    );
    if file.is_empty() {
        return vec![pb::SnapshotResponse {
            header,
            remaining_bytes: 0,
            blob: Vec::new(),
        }];
    }
    let total = file.len();
    let mut sent = 0;
    file.chunks(chunk_bytes)
        .enumerate()
        .map(|(index, chunk)| {
            sent += chunk.len();
            pb::SnapshotResponse {
                header: if index == 0 { header } else { None },
                remaining_bytes: (total - sent) as u64,
                blob: chunk.to_vec(),
            }
        })
        .collect()
}

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for MaintenanceService {
    type SnapshotStream = ResponseStream<pb::SnapshotResponse>;

    async fn alarm(
        &self,
        request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        use pb::alarm_request::AlarmAction;
        let request = request.into_inner();
        let (header, alarms) = match request.action() {
            AlarmAction::Get => self.node.alarms().await?,
            AlarmAction::Deactivate => match request.alarm() {
                pb::AlarmType::Nospace => {
                    let member = cairn_core::kv::AlarmMember {
                        member_id: request.member_id,
                        alarm: cairn_core::kv::AlarmType::NoSpace,
                    };
                    self.node.alarm_disarm(member).await?
                }
                // NONE and CORRUPT are never active: nothing to clear (etcdctl
                // expands a bare disarm into one request per listed alarm).
                pb::AlarmType::None | pb::AlarmType::Corrupt => (self.node.header(), Vec::new()),
            },
            AlarmAction::Activate => {
                return Err(Status::unimplemented(
                    "cairn: activating alarms is not supported",
                ))
            }
        };
        Ok(Response::new(pb::AlarmResponse {
            header: wire::some_header(header),
            alarms: alarms
                .into_iter()
                .map(|alarm| pb::AlarmMember {
                    member_id: alarm.member_id,
                    alarm: match alarm.alarm {
                        cairn_core::kv::AlarmType::NoSpace => pb::AlarmType::Nospace as i32,
                    },
                })
                .collect(),
        }))
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        let status = self.node.status().await?;
        Ok(Response::new(pb::StatusResponse {
            header: wire::some_header(status.header),
            version: status.version,
            db_size: status.db_size,
            leader: status.leader,
            raft_index: status.raft_index,
            raft_term: status.raft_term,
            raft_applied_index: status.raft_applied_index,
            errors: status.errors,
            db_size_in_use: status.db_size_in_use,
            is_learner: status.is_learner,
        }))
    }

    async fn defragment(
        &self,
        request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        // Nothing to defragment: the state lives in memory and in the WAL.
        Ok(Response::new(pb::DefragmentResponse {
            header: wire::some_header(self.node.header()),
        }))
    }

    async fn hash(
        &self,
        request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        // etcd hashes its whole backend file; Cairn's state is the KV store,
        // so the hash of the whole KV history is the counterpart.
        let (header, hash, _compact_revision) = self.node.hash_kv(0).await?;
        Ok(Response::new(pb::HashResponse {
            header: wire::some_header(header),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        let revision = request.into_inner().revision;
        let (header, hash, compact_revision) = self.node.hash_kv(revision).await?;
        Ok(Response::new(pb::HashKvResponse {
            header: wire::some_header(header),
            hash,
            compact_revision,
        }))
    }

    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        let (header, snapshot) = self.node.snapshot().await?;
        let (sender, receiver) = mpsc::channel(SNAPSHOT_CHUNKS_BUFFERED_MAX);
        tokio::spawn(async move {
            let file = snapshot_file(&snapshot);
            let messages =
                snapshot_messages(wire::some_header(header), &file, SNAPSHOT_CHUNK_BYTES);
            for message in messages {
                if sender.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(channel_stream(receiver)))
    }

    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        ensure_leader(&self.node, request.metadata()).await?;
        let header = self
            .node
            .move_leader(request.into_inner().target_id)
            .await?;
        Ok(Response::new(pb::MoveLeaderResponse {
            header: wire::some_header(header),
        }))
    }

    async fn downgrade(
        &self,
        _request: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        // etcd 3.4 has no Downgrade method; its gRPC server answers this.
        Err(Status::unimplemented(
            "unknown method Downgrade for service etcdserverpb.Maintenance",
        ))
    }
}

#[cfg(test)]
mod tests {
    //! Guards the snapshot stream's framing: chunk sizes, remaining_bytes,
    //! and the header on the first message only.

    use super::*;

    #[test]
    fn snapshot_is_chunked_with_remaining_bytes() {
        let header = Some(pb::ResponseHeader {
            revision: 9,
            ..Default::default()
        });
        let snapshot: Vec<u8> = (0..10u8).collect();
        let messages = snapshot_messages(header, &snapshot, 4);
        let remaining: Vec<u64> = messages.iter().map(|m| m.remaining_bytes).collect();
        assert_eq!(remaining, vec![6, 2, 0]);
        let joined: Vec<u8> = messages.iter().flat_map(|m| m.blob.clone()).collect();
        assert_eq!(joined, snapshot);
        assert_eq!(messages[0].header, header);
        assert!(messages[1..].iter().all(|m| m.header.is_none()));
    }

    #[test]
    fn snapshot_file_is_padded_and_ends_with_its_sha256() {
        for length in [0usize, 1, 511, 512, 513, 5000] {
            let snapshot = vec![7u8; length];
            let file = snapshot_file(&snapshot);
            // etcdctl's check: size % 512 == sha256 size.
            assert_eq!(file.len() % 512, 32, "length {length}");
            let (body, checksum) = file.split_at(file.len() - 32);
            assert_eq!(&body[..length], snapshot.as_slice());
            assert!(
                body[length..].iter().all(|byte| *byte == 0),
                "padding is zeros"
            );
            assert_eq!(checksum, Sha256::digest(body).as_slice());
        }
        // Known answer: SHA-256 of no bytes at all.
        let file = snapshot_file(&[]);
        assert_eq!(file.len(), 32, "an empty snapshot needs no padding");
        let digest: String = file.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(
            digest,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn empty_snapshot_is_one_empty_message() {
        let messages = snapshot_messages(None, &[], SNAPSHOT_CHUNK_BYTES);
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].remaining_bytes, 0);
        assert!(messages[0].blob.is_empty());
    }
}
