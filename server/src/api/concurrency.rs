//! The building blocks of etcd's `concurrency` package recipes (mutex and
//! election), run server-side over the node's KV and watch API exactly as
//! etcd's v3lock and v3election servers run them over clientv3: ownership
//! keys `<prefix><lease in hex>`, order by create_revision, and waiting for
//! the deletion of every earlier key under the prefix.

use cairn_core::kv::{
    EventType, KeyValue, KvError, RangeRequest, Revision, SortOrder, SortTarget, WatchCreateRequest,
};
use tonic::Status;

pub use super::backend::{KvBackend, KvWatch};
use crate::node::{NodeError, ResponseHeader};

/// The separator between an election or lock name and its ownership keys.
pub const NAME_SEPARATOR: u8 = b'/';

/// The key prefix under which a lock or election named `name` keeps its keys.
pub fn key_prefix(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(NAME_SEPARATOR);
    prefix
}

/// `<prefix><lease>` with the lease in lower-case hex, as Go's `%x` prints
/// an int64 (a minus sign before the magnitude for negative values).
pub fn ownership_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    let hex = if lease < 0 {
        format!("-{:x}", lease.unsigned_abs())
    } else {
        format!("{lease:x}")
    };
    key.extend_from_slice(hex.as_bytes());
    key
}

/// etcd's GetPrefixRangeEnd: the smallest key greater than every key with
/// `prefix`; `\0` (all keys) when the prefix is all 0xff bytes.
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A range over every key with `prefix`, oldest (or newest) creation first,
/// one key only: clientv3's `WithFirstCreate` / `WithLastCreate`.
pub fn prefix_by_creation(prefix: &[u8], sort_order: SortOrder) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_range_end(prefix),
        limit: 1,
        sort_order,
        sort_target: SortTarget::Create,
        ..Default::default()
    }
}

/// The key created first under `prefix` (the owner), and the read's header.
pub async fn first_created<B: KvBackend>(
    node: &B,
    prefix: &[u8],
) -> Result<(ResponseHeader, Option<KeyValue>), Status> {
    let (header, response) = node
        .range(prefix_by_creation(prefix, SortOrder::Ascend))
        .await?;
    Ok((header, response.kvs.into_iter().next()))
}

/// Waits until no key under `prefix` has a create_revision at or below
/// `max_create_revision` (etcd's waitDeletes): repeatedly finds the newest
/// such key and waits for its deletion. Returns the header of the final read.
pub async fn wait_deletes<B: KvBackend>(
    node: &B,
    prefix: &[u8],
    max_create_revision: Revision,
) -> Result<ResponseHeader, Status> {
    loop {
        let mut request = prefix_by_creation(prefix, SortOrder::Descend);
        request.max_create_revision = max_create_revision;
        let (header, response) = node.range(request).await?;
        let Some(newest) = response.kvs.into_iter().next() else {
            return Ok(header);
        };
        wait_delete(node, &newest.key, header.revision).await?;
    }
}

/// Waits for a delete event on `key` at or after `revision`.
async fn wait_delete<B: KvBackend>(node: &B, key: &[u8], revision: Revision) -> Result<(), Status> {
    let mut watch = KeyWatch::open(
        node,
        WatchCreateRequest {
            key: key.to_vec(),
            start_revision: revision,
            ..Default::default()
        },
    )
    .await?;
    loop {
        let (_revision, events) = watch.next_events().await?;
        if events.iter().any(|event| event.kind == EventType::Delete) {
            return Ok(());
        }
    }
}

/// One watch on its own session, yielding event batches.
pub struct KeyWatch<W: KvWatch> {
    session: W,
}

impl<W: KvWatch> KeyWatch<W> {
    /// Opens a session and creates the watch on it.
    pub async fn open<B: KvBackend<Watch = W>>(
        node: &B,
        request: WatchCreateRequest,
    ) -> Result<KeyWatch<W>, Status> {
        let mut session = node.watch_session().await?;
        session.create(request).await?;
        Ok(KeyWatch { session })
    }

    /// The next non-empty batch of events, with the header revision of its
    /// response. A cancelled watch (compacted start revision, or the node
    /// dropping it) is an error, as clientv3 reports it.
    pub async fn next_events(&mut self) -> Result<(Revision, Vec<cairn_core::kv::Event>), Status> {
        loop {
            let Some(response) = self.session.next().await else {
                return Err(NodeError::Stopped.into());
            };
            if response.canceled {
                if response.compact_revision > 0 {
                    let error = KvError::Compacted {
                        compact_revision: response.compact_revision,
                    };
                    return Err(NodeError::Kv(error).into());
                }
                return Err(Status::cancelled(format!(
                    "watch canceled: {}",
                    response.cancel_reason
                )));
            }
            if !response.events.is_empty() {
                return Ok((response.header_revision, response.events));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Guards the key layout shared with etcd's concurrency package: clients
    //! mixing etcdctl's client-side recipes with the Lock/Election services
    //! must see the same keys.

    use super::*;

    #[test]
    fn ownership_key_is_prefix_and_hex_lease() {
        assert_eq!(
            ownership_key(&key_prefix(b"job"), 0x694d7a2b1c),
            b"job/694d7a2b1c".to_vec()
        );
        assert_eq!(ownership_key(b"p/", 0), b"p/0".to_vec());
        assert_eq!(ownership_key(b"p/", -26), b"p/-1a".to_vec());
    }

    #[test]
    fn prefix_range_end_increments_the_last_byte() {
        assert_eq!(prefix_range_end(b"job/"), b"job0".to_vec());
        assert_eq!(prefix_range_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_range_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn first_create_range_is_one_key_by_create_revision() {
        let request = prefix_by_creation(b"e/", SortOrder::Ascend);
        assert_eq!(request.range_end, b"e0".to_vec());
        assert_eq!(request.limit, 1);
        assert_eq!(request.sort_target, SortTarget::Create);
        assert!(!request.serializable, "recipes read linearizably");
    }
}
