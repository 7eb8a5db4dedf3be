//! Requests and responses of the key-value API, field for field as etcd's
//! `etcdserverpb` messages (the server maps protobuf to these one-to-one).
//! A response carries no header: the server fills cluster, member, revision
//! and raft term.

use serde::{Deserialize, Serialize};

/// etcd's global revision: incremented once per write transaction.
pub type Revision = i64;
/// A lease identity (etcd prints it in hex). Never 0 once granted.
pub type LeaseId = i64;

/// mvccpb.KeyValue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// Revision of the last creation of this key.
    pub create_revision: Revision,
    /// Revision of the last modification.
    pub mod_revision: Revision,
    /// Number of modifications since creation (1 after creation).
    pub version: i64,
    /// The value (empty with keys_only).
    pub value: Vec<u8>,
    /// The attached lease, 0 for none.
    pub lease: LeaseId,
}

/// mvccpb.Event.EventType.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    /// A put.
    Put,
    /// A deletion (the kv carries the key and the deletion's mod_revision).
    Delete,
}

/// mvccpb.Event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Put or delete.
    pub kind: EventType,
    /// The key-value after the event.
    pub kv: KeyValue,
    /// The key-value before the event, when asked for.
    pub prev_kv: Option<KeyValue>,
}

/// RangeRequest.SortOrder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortOrder {
    /// No sorting (key order).
    #[default]
    None,
    /// Ascending.
    Ascend,
    /// Descending.
    Descend,
}

/// RangeRequest.SortTarget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortTarget {
    /// By key.
    #[default]
    Key,
    /// By version.
    Version,
    /// By create_revision.
    Create,
    /// By mod_revision.
    Mod,
    /// By value.
    Value,
}

/// RangeRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRequest {
    /// First key (or the only key when `range_end` is empty).
    pub key: Vec<u8>,
    /// End of the range, exclusive; `\0` means "every key >= key".
    pub range_end: Vec<u8>,
    /// At most this many keys; 0 for no limit.
    pub limit: i64,
    /// Read at this revision; 0 for the current one.
    pub revision: Revision,
    /// Sort order.
    pub sort_order: SortOrder,
    /// Sort target.
    pub sort_target: SortTarget,
    /// Serve locally without a linearizability round (the server's concern).
    pub serializable: bool,
    /// Return keys without values.
    pub keys_only: bool,
    /// Return only the count.
    pub count_only: bool,
    /// Filter: mod_revision >= this (0 = off).
    pub min_mod_revision: Revision,
    /// Filter: mod_revision <= this (0 = off).
    pub max_mod_revision: Revision,
    /// Filter: create_revision >= this (0 = off).
    pub min_create_revision: Revision,
    /// Filter: create_revision <= this (0 = off).
    pub max_create_revision: Revision,
}

/// RangeResponse (without header).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResponse {
    /// The matching key-values (empty with count_only).
    pub kvs: Vec<KeyValue>,
    /// True when `limit` cut the result.
    pub more: bool,
    /// Number of keys in the range (before limit).
    pub count: i64,
}

/// PutRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRequest {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// Lease to attach, 0 for none.
    pub lease: LeaseId,
    /// Return the previous key-value.
    pub prev_kv: bool,
    /// Keep the current value (the key must exist).
    pub ignore_value: bool,
    /// Keep the current lease (the key must exist).
    pub ignore_lease: bool,
}

/// PutResponse (without header).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResponse {
    /// The previous key-value, if asked for and present.
    pub prev_kv: Option<KeyValue>,
}

/// DeleteRangeRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeRequest {
    /// First key (or the only key).
    pub key: Vec<u8>,
    /// End of the range, exclusive; `\0` for "every key >= key".
    pub range_end: Vec<u8>,
    /// Return the deleted key-values.
    pub prev_kv: bool,
}

/// DeleteRangeResponse (without header).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeResponse {
    /// Number of keys deleted.
    pub deleted: i64,
    /// The deleted key-values, if asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// Compare.CompareResult.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareResult {
    /// ==
    Equal,
    /// >
    Greater,
    /// <
    Less,
    /// !=
    NotEqual,
}

