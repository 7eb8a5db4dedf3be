//! The transaction checker: every completed etcd transaction — compares on
//! VALUE, VERSION, CREATE, MOD and LEASE with `=`, `!=`, `<`, `>`, several
//! keys, nested txns — is re-executed against the committed state and must
//! give the answer the client got.
//!
//! Multi-key and nested transactions do not fit the per-key
//! linearizability search, but etcd's revisions order every write, and the
//! committed [`EventLog`] replays the store's state at any revision. So, for
//! a txn whose response header carries revision `R`, exactly one of these
//! must hold:
//! - it wrote at `R`: evaluated against the state at `R - 1` (every compare
//!   on the chosen path, nested ones included, sees that state, as in
//!   etcd), it takes the branches the response says, its ranges return
//!   what the response holds (each op seeing the earlier ops' writes), its
//!   deletes count what they deleted, and its writes are exactly the events
//!   committed at `R`;
//! - it wrote nothing: evaluated against the state at `R`, it gives the
//!   same response and would write nothing.
//!
//! Together with the revision checker's real-time rule (a txn invoked after
//! another operation completed carries a revision at least as new), this
//! makes the transactions strictly serializable in revision order. The model
//! here is written from etcd's documented semantics, independently of
//! Cairn's `kv::txn`, so a bug there shows up as a disagreement.
//!
//! A txn whose revision the log does not reach contiguously is counted as
//! unverifiable, never as passed.

use std::collections::BTreeMap;
use std::fmt;

use cairn_core::kv::{
    Compare, CompareResult, CompareTarget, DeleteRangeResponse, EventType, KeyValue, RangeResponse,
    RequestOp, ResponseOp, Revision, TxnRequest, TxnResponse,
};

use crate::event_log::EventLog;
use crate::history::{History, Operation, OperationId, OperationResult};

/// The store's live keys at one revision.
type State = BTreeMap<Vec<u8>, KeyValue>;

/// A transaction whose response no committed state explains.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{operation} at revision {revision}: {reason}")]
pub struct TxnViolation {
    /// The txn.
    pub operation: OperationId,
    /// Its header revision.
    pub revision: Revision,
    /// What disagreed, under the interpretation the log points to.
    pub reason: String,
}

/// The result of [`check_txns`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnReport {
    /// Every violation, in revision order.
    pub violations: Vec<TxnViolation>,
    /// Txns re-executed against the committed state.
    pub txns_verified: usize,
    /// Of those, txns that wrote.
    pub txns_writing: usize,
    /// Of those, txns with a nested txn on the path taken.
    pub txns_nested: usize,
    /// Compares evaluated on verified txns, by (target, operator, held).
    pub compares: BTreeMap<(&'static str, &'static str, bool), usize>,
    /// Txns whose revision the event log does not cover.
    pub txns_unverifiable: usize,
}

impl TxnReport {
    /// No violation. (Unverifiable txns are counted, not failed.)
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// Compares evaluated on verified txns.
    pub fn compares_evaluated(&self) -> usize {
        self.compares.values().sum()
    }
}

impl fmt::Display for TxnReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held: usize = self
            .compares
            .iter()
            .filter(|((_, _, held), _)| *held)
            .map(|(_, count)| count)
            .sum();
        writeln!(
            f,
            "txns: {} violations; {} verified against committed state ({} wrote, {} nested), \
             {} unverifiable; {} compares ({} held)",
            self.violations.len(),
            self.txns_verified,
            self.txns_writing,
            self.txns_nested,
            self.txns_unverifiable,
            self.compares_evaluated(),
            held,
        )?;
        if !self.compares.is_empty() {
            // Held/evaluated per target and per operator: both outcomes
            // should be common for every one.
            let mut by_target: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
            let mut by_operator: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
            for ((target, operator, held), count) in &self.compares {
                for entry in [
                    by_target.entry(target).or_default(),
                    by_operator.entry(operator).or_default(),
                ] {
                    entry.1 += count;
                    if *held {
                        entry.0 += count;
                    }
                }
            }
            let parts: Vec<String> = by_target
                .iter()
                .chain(&by_operator)
                .map(|(name, (held, total))| format!("{name} {held}/{total}"))
                .collect();
            writeln!(f, "  compares held/evaluated: {}", parts.join(", "))?;
        }
        for violation in &self.violations {
            writeln!(f, "  {violation}")?;
        }
        Ok(())
    }
}

