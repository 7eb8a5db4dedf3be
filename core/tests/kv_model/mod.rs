//! A naive model of etcd's MVCC semantics for property tests: the full
//! state at every revision as a BTreeMap, and every revision's events.
//! It is deliberately simple (whole-state copies, linear scans) so that it
//! is obviously right; the store must agree with it on every read.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use cairn_core::kv::{
    Command, CommandResponse, CompactionRequest, Compare, CompareResult, CompareTarget,
    DeleteRangeRequest, Event, EventType, KeyValue, KvError, PutRequest, RangeRequest,
    RangeResponse, RequestOp, Revision, SortOrder, SortTarget, TxnRequest,
};
use proptest::prelude::*;

/// The keys the generators draw from: few, so that ops collide.
pub const KEYS: &[&[u8]] = &[b"a", b"aa", b"ab", b"b", b"c", b"d"];

/// One state of the whole keyspace.
pub type State = BTreeMap<Vec<u8>, KeyValue>;

/// The model: every revision's full state and events.
#[derive(Clone, Debug)]
pub struct Model {
    /// states[r] is the state at revision r (states[0] is unused).
    pub states: Vec<State>,
    /// events[r] are the events of revision r.
    pub events: Vec<Vec<Event>>,
    /// The compact revision.
    pub compact_revision: Revision,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            states: vec![State::new(), State::new()],
            events: vec![vec![], vec![]],
            compact_revision: 0,
        }
    }
}

/// A model-level key range.
pub fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

/// A write being applied to the model.
struct Working<'a> {
    model: &'a Model,
    state: State,
    events: Vec<Event>,
}

impl Working<'_> {
    fn revision(&self) -> Revision {
        self.model.revision() + 1
    }

    fn previous(&self, key: &[u8]) -> Option<KeyValue> {
        self.model.current().get(key).cloned()
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>) -> Option<KeyValue> {
        let revision = self.revision();
        let old = self.state.get(key).cloned();
        let kv = match &old {
            Some(old) => KeyValue {
                key: key.to_vec(),
                create_revision: old.create_revision,
                mod_revision: revision,
                version: old.version + 1,
                value,
                lease: 0,
            },
            None => KeyValue {
                key: key.to_vec(),
                create_revision: revision,
                mod_revision: revision,
                version: 1,
                value,
                lease: 0,
            },
        };
        let prev_kv = if kv.create_revision == revision {
            None
        } else {
            self.previous(key)
        };
        self.events.push(Event {
            kind: EventType::Put,
            kv: kv.clone(),
            prev_kv,
        });
        self.state.insert(key.to_vec(), kv);
        old
    }

    fn delete(&mut self, start: &[u8], end: &[u8]) -> Vec<KeyValue> {
        let revision = self.revision();
        let keys: Vec<Vec<u8>> = self
            .state
            .keys()
            .filter(|key| in_range(key, start, end))
            .cloned()
            .collect();
        let mut deleted = Vec::new();
        for key in keys {
            let old = self.state.remove(&key).expect("listed key");
            let kv = KeyValue {
                key: key.clone(),
                mod_revision: revision,
                ..KeyValue::default()
            };
            let prev_kv = self.previous(&key);
            self.events.push(Event {
                kind: EventType::Delete,
                kv,
                prev_kv,
            });
            deleted.push(old);
        }
        deleted
    }
}

impl Model {
    /// The current revision.
    pub fn revision(&self) -> Revision {
        self.states.len() as Revision - 1
    }

    /// The current state.
    pub fn current(&self) -> &State {
        self.states.last().expect("states")
    }

    fn commit(&mut self, working_state: State, events: Vec<Event>) {
        if !events.is_empty() {
            self.states.push(working_state);
            self.events.push(events);
        }
    }

