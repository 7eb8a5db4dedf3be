//! Range: serving a [`RangeRequest`] from the [`Mvcc`] index with etcd's
//! exact filter, sort, limit and count rules (etcd's `applierV3backend.Range`).
//!
//! - `count` is the number of live keys in the range at the revision,
//!   before the min/max filters and before `limit`.
//! - Filters (min/max mod and create revision, 0 = off) apply first, then
//!   sorting, then `limit`; `more` says the limit cut the filtered result.
//! - Sort order NONE with a target other than KEY sorts ascending; ASCEND
//!   by KEY is the natural order. Ties are broken by key (etcd's sort is
//!   not stable, so any order of ties is etcd-compatible; ours is
//!   deterministic): ASCEND orders by (target, key), DESCEND by the reverse.
//! - `count_only` returns no key-values; `keys_only` empties the values.

use std::cmp::Ordering;

use super::error::KvError;
use super::mvcc::{KeyRange, Mvcc};
use super::request::{KeyValue, RangeRequest, RangeResponse, SortOrder, SortTarget};

/// Serves `request` at the revision it names (0 = the read revision).
pub fn range(mvcc: &Mvcc, request: &RangeRequest) -> Result<RangeResponse, KvError> {
    if request.key.is_empty() {
        return Err(KvError::KeyNotProvided);
    }
    let revision = mvcc.check_read(request.revision)?;
    let key_range = KeyRange::new(&request.key, &request.range_end);

    if request.count_only {
        let mut count = 0i64;
        mvcc.visit_range(&key_range, revision, |_, _| {
            count += 1;
            true
        });
        return Ok(RangeResponse {
            kvs: Vec::new(),
            more: false,
            count,
        });
    }

    let filtered = request.min_mod_revision != 0
        || request.max_mod_revision != 0
        || request.min_create_revision != 0
        || request.max_create_revision != 0;
    let order = effective_order(request.sort_order, request.sort_target);
    let limit = usize::try_from(request.limit)
        .ok()
        .filter(|limit| *limit > 0);
    // Without filters or sorting the first `limit` keys in key order are the
    // answer; otherwise everything is gathered, filtered and sorted first.
    let gather_max = match (filtered, order, limit) {
        (false, SortOrder::None, Some(limit)) => limit,
        _ => usize::MAX,
    };

    let mut count = 0i64;
    let mut kvs: Vec<KeyValue> = Vec::new();
    mvcc.visit_range(&key_range, revision, |key, change| {
        count += 1;
        if kvs.len() < gather_max {
            kvs.push(change.key_value(key));
        }
        true
    });

    if filtered {
        kvs.retain(|kv| passes_filters(request, kv));
    }
    match order {
        SortOrder::None => {}
        SortOrder::Ascend => kvs.sort_by(|a, b| compare_by(request.sort_target, a, b)),
        SortOrder::Descend => kvs.sort_by(|a, b| compare_by(request.sort_target, b, a)),
    }
    let mut more = false;
    if let Some(limit) = limit {
        if gather_max == limit {
            more = count > limit as i64;
        } else if kvs.len() > limit {
            kvs.truncate(limit);
            more = true;
        }
    }
    if request.keys_only {
        for kv in &mut kvs {
            kv.value = Vec::new();
        }
    }
    Ok(RangeResponse { kvs, more, count })
}

/// etcd's normalisation: NONE with a non-KEY target means ASCEND; ASCEND by
/// KEY is the index order, so no sort.
fn effective_order(order: SortOrder, target: SortTarget) -> SortOrder {
    match (order, target) {
        (SortOrder::None, SortTarget::Key) | (SortOrder::Ascend, SortTarget::Key) => {
            SortOrder::None
        }
        (SortOrder::None, _) => SortOrder::Ascend,
        (order, _) => order,
    }
}

fn passes_filters(request: &RangeRequest, kv: &KeyValue) -> bool {
    let too_new = request.max_mod_revision != 0 && kv.mod_revision > request.max_mod_revision;
    let too_old = request.min_mod_revision != 0 && kv.mod_revision < request.min_mod_revision;
    let created_late =
        request.max_create_revision != 0 && kv.create_revision > request.max_create_revision;
    let created_early =
        request.min_create_revision != 0 && kv.create_revision < request.min_create_revision;
    !(too_new || too_old || created_late || created_early)
}

/// Orders by the sort target, then by key.
pub fn compare_by(target: SortTarget, a: &KeyValue, b: &KeyValue) -> Ordering {
    let primary = match target {
        SortTarget::Key => Ordering::Equal,
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    primary.then_with(|| a.key.cmp(&b.key))
}