/// Checks every completed txn of `history` against the committed `log`.
pub fn check_txns(history: &History, log: &EventLog) -> TxnReport {
    let mut report = TxnReport::default();
    let mut txns: Vec<(Revision, OperationId, &TxnRequest, &TxnResponse)> = history
        .records()
        .iter()
        .filter_map(|record| match (&record.operation, record.result()?) {
            (Operation::Txn { request }, OperationResult::Txn { revision, response }) => {
                Some((*revision, record.id, request, response))
            }
            _ => None,
        })
        .collect();
    txns.sort_by_key(|(revision, id, _, _)| (*revision, *id));
    let through = log.contiguous_through();
    let initial = log.initial_revision();
    // Two forward-only replays: one at R - 1, one at R.
    let mut before = log.replay();
    let mut after = log.replay();
    for (revision, id, request, response) in txns {
        if revision > through || revision < initial {
            report.txns_unverifiable += 1;
            continue;
        }
        assert!(after.advance_to(revision), "{revision} <= {through}");
        let committed = log.get(revision).map(|events| &events.events[..]);
        let wrote = (revision > initial)
            .then(|| {
                assert!(before.advance_to(revision - 1), "{revision} <= {through}");
                execute(before.state(), request, revision)
            })
            .filter(|outcome| {
                let events = committed.unwrap_or_default();
                !outcome.writes.is_empty()
                    && outcome.response == *response
                    && same_writes(&outcome.writes, events)
            });
        let outcome = match wrote {
            Some(outcome) => {
                report.txns_writing += 1;
                outcome
            }
            None => {
                let outcome = execute(after.state(), request, revision + 1);
                if outcome.writes.is_empty() && outcome.response == *response {
                    outcome
                } else {
                    let reason = explain(&before, &after, request, response, revision, committed);
                    report.violations.push(TxnViolation {
                        operation: id,
                        revision,
                        reason,
                    });
                    continue;
                }
            }
        };
        report.txns_verified += 1;
        if outcome.nested {
            report.txns_nested += 1;
        }
        for (key, count) in outcome.compares {
            *report.compares.entry(key).or_insert(0) += count;
        }
    }
    report
}