    /// Applies a command the generators produce; returns Err as etcd would.
    pub fn apply(&mut self, command: &Command) -> Result<(), KvError> {
        match command {
            Command::Put(put) => {
                let mut working = self.working();
                if put.ignore_value && !working.state.contains_key(&put.key) {
                    return Err(KvError::KeyNotFound);
                }
                let value = if put.ignore_value {
                    working.state[&put.key].value.clone()
                } else {
                    put.value.clone()
                };
                working.put(&put.key, value);
                let (state, events) = (working.state, working.events);
                self.commit(state, events);
                Ok(())
            }
            Command::DeleteRange(delete) => {
                let mut working = self.working();
                working.delete(&delete.key, &delete.range_end);
                let (state, events) = (working.state, working.events);
                self.commit(state, events);
                Ok(())
            }
            Command::Txn(txn) => {
                check_intervals(&txn.success)?;
                check_intervals(&txn.failure)?;
                // Every compare on the path sees the state before the txn.
                let mut ops = Vec::new();
                self.flatten(txn, &mut ops);
                for op in &ops {
                    if let RequestOp::Put(put) = op {
                        if put.ignore_value && !self.current().contains_key(&put.key) {
                            return Err(KvError::KeyNotFound);
                        }
                    }
                }
                let mut working = self.working();
                for op in ops {
                    match op {
                        RequestOp::Put(put) => {
                            let value = match (put.ignore_value, working.state.get(&put.key)) {
                                (false, _) => put.value.clone(),
                                (true, Some(kv)) => kv.value.clone(),
                                // Deleted by an earlier from-key delete of the
                                // same txn: the whole txn fails.
                                (true, None) => return Err(KvError::KeyNotFound),
                            };
                            working.put(&put.key, value);
                        }
                        RequestOp::DeleteRange(delete) => {
                            working.delete(&delete.key, &delete.range_end);
                        }
                        RequestOp::Range(_) | RequestOp::Txn(_) => {}
                    }
                }
                let (state, events) = (working.state, working.events);
                self.commit(state, events);
                Ok(())
            }
            Command::Compact(CompactionRequest { revision, .. }) => {
                if *revision <= self.compact_revision {
                    return Err(KvError::Compacted {
                        compact_revision: self.compact_revision,
                    });
                }
                if *revision > self.revision() {
                    return Err(KvError::FutureRevision {
                        current_revision: self.revision(),
                    });
                }
                self.compact_revision = *revision;
                Ok(())
            }
            other => panic!("the model does not handle {other:?}"),
        }
    }

    /// The ops that run, nested txns resolved against the current state.
    fn flatten<'a>(&self, txn: &'a TxnRequest, out: &mut Vec<&'a RequestOp>) {
        let succeeded = txn.compare.iter().all(|compare| self.compare(compare));
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        for op in ops {
            match op {
                RequestOp::Txn(nested) => self.flatten(nested, out),
                other => out.push(other),
            }
        }
    }

    fn working(&self) -> Working<'_> {
        Working {
            model: self,
            state: self.current().clone(),
            events: Vec::new(),
        }
    }

    /// etcd's compare against the current state.
    pub fn compare(&self, compare: &Compare) -> bool {
        let kvs: Vec<&KeyValue> = self
            .current()
            .values()
            .filter(|kv| in_range(&kv.key, &compare.key, &compare.range_end))
            .collect();
        let zero = KeyValue::default();
        let kvs = if kvs.is_empty() {
            if matches!(compare.target, CompareTarget::Value(_)) {
                return false;
            }
            vec![&zero]
        } else {
            kvs
        };
        kvs.iter().all(|kv| {
            let ordering = match &compare.target {
                CompareTarget::Version(v) => kv.version.cmp(v),
                CompareTarget::Create(v) => kv.create_revision.cmp(v),
                CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
                CompareTarget::Value(v) => kv.value.cmp(v),
                CompareTarget::Lease(v) => kv.lease.cmp(v),
            };
            match compare.result {
                CompareResult::Equal => ordering.is_eq(),
                CompareResult::NotEqual => ordering.is_ne(),
                CompareResult::Greater => ordering.is_gt(),
                CompareResult::Less => ordering.is_lt(),
            }
        })
    }

    /// etcd's Range semantics, naively.
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, KvError> {
        let current = self.revision();
        if request.revision > current {
            return Err(KvError::FutureRevision {
                current_revision: current,
            });
        }
        let revision = if request.revision <= 0 {
            current
        } else {
            request.revision
        };
        if revision < self.compact_revision {
            return Err(KvError::Compacted {
                compact_revision: self.compact_revision,
            });
        }
        let all: Vec<KeyValue> = self.states[revision as usize]
            .values()
            .filter(|kv| in_range(&kv.key, &request.key, &request.range_end))
            .cloned()
            .collect();
        let count = all.len() as i64;
        if request.count_only {
            return Ok(RangeResponse {
                kvs: vec![],
                more: false,
                count,
            });
        }
        let mut kvs: Vec<KeyValue> = all
            .into_iter()
            .filter(|kv| {
                request.min_mod_revision == 0 || kv.mod_revision >= request.min_mod_revision
            })
            .filter(|kv| {
                request.max_mod_revision == 0 || kv.mod_revision <= request.max_mod_revision
            })
            .filter(|kv| {
                request.min_create_revision == 0
                    || kv.create_revision >= request.min_create_revision
            })
            .filter(|kv| {
                request.max_create_revision == 0
                    || kv.create_revision <= request.max_create_revision
            })
            .collect();
        let key_of = |kv: &KeyValue| -> (Vec<u8>, Vec<u8>) {
            let primary = match request.sort_target {
                SortTarget::Key => vec![],
                SortTarget::Version => kv.version.to_be_bytes().to_vec(),
                SortTarget::Create => kv.create_revision.to_be_bytes().to_vec(),
                SortTarget::Mod => kv.mod_revision.to_be_bytes().to_vec(),
                SortTarget::Value => kv.value.clone(),
            };
            (primary, kv.key.clone())
        };
        let order = match (request.sort_order, request.sort_target) {
            (SortOrder::None, SortTarget::Key) => SortOrder::Ascend,
            (SortOrder::None, _) => SortOrder::Ascend,
            (order, _) => order,
        };
        kvs.sort_by_key(key_of);
        if order == SortOrder::Descend {
            kvs.reverse();
        }
        let mut more = false;
        if request.limit > 0 && kvs.len() > request.limit as usize {
            kvs.truncate(request.limit as usize);
            more = true;
        }
        if request.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        Ok(RangeResponse { kvs, more, count })
    }

    /// The events of revisions [from, to], in order.
    pub fn events_between(&self, from: Revision, to: Revision) -> Vec<Event> {
        (from.max(0)..=to)
            .flat_map(|revision| self.events[revision as usize].clone())
            .collect()
    }
}

