//! Transactions: request checks, compares, and executing puts, deletes,
//! ranges and nested txns as one write ([`Writer`]).
//!
//! The rules are etcd's, in etcd's order:
//! - Request checks (etcd's `v3rpc/key.go`): empty keys, `ignore_value`
//!   with a value, `ignore_lease` with a lease, and at most `txn_ops_max`
//!   ops: etcd counts `max(len(compare), len(success), len(failure))` at a
//!   level, and a nested txn may use only what its enclosing levels leave
//!   (`txn_ops_max - count` of the parent). Then the duplicate-key rule
//!   (`checkIntervals`): a key put twice on one branch, or put and deleted
//!   on one branch, is a duplicate; then/else branches of a nested txn
//!   exclude each other; two deletes may overlap. As in etcd, a from-key
//!   delete (range_end `"\0"`) conflicts with no put.
//! - Applying a txn (etcd's `applierV3backend.Txn`): every compare on the
//!   chosen path, nested txns included, is evaluated against the state
//!   before the txn; then the puts on the path are checked (key exists for
//!   ignore_*, lease exists), then range revisions; then the ops run in
//!   order, each seeing the earlier ops' writes.
//! - An op that still fails while running (possible only through the
//!   from-key-delete quirk above, where etcd panics) rolls the whole txn
//!   back and fails it with that error: no revision, no event.

use std::collections::BTreeSet;

use super::error::KvError;
use super::lease::Leases;
use super::mvcc::{Change, KeyRange, Mvcc};
use super::range;
use super::request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, Event,
    KeyValue, LeaseId, PutRequest, PutResponse, RangeRequest, RequestOp, ResponseOp, TxnRequest,
    TxnResponse,
};

/// etcd's `checkPutRequest`.
pub fn check_put(request: &PutRequest) -> Result<(), KvError> {
    if request.key.is_empty() {
        return Err(KvError::KeyNotProvided);
    }
    if request.ignore_value && !request.value.is_empty() {
        return Err(KvError::ValueProvided);
    }
    if request.ignore_lease && request.lease != 0 {
        return Err(KvError::LeaseProvided);
    }
    Ok(())
}

/// etcd's `checkDeleteRequest`.
pub fn check_delete(request: &DeleteRangeRequest) -> Result<(), KvError> {
    if request.key.is_empty() {
        return Err(KvError::KeyNotProvided);
    }
    Ok(())
}

/// etcd's `checkRangeRequest`.
pub fn check_range(request: &RangeRequest) -> Result<(), KvError> {
    if request.key.is_empty() {
        return Err(KvError::KeyNotProvided);
    }
    Ok(())
}

/// etcd's `checkTxnRequest` followed by `checkIntervals` on both branches.
pub fn check_txn(request: &TxnRequest, txn_ops_max: usize) -> Result<(), KvError> {
    check_txn_fields(request, txn_ops_max)?;
    check_intervals(&request.success)?;
    check_intervals(&request.failure)?;
    Ok(())
}

fn check_txn_fields(request: &TxnRequest, txn_ops_max: usize) -> Result<(), KvError> {
    let ops = request
        .compare
        .len()
        .max(request.success.len())
        .max(request.failure.len());
    if ops > txn_ops_max {
        return Err(KvError::TooManyOps);
    }
    if request.compare.iter().any(|compare| compare.key.is_empty()) {
        return Err(KvError::KeyNotProvided);
    }
    for op in request.success.iter().chain(&request.failure) {
        match op {
            RequestOp::Range(range) => check_range(range)?,
            RequestOp::Put(put) => check_put(put)?,
            RequestOp::DeleteRange(delete) => check_delete(delete)?,
            // A nested txn gets what this level leaves of the budget.
            RequestOp::Txn(txn) => check_txn_fields(txn, txn_ops_max - ops)?,
        }
    }
    Ok(())
}

/// Whether a delete of `range` conflicts with a put of `key`, as etcd's
/// interval tree decides: a from-key range (end `"\0"`) is the inverted
/// interval `[key, "\0")` there and intersects nothing.
fn delete_conflicts(range: &KeyRange, key: &[u8]) -> bool {
    match range {
        KeyRange::From(_) => false,
        single_or_bounded => single_or_bounded.contains(key),
    }
}