/// Says why neither interpretation fits, using the one the log points to:
/// the txn wrote at `revision` if a put value it carries was committed there.
fn explain(
    before: &crate::event_log::Replay<'_>,
    after: &crate::event_log::Replay<'_>,
    request: &TxnRequest,
    response: &TxnResponse,
    revision: Revision,
    committed: Option<&[cairn_core::kv::Event]>,
) -> String {
    let mut values: Vec<&[u8]> = Vec::new();
    crate::history::visit_txn_ops(request, &mut |op| {
        if let RequestOp::Put(put) = op {
            values.push(&put.value);
        }
    });
    let events = committed.unwrap_or_default();
    let logged_here = events
        .iter()
        .any(|event| event.kind == EventType::Put && values.contains(&&event.kv.value[..]));
    if logged_here && before.revision() == revision - 1 {
        let expected = execute(before.state(), request, revision);
        format!(
            "it wrote at this revision, but against the state before it the txn gives {} \
             writing [{}]; the client got {} and the log holds [{}]",
            describe_response(&expected.response),
            describe_writes(&expected.writes),
            describe_response(response),
            describe_events(events),
        )
    } else {
        let expected = execute(after.state(), request, revision + 1);
        format!(
            "read-only at this revision, the txn gives {} writing [{}]; the client got {} \
             (log at this revision: [{}])",
            describe_response(&expected.response),
            describe_writes(&expected.writes),
            describe_response(response),
            describe_events(events),
        )
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe_kv(kv: &KeyValue) -> String {
    format!(
        "{}={} (create {}, mod {}, version {}, lease {})",
        lossy(&kv.key),
        lossy(&kv.value),
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        kv.lease
    )
}

/// A txn response in one line: the branch taken and each op's answer.
fn describe_response(response: &TxnResponse) -> String {
    let ops: Vec<String> = response
        .responses
        .iter()
        .map(|op| match op {
            ResponseOp::Range(range) => {
                let kvs: Vec<String> = range.kvs.iter().map(describe_kv).collect();
                format!("range [{}]", kvs.join(", "))
            }
            ResponseOp::Put(_) => "put".to_string(),
            ResponseOp::DeleteRange(delete) => format!("deleted {}", delete.deleted),
            ResponseOp::Txn(nested) => format!("txn {}", describe_response(nested)),
        })
        .collect();
    let branch = if response.succeeded { "then" } else { "else" };
    format!("{branch} {{{}}}", ops.join("; "))
}

fn describe_writes(writes: &[Write]) -> String {
    let writes: Vec<String> = writes
        .iter()
        .map(|write| match write.kind {
            EventType::Put => format!("put {}", describe_kv(&write.kv)),
            EventType::Delete => format!("delete {}", lossy(&write.kv.key)),
        })
        .collect();
    writes.join("; ")
}

fn describe_events(events: &[cairn_core::kv::Event]) -> String {
    let events: Vec<String> = events
        .iter()
        .map(|event| match event.kind {
            EventType::Put => format!("put {}", describe_kv(&event.kv)),
            EventType::Delete => format!("delete {}", lossy(&event.kv.key)),
        })
        .collect();
    events.join("; ")
}

/// One write a txn makes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Write {
    kind: EventType,
    /// For a put, the key-value written; for a delete, the key only.
    kv: KeyValue,
}

/// What executing a txn against a state gives.
#[derive(Debug)]
struct Execution {
    response: TxnResponse,
    writes: Vec<Write>,
    nested: bool,
    compares: BTreeMap<(&'static str, &'static str, bool), usize>,
}

/// Whether `writes` are exactly the committed `events` (deletes by key).
fn same_writes(writes: &[Write], events: &[cairn_core::kv::Event]) -> bool {
    writes.len() == events.len()
        && writes.iter().zip(events).all(|(write, event)| {
            write.kind == event.kind
                && match write.kind {
                    EventType::Put => write.kv == event.kv,
                    EventType::Delete => write.kv.key == event.kv.key,
                }
        })
}

/// Runs `request` against `state` as etcd would at `revision` (the
/// revision its writes get): every compare on the chosen path against
/// `state`, then the ops in order, each seeing the earlier ones' writes.
fn execute(state: &State, request: &TxnRequest, revision: Revision) -> Execution {
    let mut execution = Execution {
        response: TxnResponse::default(),
        writes: Vec::new(),
        nested: false,
        compares: BTreeMap::new(),
    };
    let mut working = state.clone();
    execution.response = run(state, &mut working, request, revision, &mut execution);
    execution
}

fn run(
    before: &State,
    working: &mut State,
    request: &TxnRequest,
    revision: Revision,
    execution: &mut Execution,
) -> TxnResponse {
    let mut succeeded = true;
    for compare in &request.compare {
        let held = compare_holds(before, compare);
        *execution
            .compares
            .entry((
                target_name(&compare.target),
                operator_name(compare.result),
                held,
            ))
            .or_insert(0) += 1;
        succeeded &= held;
    }
    let branch = if succeeded {
        &request.success
    } else {
        &request.failure
    };
    let mut responses = Vec::with_capacity(branch.len());
    for op in branch {
        responses.push(match op {
            RequestOp::Range(range) => {
                let kvs: Vec<KeyValue> = keys_in(working, &range.key, &range.range_end)
                    .into_iter()
                    .map(|key| working[&key].clone())
                    .collect();
                ResponseOp::Range(RangeResponse {
                    count: kvs.len() as i64,
                    more: false,
                    kvs,
                })
            }
            RequestOp::Put(put) => {
                let previous = working.get(&put.key);
                let kv = KeyValue {
                    key: put.key.clone(),
                    create_revision: previous.map_or(revision, |kv| kv.create_revision),
                    mod_revision: revision,
                    version: previous.map_or(1, |kv| kv.version + 1),
                    value: put.value.clone(),
                    lease: put.lease,
                };
                let prev_kv = put.prev_kv.then(|| previous.cloned()).flatten();
                working.insert(put.key.clone(), kv.clone());
                execution.writes.push(Write {
                    kind: EventType::Put,
                    kv,
                });
                ResponseOp::Put(cairn_core::kv::PutResponse { prev_kv })
            }
            RequestOp::DeleteRange(delete) => {
                let keys = keys_in(working, &delete.key, &delete.range_end);
                let mut prev_kvs = Vec::new();
                for key in &keys {
                    let previous = working.remove(key).expect("listed live");
                    execution.writes.push(Write {
                        kind: EventType::Delete,
                        kv: KeyValue {
                            key: key.clone(),
                            ..KeyValue::default()
                        },
                    });
                    if delete.prev_kv {
                        prev_kvs.push(previous);
                    }
                }
                ResponseOp::DeleteRange(DeleteRangeResponse {
                    deleted: keys.len() as i64,
                    prev_kvs,
                })
            }
            RequestOp::Txn(nested) => {
                execution.nested = true;
                ResponseOp::Txn(run(before, working, nested, revision, execution))
            }
        });
    }
    TxnResponse {
        succeeded,
        responses,
    }
}

/// The live keys of `[key, range_end)` in etcd's conventions: an empty end
/// is the key alone, `"\0"` is every key from `key` on.
fn keys_in(state: &State, key: &[u8], range_end: &[u8]) -> Vec<Vec<u8>> {
    match range_end {
        [] => state
            .get_key_value(key)
            .map(|(key, _)| key.clone())
            .into_iter()
            .collect(),
        [0] => state
            .range(key.to_vec()..)
            .map(|(key, _)| key.clone())
            .collect(),
        end => state
            .range(key.to_vec()..end.to_vec())
            .map(|(key, _)| key.clone())
            .collect(),
    }
}

/// etcd's `applyCompare`: every live key in range must satisfy the compare;
/// with none, a VALUE compare fails and the others see zeroes.
fn compare_holds(state: &State, compare: &Compare) -> bool {
    let keys = keys_in(state, &compare.key, &compare.range_end);
    if keys.is_empty() {
        return !matches!(compare.target, CompareTarget::Value(_))
            && compare_one(None, &compare.target, compare.result);
    }
    keys.iter()
        .all(|key| compare_one(state.get(key), &compare.target, compare.result))
}

fn compare_one(kv: Option<&KeyValue>, target: &CompareTarget, result: CompareResult) -> bool {
    let ordering = match target {
        CompareTarget::Version(version) => kv.map_or(0, |kv| kv.version).cmp(version),
        CompareTarget::Create(revision) => kv.map_or(0, |kv| kv.create_revision).cmp(revision),
        CompareTarget::Mod(revision) => kv.map_or(0, |kv| kv.mod_revision).cmp(revision),
        CompareTarget::Value(value) => kv.map_or(&[][..], |kv| &kv.value[..]).cmp(&value[..]),
        CompareTarget::Lease(lease) => kv.map_or(0, |kv| kv.lease).cmp(lease),
    };
    match result {
        CompareResult::Equal => ordering == std::cmp::Ordering::Equal,
        CompareResult::NotEqual => ordering != std::cmp::Ordering::Equal,
        CompareResult::Greater => ordering == std::cmp::Ordering::Greater,
        CompareResult::Less => ordering == std::cmp::Ordering::Less,
    }
}

fn target_name(target: &CompareTarget) -> &'static str {
    match target {
        CompareTarget::Version(_) => "version",
        CompareTarget::Create(_) => "create",
        CompareTarget::Mod(_) => "mod",
        CompareTarget::Value(_) => "value",
        CompareTarget::Lease(_) => "lease",
    }
}