/// A deleted range as (key, range_end).
type Interval = (Vec<u8>, Vec<u8>);

/// etcd's duplicate rule (`checkIntervals`), written out naively: per
/// branch, a key put twice or put and deleted is a duplicate; the branches
/// of a nested txn exclude each other; a from-key delete conflicts with
/// nothing (etcd's interval tree sees `[key, "\0")` as empty).
fn check_intervals(ops: &[RequestOp]) -> Result<(BTreeSet<Vec<u8>>, Vec<Interval>), KvError> {
    let conflicts = |deletes: &[Interval], key: &[u8]| {
        deletes
            .iter()
            .any(|(start, end)| end != &[0] && in_range(key, start, end))
    };
    let mut deletes: Vec<Interval> = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(d) => Some((d.key.clone(), d.range_end.clone())),
            _ => None,
        })
        .collect();
    let mut puts = BTreeSet::new();
    for op in ops {
        if let RequestOp::Txn(nested) = op {
            let (then_puts, then_deletes) = check_intervals(&nested.success)?;
            let (else_puts, else_deletes) = check_intervals(&nested.failure)?;
            for key in &then_puts {
                if puts.contains(key) || conflicts(&deletes, key) {
                    return Err(KvError::DuplicateKey);
                }
                puts.insert(key.clone());
            }
            for key in &else_puts {
                if (puts.contains(key) && !then_puts.contains(key)) || conflicts(&deletes, key) {
                    return Err(KvError::DuplicateKey);
                }
                puts.insert(key.clone());
            }
            deletes.extend(then_deletes);
            deletes.extend(else_deletes);
        }
    }
    for op in ops {
        if let RequestOp::Put(put) = op {
            if puts.contains(&put.key) || conflicts(&deletes, &put.key) {
                return Err(KvError::DuplicateKey);
            }
            puts.insert(put.key.clone());
        }
    }
    Ok((puts, deletes))
}

/// Ignores the response payload: only success or the error matters here.
pub fn outcome(response: &Result<CommandResponse, KvError>) -> Result<(), KvError> {
    response.as_ref().map(|_| ()).map_err(Clone::clone)
}

pub fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(KEYS).prop_map(<[u8]>::to_vec)
}

pub fn range_end_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => Just(Vec::new()),
        1 => Just(vec![0]),
        2 => key_strategy(),
        1 => Just(b"b".to_vec()),
    ]
}

pub fn value_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(b'0'..b'4', 0..3)
}

fn put_strategy() -> impl Strategy<Value = PutRequest> {
    (
        key_strategy(),
        value_strategy(),
        any::<bool>(),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(key, value, prev_kv, ignore_value)| PutRequest {
            key,
            value: if ignore_value { vec![] } else { value },
            prev_kv,
            ignore_value,
            ..PutRequest::default()
        })
}

