//! Builders shared by the checker tests: a history written as a script of
//! (client, invoke time, operation, completion time, result) lines, and
//! key-values with etcd's fields.

#![allow(dead_code)]

use cairn_core::kv::{Event, EventType, KeyValue, LeaseId, Revision};
use cairn_sim::history::{
    ClientId, Comparison, Consistency, History, Operation, OperationId, OperationResult,
    SwapOutcome,
};
use cairn_sim::time::SimTime;

/// Simulated time in milliseconds.
pub fn ms(millis: u64) -> SimTime {
    SimTime(millis * 1_000_000)
}

/// A key-value as etcd returns it.
pub fn kv(key: &str, value: &str, create: Revision, modified: Revision, version: i64) -> KeyValue {
    KeyValue {
        key: key.as_bytes().to_vec(),
        create_revision: create,
        mod_revision: modified,
        version,
        value: value.as_bytes().to_vec(),
        lease: 0,
    }
}

/// The same with a lease.
pub fn leased(kv: KeyValue, lease: LeaseId) -> KeyValue {
    KeyValue { lease, ..kv }
}

pub fn put_event(kv: KeyValue) -> Event {
    Event {
        kind: EventType::Put,
        kv,
        prev_kv: None,
    }
}

pub fn delete_event(key: &str, revision: Revision) -> Event {
    Event {
        kind: EventType::Delete,
        kv: KeyValue {
            key: key.as_bytes().to_vec(),
            mod_revision: revision,
            ..KeyValue::default()
        },
        prev_kv: None,
    }
}

pub fn put(key: &str, value: &str) -> Operation {
    Operation::Put {
        key: key.into(),
        value: value.into(),
        lease: 0,
    }
}

pub fn put_leased(key: &str, value: &str, lease: LeaseId) -> Operation {
    Operation::Put {
        key: key.into(),
        value: value.into(),
        lease,
    }
}

pub fn get(key: &str) -> Operation {
    Operation::Get {
        key: key.into(),
        consistency: Consistency::Linearizable,
    }
}

pub fn serializable_get(key: &str) -> Operation {
    Operation::Get {
        key: key.into(),
        consistency: Consistency::Serializable,
    }
}

pub fn delete(key: &str) -> Operation {
    Operation::Delete { key: key.into() }
}

pub fn cas(key: &str, expected: &str, value: &str) -> Operation {
    Operation::CompareAndSwap {
        key: key.into(),
        comparison: Comparison::ValueEquals(expected.into()),
        value: value.into(),
        lease: 0,
    }
}

pub fn range(prefix: &str) -> Operation {
    Operation::RangePrefix {
        prefix: prefix.into(),
        consistency: Consistency::Linearizable,
    }
}

pub fn put_ok(revision: Revision) -> OperationResult {
    OperationResult::Put { revision }
}

pub fn get_ok(revision: Revision, kv: Option<KeyValue>) -> OperationResult {
    OperationResult::Get { revision, kv }
}

pub fn delete_ok(revision: Revision, deleted: i64) -> OperationResult {
    OperationResult::Delete { revision, deleted }
}

pub fn swapped(revision: Revision) -> OperationResult {
    OperationResult::CompareAndSwap {
        revision,
        outcome: SwapOutcome::Swapped,
    }
}

pub fn refused(revision: Revision, current: Option<KeyValue>) -> OperationResult {
    OperationResult::CompareAndSwap {
        revision,
        outcome: SwapOutcome::Refused { current },
    }
}

pub fn range_ok(revision: Revision, kvs: Vec<KeyValue>) -> OperationResult {
    OperationResult::RangePrefix { revision, kvs }
}

/// Records a completed operation.
pub fn done(
    history: &mut History,
    client: u64,
    invoked: u64,
    operation: Operation,
    completed: u64,
    result: OperationResult,
) -> OperationId {
    let id = history.invoke(ClientId(client), operation, ms(invoked));
    history.complete(id, ms(completed), result);
    id
}

/// Records an operation that timed out.
pub fn lost(history: &mut History, client: u64, invoked: u64, operation: Operation) -> OperationId {
    let id = history.invoke(ClientId(client), operation, ms(invoked));
    history.indeterminate(id, "timeout");
    id
}

/// Records an operation the cluster refused.
pub fn refused_op(
    history: &mut History,
    client: u64,
    invoked: u64,
    operation: Operation,
    completed: u64,
) -> OperationId {
    let id = history.invoke(ClientId(client), operation, ms(invoked));
    history.fail(id, ms(completed), "not leader");
    id
}