fn operator_name(result: CompareResult) -> &'static str {
    match result {
        CompareResult::Equal => "=",
        CompareResult::NotEqual => "!=",
        CompareResult::Greater => ">",
        CompareResult::Less => "<",
    }
}

/// Whether a txn's response shows it wrote: a put on the path taken, or a
/// delete that deleted something.
pub fn txn_response_wrote(response: &TxnResponse) -> bool {
    response.responses.iter().any(|op| match op {
        ResponseOp::Put(_) => true,
        ResponseOp::DeleteRange(delete) => delete.deleted > 0,
        ResponseOp::Range(_) => false,
        ResponseOp::Txn(nested) => txn_response_wrote(nested),
    })
}

/// Every key-value the ranges of a txn's response returned.
pub fn txn_response_kvs(response: &TxnResponse) -> Vec<&KeyValue> {
    let mut kvs = Vec::new();
    for op in &response.responses {
        match op {
            ResponseOp::Range(range) => kvs.extend(range.kvs.iter()),
            ResponseOp::Txn(nested) => kvs.extend(txn_response_kvs(nested)),
            ResponseOp::Put(_) | ResponseOp::DeleteRange(_) => {}
        }
    }
    kvs
}

#[cfg(test)]
mod tests {
    use cairn_core::kv::{Event, PutRequest, RangeRequest};
    use cairn_core::raft::NodeId;