fn delete_strategy() -> impl Strategy<Value = DeleteRangeRequest> {
    (key_strategy(), range_end_strategy(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| {
        DeleteRangeRequest {
            key,
            range_end,
            prev_kv,
        }
    })
}

fn compare_strategy() -> impl Strategy<Value = Compare> {
    let result = prop_oneof![
        Just(CompareResult::Equal),
        Just(CompareResult::Greater),
        Just(CompareResult::Less),
        Just(CompareResult::NotEqual),
    ];
    let target = prop_oneof![
        (0i64..4).prop_map(CompareTarget::Version),
        (0i64..12).prop_map(CompareTarget::Create),
        (0i64..12).prop_map(CompareTarget::Mod),
        value_strategy().prop_map(CompareTarget::Value),
        (0i64..2).prop_map(CompareTarget::Lease),
    ];
    let range_end = prop_oneof![4 => Just(Vec::new()), 1 => range_end_strategy()];
    (result, target, key_strategy(), range_end).prop_map(|(result, target, key, range_end)| {
        Compare {
            result,
            target,
            key,
            range_end,
        }
    })
}

fn simple_op_strategy() -> impl Strategy<Value = RequestOp> {
    prop_oneof![
        3 => put_strategy().prop_map(RequestOp::Put),
        2 => delete_strategy().prop_map(RequestOp::DeleteRange),
        1 => (key_strategy(), range_end_strategy()).prop_map(|(key, range_end)| {
            RequestOp::Range(RangeRequest { key, range_end, ..RangeRequest::default() })
        }),
    ]
}

fn op_strategy() -> impl Strategy<Value = RequestOp> {
    let nested = (
        prop::collection::vec(compare_strategy(), 0..2),
        prop::collection::vec(simple_op_strategy(), 0..3),
        prop::collection::vec(simple_op_strategy(), 0..2),
    )
        .prop_map(|(compare, success, failure)| {
            RequestOp::Txn(TxnRequest {
                compare,
                success,
                failure,
            })
        });
    prop_oneof![6 => simple_op_strategy(), 1 => nested]
}

/// A write command: put, delete, flat txn, or compact (by offset).
pub fn command_strategy() -> impl Strategy<Value = Command> {
    prop_oneof![
        5 => put_strategy().prop_map(Command::Put),
        2 => delete_strategy().prop_map(Command::DeleteRange),
        3 => (
            prop::collection::vec(compare_strategy(), 0..3),
            prop::collection::vec(op_strategy(), 0..4),
            prop::collection::vec(op_strategy(), 0..3),
        )
            .prop_map(|(compare, success, failure)| Command::Txn(TxnRequest {
                compare,
                success,
                failure,
            })),
        1 => (0i64..30).prop_map(|revision| Command::Compact(CompactionRequest {
            revision,
            physical: false,
        })),
    ]
}

/// A range request over any revision in [0, revision_max].
pub fn range_strategy(revision_max: Revision) -> impl Strategy<Value = RangeRequest> {
    let order = prop_oneof![
        Just(SortOrder::None),
        Just(SortOrder::Ascend),
        Just(SortOrder::Descend)
    ];
    let target = prop_oneof![
        Just(SortTarget::Key),
        Just(SortTarget::Version),
        Just(SortTarget::Create),
        Just(SortTarget::Mod),
        Just(SortTarget::Value),
    ];
    let filters = (0i64..6, 0i64..12, 0i64..6, 0i64..12);
    (
        key_strategy(),
        range_end_strategy(),
        0i64..4,
        0..=revision_max,
        order,
        target,
        any::<(bool, bool)>(),
        prop::bool::weighted(0.3),
        filters,
    )
        .prop_map(
            move |(key, range_end, limit, revision, sort_order, sort_target, flags, filter, f)| {
                let (keys_only, count_only) = flags;
                let (min_mod, max_mod, min_create, max_create) =
                    if filter { f } else { (0, 0, 0, 0) };
                RangeRequest {
                    key,
                    range_end,
                    limit,
                    revision,
                    sort_order,
                    sort_target,
                    serializable: false,
                    keys_only,
                    count_only: count_only && !keys_only,
                    min_mod_revision: min_mod,
                    max_mod_revision: max_mod,
                    min_create_revision: min_create,
                    max_create_revision: max_create,
                }
            },
        )
}