/// Compare.target_union: what to compare against, and with which field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    /// Compare the version.
    Version(i64),
    /// Compare the create_revision.
    Create(Revision),
    /// Compare the mod_revision.
    Mod(Revision),
    /// Compare the value.
    Value(Vec<u8>),
    /// Compare the lease.
    Lease(LeaseId),
}

/// Compare.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    /// The relation that must hold.
    pub result: CompareResult,
    /// The field and the operand.
    pub target: CompareTarget,
    /// The key (or first key of the range).
    pub key: Vec<u8>,
    /// End of the range, exclusive; empty for a single key.
    pub range_end: Vec<u8>,
}

/// RequestOp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestOp {
    /// A range.
    Range(RangeRequest),
    /// A put.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
    /// A nested transaction.
    Txn(TxnRequest),
}

/// ResponseOp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseOp {
    /// A range's result.
    Range(RangeResponse),
    /// A put's result.
    Put(PutResponse),
    /// A delete's result.
    DeleteRange(DeleteRangeResponse),
    /// A nested transaction's result.
    Txn(TxnResponse),
}

/// TxnRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRequest {
    /// All must hold for `success` to run; otherwise `failure` runs.
    pub compare: Vec<Compare>,
    /// Ops run when every compare holds.
    pub success: Vec<RequestOp>,
    /// Ops run otherwise.
    pub failure: Vec<RequestOp>,
}

/// TxnResponse (without header).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    /// Whether the compares held.
    pub succeeded: bool,
    /// One response per op run.
    pub responses: Vec<ResponseOp>,
}

/// CompactionRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionRequest {
    /// Compact history before this revision.
    pub revision: Revision,
    /// Wait until the compaction is physically done (no difference here).
    pub physical: bool,
}

/// LeaseGrantRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrantRequest {
    /// Time to live in seconds.
    pub ttl: i64,
    /// The requested ID; the server fills a fresh one when the client sent 0.
    pub id: LeaseId,
}

/// LeaseGrantResponse (without header).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrantResponse {
    /// The granted lease.
    pub id: LeaseId,
    /// The granted TTL in seconds (raised to the minimum TTL).
    pub ttl: i64,
}

/// LeaseTimeToLiveResponse (without header).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTimeToLiveResponse {
    /// The lease.
    pub id: LeaseId,
    /// Remaining seconds; -1 when the lease does not exist.
    pub ttl: i64,
    /// The TTL it was granted with.
    pub granted_ttl: i64,
    /// Attached keys, if asked for.
    pub keys: Vec<Vec<u8>>,
}

/// Watch filters (WatchCreateRequest.FilterType).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatchFilter {
    /// Drop put events.
    NoPut,
    /// Drop delete events.
    NoDelete,
}

/// WatchCreateRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchCreateRequest {
    /// First key watched (or the only key).
    pub key: Vec<u8>,
    /// End of the range, exclusive; `\0` for "every key >= key".
    pub range_end: Vec<u8>,
    /// First revision to deliver; 0 for "from now".
    pub start_revision: Revision,
    /// Send empty progress responses when idle.
    pub progress_notify: bool,
    /// Events to drop.
    pub filters: Vec<WatchFilter>,
    /// Attach the previous key-value to each event.
    pub prev_kv: bool,
    /// The client's chosen watch ID; 0 lets the server choose.
    pub watch_id: i64,
    /// Split large revisions into fragments.
    pub fragment: bool,
}

/// WatchResponse (without header; `header_revision` is what the header
/// revision must say).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchResponse {
    /// The revision for the response header.
    pub header_revision: Revision,
    /// The watch this response is for (-1 for a stream-wide progress answer).
    pub watch_id: i64,
    /// Answers a create request.
    pub created: bool,
    /// The watch is cancelled; no more responses follow for it.
    pub canceled: bool,
    /// Set when cancelled because its start revision was compacted.
    pub compact_revision: Revision,
    /// Why it was cancelled.
    pub cancel_reason: String,
    /// More fragments of the same revision follow.
    pub fragment: bool,
    /// The events, ordered by revision; all events of one revision together.
    pub events: Vec<Event>,
}