    use super::*;
    use crate::history::ClientId;
    use crate::time::SimTime;

    fn kv(key: &str, value: &str, create: Revision, modified: Revision, version: i64) -> KeyValue {
        KeyValue {
            key: key.as_bytes().to_vec(),
            create_revision: create,
            mod_revision: modified,
            version,
            value: value.as_bytes().to_vec(),
            lease: 0,
        }
    }

    fn put_event(kv: KeyValue) -> Event {
        Event {
            kind: EventType::Put,
            kv,
            prev_kv: None,
        }
    }

    /// `if version(a) < 2 then put(b, "b1") else range(a)`.
    fn txn() -> TxnRequest {
        TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Less,
                target: CompareTarget::Version(2),
                key: b"a".to_vec(),
                range_end: Vec::new(),
            }],
            success: vec![RequestOp::Put(PutRequest {
                key: b"b".to_vec(),
                value: b"b1".to_vec(),
                ..PutRequest::default()
            })],
            failure: vec![RequestOp::Range(RangeRequest {
                key: b"a".to_vec(),
                ..RangeRequest::default()
            })],
        }
    }

    /// Log: a put at 2 and 3 (version 2 at revision 3), then b at 4.
    fn log() -> EventLog {
        let mut log = EventLog::new(1);
        log.record(
            NodeId(1),
            2,
            vec![put_event(kv("a", "a1", 2, 2, 1))],
            SimTime(0),
        )
        .expect("record");
        log.record(
            NodeId(1),
            3,
            vec![put_event(kv("a", "a2", 2, 3, 2))],
            SimTime(0),
        )
        .expect("record");
        log.record(
            NodeId(1),
            4,
            vec![put_event(kv("b", "b1", 4, 4, 1))],
            SimTime(0),
        )
        .expect("record");
        log
    }

    fn history(revision: Revision, response: TxnResponse) -> History {
        let mut history = History::new();
        let id = history.invoke(ClientId(1), Operation::Txn { request: txn() }, SimTime(0));
        history.complete(id, SimTime(1), OperationResult::Txn { revision, response });
        history
    }

    #[test]
    fn a_txn_that_wrote_is_checked_against_the_state_before_it() {
        // Committed at 4 after a's version reached 2: the compare failed
        // then, so the put at 4 is a compare evaluated as `<=`.
        let response = TxnResponse {
            succeeded: true,
            responses: vec![ResponseOp::Put(Default::default())],
        };
        let report = check_txns(&history(4, response), &log());
        assert_eq!(report.violations.len(), 1, "{report}");
        assert!(report.violations[0]
            .reason
            .contains("wrote at this revision"));
    }

    #[test]
    fn a_read_only_txn_is_checked_against_the_state_at_its_revision() {
        let response = TxnResponse {
            succeeded: false,
            responses: vec![ResponseOp::Range(RangeResponse {
                kvs: vec![kv("a", "a2", 2, 3, 2)],
                more: false,
                count: 1,
            })],
        };
        let report = check_txns(&history(3, response.clone()), &log());
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.txns_verified, 1);
        assert_eq!(report.compares[&("version", "<", false)], 1);
        // The same answer claimed at revision 2 (a at version 1) is wrong.
        let report = check_txns(&history(2, response), &log());
        assert_eq!(report.violations.len(), 1, "{report}");
    }

    #[test]
    fn a_revision_beyond_the_log_is_unverifiable() {
        let report = check_txns(&history(9, TxnResponse::default()), &log());
        assert!(report.is_ok());
        assert_eq!(report.txns_unverifiable, 1);
    }
}
