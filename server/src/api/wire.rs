//! The mapping between etcd's protobuf messages and `cairn_core::kv`'s types.
//! The two are one-to-one by design, so every function here is a plain move
//! of fields; enum values a newer client might send that etcd 3.4 does not
//! know decode as protobuf's default, as they do in etcd.

use cairn_core::kv as core;

use super::proto::etcdserverpb as pb;
use super::proto::mvccpb;
use crate::node::{Member, ResponseHeader};

/// The wire header for a node header.
pub fn header_to_wire(header: ResponseHeader) -> pb::ResponseHeader {
    pb::ResponseHeader {
        cluster_id: header.cluster_id,
        member_id: header.member_id,
        revision: header.revision,
        raft_term: header.raft_term,
    }
}

/// The wire header for a node header, wrapped as the optional message field.
pub fn some_header(header: ResponseHeader) -> Option<pb::ResponseHeader> {
    Some(header_to_wire(header))
}

/// mvccpb.KeyValue from the core's key-value.
pub fn key_value_to_wire(kv: core::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// The core's key-value from mvccpb.KeyValue.
pub fn key_value_from_wire(kv: mvccpb::KeyValue) -> core::KeyValue {
    core::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// mvccpb.Event from the core's event.
pub fn event_to_wire(event: core::Event) -> mvccpb::Event {
    let kind = match event.kind {
        core::EventType::Put => mvccpb::event::EventType::Put,
        core::EventType::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event {
        r#type: kind as i32,
        kv: Some(key_value_to_wire(event.kv)),
        prev_kv: event.prev_kv.map(key_value_to_wire),
    }
}

/// The core's RangeRequest.
pub fn range_request_from_wire(request: pb::RangeRequest) -> core::RangeRequest {
    let sort_order = match request.sort_order() {
        pb::range_request::SortOrder::None => core::SortOrder::None,
        pb::range_request::SortOrder::Ascend => core::SortOrder::Ascend,
        pb::range_request::SortOrder::Descend => core::SortOrder::Descend,
    };
    let sort_target = match request.sort_target() {
        pb::range_request::SortTarget::Key => core::SortTarget::Key,
        pb::range_request::SortTarget::Version => core::SortTarget::Version,
        pb::range_request::SortTarget::Create => core::SortTarget::Create,
        pb::range_request::SortTarget::Mod => core::SortTarget::Mod,
        pb::range_request::SortTarget::Value => core::SortTarget::Value,
    };
    core::RangeRequest {
        key: request.key,
        range_end: request.range_end,
        limit: request.limit,
        revision: request.revision,
        sort_order,
        sort_target,
        serializable: request.serializable,
        keys_only: request.keys_only,
        count_only: request.count_only,
        min_mod_revision: request.min_mod_revision,
        max_mod_revision: request.max_mod_revision,
        min_create_revision: request.min_create_revision,
        max_create_revision: request.max_create_revision,
    }
}

/// The wire RangeResponse.
pub fn range_response_to_wire(
    header: Option<pb::ResponseHeader>,
    response: core::RangeResponse,
) -> pb::RangeResponse {
    pb::RangeResponse {
        header,
        kvs: response.kvs.into_iter().map(key_value_to_wire).collect(),
        more: response.more,
        count: response.count,
    }
}

/// The core's PutRequest.
pub fn put_request_from_wire(request: pb::PutRequest) -> core::PutRequest {
    core::PutRequest {
        key: request.key,
        value: request.value,
        lease: request.lease,
        prev_kv: request.prev_kv,
        ignore_value: request.ignore_value,
        ignore_lease: request.ignore_lease,
    }
}

/// The wire PutResponse.
pub fn put_response_to_wire(
    header: Option<pb::ResponseHeader>,
    response: core::PutResponse,
) -> pb::PutResponse {
    pb::PutResponse {
        header,
        prev_kv: response.prev_kv.map(key_value_to_wire),
    }
}

/// The core's DeleteRangeRequest.
pub fn delete_range_request_from_wire(request: pb::DeleteRangeRequest) -> core::DeleteRangeRequest {
    core::DeleteRangeRequest {
        key: request.key,
        range_end: request.range_end,
        prev_kv: request.prev_kv,
    }
}

/// The wire DeleteRangeResponse.
pub fn delete_range_response_to_wire(
    header: Option<pb::ResponseHeader>,
    response: core::DeleteRangeResponse,
) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header,
        deleted: response.deleted,
        prev_kvs: response
            .prev_kvs
            .into_iter()
            .map(key_value_to_wire)
            .collect(),
    }
}

/// The core's Compare. The `target` enum chooses the compared field, as in
/// etcd; a `target_union` holding another field compares against zero (or
/// the empty value), which is what etcd does with a mismatched union.
pub fn compare_from_wire(compare: pb::Compare) -> core::Compare {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    let result = match compare.result() {
        CompareResult::Equal => core::CompareResult::Equal,
        CompareResult::Greater => core::CompareResult::Greater,
        CompareResult::Less => core::CompareResult::Less,
        CompareResult::NotEqual => core::CompareResult::NotEqual,
    };
    let target = match (compare.target(), compare.target_union) {
        (CompareTarget::Version, Some(TargetUnion::Version(version))) => {
            core::CompareTarget::Version(version)
        }
        (CompareTarget::Version, _) => core::CompareTarget::Version(0),
        (CompareTarget::Create, Some(TargetUnion::CreateRevision(revision))) => {
            core::CompareTarget::Create(revision)
        }
        (CompareTarget::Create, _) => core::CompareTarget::Create(0),
        (CompareTarget::Mod, Some(TargetUnion::ModRevision(revision))) => {
            core::CompareTarget::Mod(revision)
        }
        (CompareTarget::Mod, _) => core::CompareTarget::Mod(0),
        (CompareTarget::Value, Some(TargetUnion::Value(value))) => {
            core::CompareTarget::Value(value)
        }
        (CompareTarget::Value, _) => core::CompareTarget::Value(Vec::new()),
        (CompareTarget::Lease, Some(TargetUnion::Lease(lease))) => {
            core::CompareTarget::Lease(lease)
        }
        (CompareTarget::Lease, _) => core::CompareTarget::Lease(0),
    };
    core::Compare {
        result,
        target,
        key: compare.key,
        range_end: compare.range_end,
    }
}

/// The core's RequestOp; `None` for an op with no request set (etcd skips those).
pub fn request_op_from_wire(op: pb::RequestOp) -> Option<core::RequestOp> {
    use pb::request_op::Request;
    Some(match op.request? {
        Request::RequestRange(range) => core::RequestOp::Range(range_request_from_wire(range)),
        Request::RequestPut(put) => core::RequestOp::Put(put_request_from_wire(put)),
        Request::RequestDeleteRange(delete) => {
            core::RequestOp::DeleteRange(delete_range_request_from_wire(delete))
        }
        Request::RequestTxn(txn) => core::RequestOp::Txn(txn_request_from_wire(txn)),
    })
}

/// The core's TxnRequest.
pub fn txn_request_from_wire(request: pb::TxnRequest) -> core::TxnRequest {
    core::TxnRequest {
        compare: request.compare.into_iter().map(compare_from_wire).collect(),
        success: request
            .success
            .into_iter()
            .filter_map(request_op_from_wire)
            .collect(),
        failure: request
            .failure
            .into_iter()
            .filter_map(request_op_from_wire)
            .collect(),
    }
}

/// The wire ResponseOp. Responses nested in a txn carry the txn's header,
/// as etcd's do.
pub fn response_op_to_wire(
    header: Option<pb::ResponseHeader>,
    op: core::ResponseOp,
) -> pb::ResponseOp {
    use pb::response_op::Response;
    let response = match op {
        core::ResponseOp::Range(range) => {
            Response::ResponseRange(range_response_to_wire(header, range))
        }
        core::ResponseOp::Put(put) => Response::ResponsePut(put_response_to_wire(header, put)),
        core::ResponseOp::DeleteRange(delete) => {
            Response::ResponseDeleteRange(delete_range_response_to_wire(header, delete))
        }
        core::ResponseOp::Txn(txn) => Response::ResponseTxn(txn_response_to_wire(header, txn)),
    };
    pb::ResponseOp {
        response: Some(response),
    }
}

/// The wire TxnResponse.
pub fn txn_response_to_wire(
    header: Option<pb::ResponseHeader>,
    response: core::TxnResponse,
) -> pb::TxnResponse {
    pb::TxnResponse {
        header,
        succeeded: response.succeeded,
        responses: response
            .responses
            .into_iter()
            .map(|op| response_op_to_wire(header, op))
            .collect(),
    }
}

/// The core's CompactionRequest.
pub fn compaction_request_from_wire(request: pb::CompactionRequest) -> core::CompactionRequest {
    core::CompactionRequest {
        revision: request.revision,
        physical: request.physical,
    }
}

/// The core's WatchCreateRequest. Unknown filter values are dropped.
pub fn watch_create_request_from_wire(request: pb::WatchCreateRequest) -> core::WatchCreateRequest {
    use pb::watch_create_request::FilterType;
    let filters = request
        .filters
        .iter()
        .filter_map(|filter| match FilterType::try_from(*filter) {
            Ok(FilterType::Noput) => Some(core::WatchFilter::NoPut),
            Ok(FilterType::Nodelete) => Some(core::WatchFilter::NoDelete),
            Err(_) => None,
        })
        .collect();
    core::WatchCreateRequest {
        key: request.key,
        range_end: request.range_end,
        start_revision: request.start_revision,
        progress_notify: request.progress_notify,
        filters,
        prev_kv: request.prev_kv,
        watch_id: request.watch_id,
        fragment: request.fragment,
    }
}

/// The wire WatchResponse; its header revision is the response's
/// `header_revision`, the rest of the header is the node's.
pub fn watch_response_to_wire(
    node_header: ResponseHeader,
    response: core::WatchResponse,
) -> pb::WatchResponse {
    let header = ResponseHeader {
        revision: response.header_revision,
        ..node_header
    };
    pb::WatchResponse {
        header: some_header(header),
        watch_id: response.watch_id,
        created: response.created,
        canceled: response.canceled,
        compact_revision: response.compact_revision,
        cancel_reason: response.cancel_reason,
        fragment: response.fragment,
        events: response.events.into_iter().map(event_to_wire).collect(),
    }
}

/// The wire Member.
pub fn member_to_wire(member: Member) -> pb::Member {
    pb::Member {
        id: member.id,
        name: member.name,
        peer_ur_ls: member.peer_urls,
        client_ur_ls: member.client_urls,
        is_learner: member.is_learner,
    }
}

/// The wire members.
pub fn members_to_wire(members: Vec<Member>) -> Vec<pb::Member> {
    members.into_iter().map(member_to_wire).collect()
}

#[cfg(test)]
mod tests {
    //! Guards the wire contract: field numbers as etcd defines them (checked
    //! on encoded bytes) and conversions that lose nothing.

    use prost::Message;

    use super::*;

    /// The protobuf key byte of field `number` with wire type `wire_type`.
    fn tag(number: u8, wire_type: u8) -> u8 {
        (number << 3) | wire_type
    }

    const VARINT: u8 = 0;
    const LENGTH_DELIMITED: u8 = 2;

    #[test]
    fn range_request_field_numbers_match_etcd() {
        let request = pb::RangeRequest {
            key: b"k".to_vec(),
            limit: 5,
            ..Default::default()
        };
        assert_eq!(
            request.encode_to_vec(),
            vec![tag(1, LENGTH_DELIMITED), 1, b'k', tag(3, VARINT), 5]
        );
        let request = pb::RangeRequest {
            max_create_revision: 9,
            ..Default::default()
        };
        assert_eq!(request.encode_to_vec(), vec![tag(13, VARINT), 9]);
        let request = pb::RangeRequest {
            serializable: true,
            count_only: true,
            ..Default::default()
        };
        assert_eq!(
            request.encode_to_vec(),
            vec![tag(7, VARINT), 1, tag(9, VARINT), 1]
        );
    }

    #[test]
    fn compare_range_end_is_field_64() {
        let compare = pb::Compare {
            range_end: b"z".to_vec(),
            ..Default::default()
        };
        // Field 64, wire type 2: varint key 64 << 3 | 2 = 514 = [0x82, 0x04].
        assert_eq!(compare.encode_to_vec(), vec![0x82, 0x04, 1, b'z']);
        let compare = pb::Compare {
            target_union: Some(pb::compare::TargetUnion::Lease(3)),
            ..Default::default()
        };
        assert_eq!(compare.encode_to_vec(), vec![tag(8, VARINT), 3]);
    }

    #[test]
    fn watch_response_events_are_field_11_and_header_field_1() {
        let response = pb::WatchResponse {
            header: Some(pb::ResponseHeader {
                revision: 4,
                ..Default::default()
            }),
            watch_id: 2,
            events: vec![mvccpb::Event::default()],
            ..Default::default()
        };
        assert_eq!(
            response.encode_to_vec(),
            vec![
                tag(1, LENGTH_DELIMITED),
                2,
                tag(3, VARINT),
                4,
                tag(2, VARINT),
                2,
                tag(11, LENGTH_DELIMITED),
                0
            ]
        );
    }

    #[test]
    fn key_value_and_member_field_numbers_match_etcd() {
        let kv = mvccpb::KeyValue {
            lease: 1,
            version: 2,
            ..Default::default()
        };
        assert_eq!(
            kv.encode_to_vec(),
            vec![tag(4, VARINT), 2, tag(6, VARINT), 1]
        );
        let member = pb::Member {
            is_learner: true,
            client_ur_ls: vec!["u".into()],
            ..Default::default()
        };
        assert_eq!(
            member.encode_to_vec(),
            vec![tag(4, LENGTH_DELIMITED), 1, b'u', tag(5, VARINT), 1]
        );
        let status = pb::StatusResponse {
            is_learner: true,
            db_size_in_use: 3,
            ..Default::default()
        };
        assert_eq!(
            status.encode_to_vec(),
            vec![tag(9, VARINT), 3, tag(10, VARINT), 1]
        );
    }

    #[test]
    fn lease_and_snapshot_field_numbers_match_etcd() {
        let grant = pb::LeaseGrantResponse {
            id: 7,
            ttl: 5,
            error: "e".into(),
            header: None,
        };
        assert_eq!(
            grant.encode_to_vec(),
            vec![
                tag(2, VARINT),
                7,
                tag(3, VARINT),
                5,
                tag(4, LENGTH_DELIMITED),
                1,
                b'e'
            ]
        );
        let snapshot = pb::SnapshotResponse {
            remaining_bytes: 1,
            blob: vec![9],
            header: None,
        };
        assert_eq!(
            snapshot.encode_to_vec(),
            vec![tag(2, VARINT), 1, tag(3, LENGTH_DELIMITED), 1, 9]
        );
    }

    #[test]
    fn range_request_converts_every_field() {
        let wire = pb::RangeRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            limit: 3,
            revision: 4,
            sort_order: pb::range_request::SortOrder::Descend as i32,
            sort_target: pb::range_request::SortTarget::Mod as i32,
            serializable: true,
            keys_only: true,
            count_only: false,
            min_mod_revision: 5,
            max_mod_revision: 6,
            min_create_revision: 7,
            max_create_revision: 8,
        };
        let request = range_request_from_wire(wire);
        assert_eq!(
            request,
            core::RangeRequest {
                key: b"a".to_vec(),
                range_end: b"b".to_vec(),
                limit: 3,
                revision: 4,
                sort_order: core::SortOrder::Descend,
                sort_target: core::SortTarget::Mod,
                serializable: true,
                keys_only: true,
                count_only: false,
                min_mod_revision: 5,
                max_mod_revision: 6,
                min_create_revision: 7,
                max_create_revision: 8,
            }
        );
    }

    #[test]
    fn unknown_sort_order_decodes_as_none_like_etcd() {
        let wire = pb::RangeRequest {
            sort_order: 42,
            ..Default::default()
        };
        assert_eq!(
            range_request_from_wire(wire).sort_order,
            core::SortOrder::None
        );
    }

    #[test]
    fn txn_converts_compares_and_nested_ops() {
        let wire = pb::TxnRequest {
            compare: vec![pb::Compare {
                result: pb::compare::CompareResult::NotEqual as i32,
                target: pb::compare::CompareTarget::Create as i32,
                key: b"k".to_vec(),
                target_union: Some(pb::compare::TargetUnion::CreateRevision(0)),
                range_end: Vec::new(),
            }],
            success: vec![
                pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                        key: b"k".to_vec(),
                        value: b"v".to_vec(),
                        ..Default::default()
                    })),
                },
                pb::RequestOp { request: None },
                pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestTxn(
                        pb::TxnRequest::default(),
                    )),
                },
            ],
            failure: vec![],
        };
        let txn = txn_request_from_wire(wire);
        assert_eq!(txn.compare[0].result, core::CompareResult::NotEqual);
        assert_eq!(txn.compare[0].target, core::CompareTarget::Create(0));
        assert_eq!(txn.success.len(), 2, "the empty op is skipped");
        assert!(matches!(txn.success[1], core::RequestOp::Txn(_)));
    }

    #[test]
    fn mismatched_compare_union_compares_against_zero() {
        let wire = pb::Compare {
            target: pb::compare::CompareTarget::Version as i32,
            target_union: Some(pb::compare::TargetUnion::ModRevision(9)),
            ..Default::default()
        };
        assert_eq!(
            compare_from_wire(wire).target,
            core::CompareTarget::Version(0)
        );
    }

    #[test]
    fn txn_response_nests_the_header() {
        let header = some_header(ResponseHeader {
            revision: 3,
            ..Default::default()
        });
        let response = core::TxnResponse {
            succeeded: true,
            responses: vec![core::ResponseOp::Put(core::PutResponse::default())],
        };
        let wire = txn_response_to_wire(header, response);
        let Some(pb::response_op::Response::ResponsePut(put)) = &wire.responses[0].response else {
            panic!("expected a put response, got {:?}", wire.responses[0]);
        };
        assert_eq!(put.header, header);
        assert!(wire.succeeded);
    }

    #[test]
    fn watch_response_header_carries_the_watch_revision() {
        let node_header = ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 100,
            raft_term: 3,
        };
        let response = core::WatchResponse {
            header_revision: 42,
            watch_id: -1,
            events: vec![core::Event {
                kind: core::EventType::Delete,
                kv: core::KeyValue {
                    key: b"k".to_vec(),
                    ..Default::default()
                },
                prev_kv: None,
            }],
            ..Default::default()
        };
        let wire = watch_response_to_wire(node_header, response);
        let header = wire.header.expect("header");
        assert_eq!(
            (
                header.cluster_id,
                header.member_id,
                header.revision,
                header.raft_term
            ),
            (1, 2, 42, 3)
        );
        assert_eq!(wire.watch_id, -1);
        assert_eq!(
            wire.events[0].r#type,
            mvccpb::event::EventType::Delete as i32
        );
    }

    #[test]
    fn watch_filters_convert_and_unknown_ones_drop() {
        let wire = pb::WatchCreateRequest {
            filters: vec![1, 0, 9],
            ..Default::default()
        };
        assert_eq!(
            watch_create_request_from_wire(wire).filters,
            vec![core::WatchFilter::NoDelete, core::WatchFilter::NoPut]
        );
    }

    #[test]
    fn key_value_round_trips() {
        let kv = core::KeyValue {
            key: b"k".to_vec(),
            create_revision: 1,
            mod_revision: 2,
            version: 3,
            value: b"v".to_vec(),
            lease: 4,
        };
        let bytes = key_value_to_wire(kv.clone()).encode_to_vec();
        let decoded = mvccpb::KeyValue::decode(bytes.as_slice()).expect("decode");
        assert_eq!(key_value_from_wire(decoded), kv);
    }
}