type Intervals = (BTreeSet<Vec<u8>>, Vec<KeyRange>);

/// etcd's `checkIntervals`: the puts and deletes of one branch, or
/// [`KvError::DuplicateKey`].
fn check_intervals(ops: &[RequestOp]) -> Result<Intervals, KvError> {
    let mut deletes: Vec<KeyRange> = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(delete) => Some(KeyRange::new(&delete.key, &delete.range_end)),
            _ => None,
        })
        .collect();
    let conflicts =
        |deletes: &[KeyRange], key: &[u8]| deletes.iter().any(|d| delete_conflicts(d, key));
    let mut puts: BTreeSet<Vec<u8>> = BTreeSet::new();
    for op in ops {
        let RequestOp::Txn(txn) = op else {
            continue;
        };
        let (puts_then, deletes_then) = check_intervals(&txn.success)?;
        let (puts_else, deletes_else) = check_intervals(&txn.failure)?;
        for key in &puts_then {
            if puts.contains(key) || conflicts(&deletes, key) {
                return Err(KvError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        for key in &puts_else {
            // A key put in both branches of the same txn is fine: only one runs.
            if puts.contains(key) && !puts_then.contains(key) {
                return Err(KvError::DuplicateKey);
            }
            if conflicts(&deletes, key) {
                return Err(KvError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        deletes.extend(deletes_then);
        deletes.extend(deletes_else);
    }
    for op in ops {
        let RequestOp::Put(put) = op else {
            continue;
        };
        if puts.contains(&put.key) || conflicts(&deletes, &put.key) {
            return Err(KvError::DuplicateKey);
        }
        puts.insert(put.key.clone());
    }
    Ok((puts, deletes))
}

/// The branch a txn takes, and those of its nested txns on that branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnPath {
    /// Whether the compares held (the success branch runs).
    pub succeeded: bool,
    /// One path per nested txn of the chosen branch, in op order.
    pub children: Vec<TxnPath>,
}

impl TxnPath {
    /// Evaluates every compare on the path against the current state
    /// (etcd's `compareToPath`: nested compares see the state before the txn).
    pub fn choose(mvcc: &Mvcc, request: &TxnRequest) -> TxnPath {
        let succeeded = request
            .compare
            .iter()
            .all(|compare| compare_holds(mvcc, compare));
        let children = branch(request, succeeded)
            .iter()
            .filter_map(|op| match op {
                RequestOp::Txn(txn) => Some(TxnPath::choose(mvcc, txn)),
                _ => None,
            })
            .collect();
        TxnPath {
            succeeded,
            children,
        }
    }
}

fn branch(request: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &request.success
    } else {
        &request.failure
    }
}

/// etcd's `applyCompare`: every live key in the compare's range must
/// satisfy it; with none, a VALUE compare fails and the others compare
/// against zeroes.
pub fn compare_holds(mvcc: &Mvcc, compare: &Compare) -> bool {
    let key_range = KeyRange::new(&compare.key, &compare.range_end);
    let mut any = false;
    let mut all = true;
    mvcc.visit_range(&key_range, mvcc.read_revision(), |_, change| {
        any = true;
        all = compare_change(compare, Some(change));
        all
    });
    if !any {
        return !matches!(compare.target, CompareTarget::Value(_)) && compare_change(compare, None);
    }
    all
}

fn compare_change(compare: &Compare, change: Option<&Change>) -> bool {
    let ordering = match &compare.target {
        CompareTarget::Version(version) => change.map_or(0, |c| c.version).cmp(version),
        CompareTarget::Create(revision) => change.map_or(0, |c| c.create_revision).cmp(revision),
        CompareTarget::Mod(revision) => change.map_or(0, |c| c.revision).cmp(revision),
        CompareTarget::Value(value) => change.map_or(&[][..], |c| &c.value[..]).cmp(&value[..]),
        CompareTarget::Lease(lease) => change.map_or(0, |c| c.lease).cmp(lease),
    };
    match compare.result {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::NotEqual => ordering.is_ne(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
    }
}

/// [`super::store::PlantedKvBug::CompareLessInclusive`]: `request` with
/// every `LESS` compare on VERSION, CREATE or MOD against `n` turned into
/// one against `n + 1`, which holds for `n` itself (simulator build only).
#[cfg(madsim)]
pub fn less_inclusive(request: &TxnRequest) -> TxnRequest {
    let mut planted = request.clone();
    for compare in &mut planted.compare {
        if compare.result == CompareResult::Less {
            match &mut compare.target {
                CompareTarget::Version(number)
                | CompareTarget::Create(number)
                | CompareTarget::Mod(number) => *number = number.saturating_add(1),
                CompareTarget::Value(_) | CompareTarget::Lease(_) => {}
            }
        }
    }
    for op in planted.success.iter_mut().chain(&mut planted.failure) {
        if let RequestOp::Txn(nested) = op {
            *nested = less_inclusive(nested);
        }
    }
    planted
}

/// Checks the puts on the path, then the range revisions (etcd's
/// `checkRequests` with `checkRequestPut`, then `checkRequestRange`).
pub fn precheck(
    mvcc: &Mvcc,
    leases: &Leases,
    request: &TxnRequest,
    path: &TxnPath,
) -> Result<(), KvError> {
    precheck_puts(mvcc, leases, request, path)?;
    precheck_ranges(mvcc, request, path)
}

fn precheck_puts(
    mvcc: &Mvcc,
    leases: &Leases,
    request: &TxnRequest,
    path: &TxnPath,
) -> Result<(), KvError> {
    let mut children = path.children.iter();
    for op in branch(request, path.succeeded) {
        match op {
            RequestOp::Put(put) => {
                let exists = mvcc.get(&put.key, mvcc.read_revision()).is_some();
                if (put.ignore_value || put.ignore_lease) && !exists {
                    return Err(KvError::KeyNotFound);
                }
                if put.lease != 0 && leases.get(put.lease).is_none() {
                    return Err(KvError::LeaseNotFound);
                }
            }
            RequestOp::Txn(txn) => {
                let child = children.next().expect("a path per nested txn");
                precheck_puts(mvcc, leases, txn, child)?;
            }
            RequestOp::Range(_) | RequestOp::DeleteRange(_) => {}
        }
    }
    Ok(())
}

fn precheck_ranges(mvcc: &Mvcc, request: &TxnRequest, path: &TxnPath) -> Result<(), KvError> {
    let mut children = path.children.iter();
    for op in branch(request, path.succeeded) {
        match op {
            RequestOp::Range(range) => {
                if range.revision > mvcc.revision() {
                    return Err(KvError::FutureRevision {
                        current_revision: mvcc.revision(),
                    });
                }
                if range.revision != 0 && range.revision < mvcc.compact_revision() {
                    let compact_revision = mvcc.compact_revision();
                    return Err(KvError::Compacted { compact_revision });
                }
            }
            RequestOp::Txn(txn) => {
                let child = children.next().expect("a path per nested txn");
                precheck_ranges(mvcc, txn, child)?;
            }
            RequestOp::Put(_) | RequestOp::DeleteRange(_) => {}
        }
    }
    Ok(())
}

/// A lease attachment change, recorded so a failed write can be undone.
#[derive(Debug)]
enum LeaseUndo {
    Attached(LeaseId, Vec<u8>),
    Detached(LeaseId, Vec<u8>),
}

/// One open write over the index and the leases: puts and deletes keep
/// lease attachments in step, and the whole write commits or rolls back.
#[derive(Debug)]
pub struct Writer<'a> {
    mvcc: &'a mut Mvcc,
    leases: &'a mut Leases,
    lease_undo: Vec<LeaseUndo>,
}

impl<'a> Writer<'a> {
    /// Opens a write.
    pub fn begin(mvcc: &'a mut Mvcc, leases: &'a mut Leases) -> Writer<'a> {
        mvcc.begin_write();
        Writer {
            mvcc,
            leases,
            lease_undo: Vec::new(),
        }
    }

    /// The index, with this write's changes visible.
    pub fn mvcc(&self) -> &Mvcc {
        self.mvcc
    }

    /// The leases.
    pub fn leases(&self) -> &Leases {
        self.leases
    }

    /// Commits; returns the events of the new revision (none if nothing changed).
    pub fn commit(self) -> Vec<Event> {
        self.mvcc.end_write()
    }

    /// Rolls every change of this write back.
    pub fn abort(self) {
        for undo in self.lease_undo.into_iter().rev() {
            match undo {
                LeaseUndo::Attached(id, key) => self.leases.detach(id, &key),
                LeaseUndo::Detached(id, key) => self.leases.attach(id, &key),
            }
        }
        self.mvcc.abort_write();
    }

    fn detach(&mut self, id: LeaseId, key: &[u8]) {
        if id != 0
            && self
                .leases
                .get(id)
                .is_some_and(|lease| lease.keys.contains(key))
        {
            self.leases.detach(id, key);
            self.lease_undo.push(LeaseUndo::Detached(id, key.to_vec()));
        }
    }

    /// Puts `key`; the lease must exist. Returns the replaced key-value.
    pub fn put(&mut self, key: &[u8], value: Vec<u8>, lease: LeaseId) -> Option<KeyValue> {
        let previous = self.mvcc.put(key, value, lease);
        if let Some(previous) = &previous {
            self.detach(previous.lease, key);
        }
        if lease != 0 {
            self.leases.attach(lease, key);
            self.lease_undo
                .push(LeaseUndo::Attached(lease, key.to_vec()));
        }
        previous
    }

    /// Deletes `key` if live; returns what was deleted.
    pub fn delete(&mut self, key: &[u8]) -> Option<KeyValue> {
        let previous = self.mvcc.delete(key)?;
        self.detach(previous.lease, key);
        Some(previous)
    }
}

/// etcd's `applyPut` inside a write: ignore_* take the current value or
/// lease (the key must exist), then the lease must exist.
pub fn apply_put(writer: &mut Writer, request: &PutRequest) -> Result<PutResponse, KvError> {
    let revision = writer.mvcc().read_revision();
    let previous = writer.mvcc().get(&request.key, revision);
    if (request.ignore_value || request.ignore_lease) && previous.is_none() {
        return Err(KvError::KeyNotFound);
    }
    let value = match (&previous, request.ignore_value) {
        (Some(previous), true) => previous.value.clone(),
        _ => request.value.clone(),
    };
    let lease = match (&previous, request.ignore_lease) {
        (Some(previous), true) => previous.lease,
        _ => request.lease,
    };
    if lease != 0 && writer.leases().get(lease).is_none() {
        return Err(KvError::LeaseNotFound);
    }
    writer.put(&request.key, value, lease);
    let prev_kv = if request.prev_kv { previous } else { None };
    Ok(PutResponse { prev_kv })
}

/// etcd's `applyDeleteRange`.
pub fn apply_delete(writer: &mut Writer, request: &DeleteRangeRequest) -> DeleteRangeResponse {
    let key_range = KeyRange::new(&request.key, &request.range_end);
    let keys = writer.mvcc().live_keys(&key_range);
    let mut prev_kvs = Vec::new();
    for key in &keys {
        let previous = writer.delete(key);
        if request.prev_kv {
            prev_kvs.extend(previous);
        }
    }
    DeleteRangeResponse {
        deleted: keys.len() as i64,
        prev_kvs,
    }
}

/// Runs the ops of `path`'s branch in order.
pub fn apply_txn(
    writer: &mut Writer,
    request: &TxnRequest,
    path: &TxnPath,
) -> Result<TxnResponse, KvError> {
    let mut children = path.children.iter();
    let mut responses = Vec::new();
    for op in branch(request, path.succeeded) {
        let response = match op {
            RequestOp::Range(range) => ResponseOp::Range(range::range(writer.mvcc(), range)?),
            RequestOp::Put(put) => ResponseOp::Put(apply_put(writer, put)?),
            RequestOp::DeleteRange(delete) => ResponseOp::DeleteRange(apply_delete(writer, delete)),
            RequestOp::Txn(txn) => {
                let child = children.next().expect("a path per nested txn");
                ResponseOp::Txn(apply_txn(writer, txn, child)?)
            }
        };
        responses.push(response);
    }
    Ok(TxnResponse {
        succeeded: path.succeeded,
        responses,
    })
}
