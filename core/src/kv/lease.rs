//! [`Leases`]: leases as replicated state, plus the leader's volatile
//! expiry deadlines.
//!
//! The replicated part — each lease's ID, granted TTL, checkpointed
//! remaining TTL and attached keys — changes only by applying commands, so
//! every member holds the same. Time enters only on the leader: after
//! [`Leases::promote`] each lease has a deadline in the driver's monotonic
//! milliseconds, renewed by keep-alives; an expired lease is revoked by the
//! leader proposing a revoke command, never by a member's own clock. The
//! deadlines are not part of snapshots or hashes (etcd's lessor "primary").
//!
//! Remaining TTLs survive a leader change through checkpoints (etcd's lease
//! checkpointing, on by default): the leader periodically proposes each
//! lease's remaining TTL, and a new leader starts deadlines from it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::command::LeaseCheckpoint;
use super::error::KvError;
use super::request::{LeaseId, LeaseTimeToLiveResponse};

/// Milliseconds per second, for TTL arithmetic.
const MILLISECONDS_PER_SECOND: i64 = 1000;

/// One lease's replicated state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The lease ID (never 0).
    pub id: LeaseId,
    /// The granted TTL in seconds (after raising to the minimum).
    pub ttl_seconds: i64,
    /// The last checkpointed remaining TTL in milliseconds; 0 = none, use the full TTL.
    pub remaining_ttl_ms: i64,
    /// Keys attached to the lease (deleted when it is revoked).
    pub keys: BTreeSet<Vec<u8>>,
}

impl Lease {
    /// The time a new leader gives the lease: the checkpointed remainder, or
    /// the full TTL without one.
    fn restart_ms(&self) -> i64 {
        if self.remaining_ttl_ms > 0 {
            self.remaining_ttl_ms
        } else {
            self.ttl_seconds.saturating_mul(MILLISECONDS_PER_SECOND)
        }
    }
}

/// The leader's deadlines, indexed both ways.
#[derive(Clone, Debug, Default)]
struct Deadlines {
    by_lease: BTreeMap<LeaseId, u64>,
    // Invariant: (deadline, id) is here iff by_lease[id] == deadline.
    by_time: BTreeSet<(u64, LeaseId)>,
    // Leases renewed while a checkpointed remaining TTL is replicated: that
    // remainder is stale and must be cleared by a checkpoint of 0, or a new
    // leader would expire the lease early (etcd proposes this on renew).
    renewed_with_checkpoint: BTreeSet<LeaseId>,
}

impl Deadlines {
    fn set(&mut self, id: LeaseId, deadline_ms: u64) {
        if let Some(old) = self.by_lease.insert(id, deadline_ms) {
            self.by_time.remove(&(old, id));
        }
        self.by_time.insert((deadline_ms, id));
    }

    fn remove(&mut self, id: LeaseId) {
        if let Some(old) = self.by_lease.remove(&id) {
            self.by_time.remove(&(old, id));
        }
        self.renewed_with_checkpoint.remove(&id);
    }
}

fn deadline_after(now_ms: u64, duration_ms: i64) -> u64 {
    now_ms.saturating_add(u64::try_from(duration_ms).unwrap_or(0))
}

/// Every lease of the store.
#[derive(Clone, Debug, Default)]
pub struct Leases {
    leases: BTreeMap<LeaseId, Lease>,
    // Some(..) only while this member is the leader (promoted).
    deadlines: Option<Deadlines>,
}

impl Leases {
    /// Rebuilds leases from their replicated state (not promoted).
    pub fn from_leases(leases: BTreeMap<LeaseId, Lease>) -> Leases {
        Leases {
            leases,
            deadlines: None,
        }
    }

    /// The replicated state.
    pub fn leases(&self) -> &BTreeMap<LeaseId, Lease> {
        &self.leases
    }

    /// The lease `id`, if granted.
    pub fn get(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// Grants lease `id` (etcd's `lessor.Grant`, in its order of checks);
    /// returns the TTL granted.
    pub fn grant(
        &mut self,
        id: LeaseId,
        ttl_seconds: i64,
        ttl_min_seconds: i64,
        ttl_max_seconds: i64,
        now_ms: u64,
    ) -> Result<i64, KvError> {
        if id == 0 {
            return Err(KvError::LeaseNotFound);
        }
        if ttl_seconds > ttl_max_seconds {
            return Err(KvError::LeaseTtlTooLarge);
        }
        if self.leases.contains_key(&id) {
            return Err(KvError::LeaseExists);
        }
        let ttl_seconds = ttl_seconds.max(ttl_min_seconds);
        let lease = Lease {
            id,
            ttl_seconds,
            remaining_ttl_ms: 0,
            keys: BTreeSet::new(),
        };
        if let Some(deadlines) = &mut self.deadlines {
            deadlines.set(id, deadline_after(now_ms, lease.restart_ms()));
        }
        self.leases.insert(id, lease);
        Ok(ttl_seconds)
    }

    /// Removes lease `id`; returns its attached keys, in key order.
    pub fn revoke(&mut self, id: LeaseId) -> Result<Vec<Vec<u8>>, KvError> {
        let lease = self.leases.remove(&id).ok_or(KvError::LeaseNotFound)?;
        if let Some(deadlines) = &mut self.deadlines {
            deadlines.remove(id);
        }
        Ok(lease.keys.into_iter().collect())
    }

    /// Attaches `key` to lease `id`, which must exist (callers check first).
    pub fn attach(&mut self, id: LeaseId, key: &[u8]) {
        let lease = self.leases.get_mut(&id);
        let lease = lease.unwrap_or_else(|| panic!("attach of {key:?} to missing lease {id}"));
        lease.keys.insert(key.to_vec());
    }

    /// Detaches `key` from lease `id` if both exist.
    pub fn detach(&mut self, id: LeaseId, key: &[u8]) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.remove(key);
        }
    }

    /// Records a checkpointed remaining TTL (ignored for a missing lease).
    pub fn checkpoint(&mut self, id: LeaseId, remaining_ttl_ms: i64) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.remaining_ttl_ms = remaining_ttl_ms.max(0);
        }
    }

    /// Whether this member tracks deadlines (is the leader).
    pub fn is_promoted(&self) -> bool {
        self.deadlines.is_some()
    }

    /// Starts tracking deadlines: each lease gets `now + extension + remaining`.
    pub fn promote(&mut self, now_ms: u64, extension_ms: u64) {
        let mut deadlines = Deadlines::default();
        for lease in self.leases.values() {
            let start = now_ms.saturating_add(extension_ms);
            deadlines.set(lease.id, deadline_after(start, lease.restart_ms()));
        }
        self.deadlines = Some(deadlines);
    }

    /// Stops tracking deadlines.
    pub fn demote(&mut self) {
        self.deadlines = None;
    }

    /// Keep-alive: the deadline becomes now + TTL; returns the TTL in seconds.
    pub fn renew(&mut self, id: LeaseId, now_ms: u64) -> Result<i64, KvError> {
        let Some(deadlines) = &mut self.deadlines else {
            return Err(KvError::NotLeader);
        };
        let lease = self.leases.get(&id).ok_or(KvError::LeaseNotFound)?;
        let deadline = deadlines.by_lease.get(&id).copied().unwrap_or(u64::MAX);
        if deadline <= now_ms {
            // Expired and awaiting its revoke (etcd waits for the revoke and
            // then answers "not found").
            return Err(KvError::LeaseNotFound);
        }
        let full_ms = lease.ttl_seconds.saturating_mul(MILLISECONDS_PER_SECOND);
        deadlines.set(id, deadline_after(now_ms, full_ms));
        if lease.remaining_ttl_ms > 0 {
            deadlines.renewed_with_checkpoint.insert(id);
        }
        Ok(lease.ttl_seconds)
    }

    /// Checkpoints of 0 (= "use the full TTL") for leases renewed since
    /// their last non-zero checkpoint; drained by the call.
    pub fn take_renewal_checkpoints(&mut self) -> Vec<LeaseCheckpoint> {
        let Some(deadlines) = &mut self.deadlines else {
            return Vec::new();
        };
        let renewed = std::mem::take(&mut deadlines.renewed_with_checkpoint);
        renewed
            .into_iter()
            .filter(|id| {
                self.leases
                    .get(id)
                    .is_some_and(|lease| lease.remaining_ttl_ms > 0)
            })
            .map(|id| LeaseCheckpoint {
                id,
                remaining_ttl_ms: 0,
            })
            .collect()
    }

    /// Leases whose deadline is at or before `now_ms`, earliest first.
    pub fn expired(&self, now_ms: u64) -> Vec<LeaseId> {
        let Some(deadlines) = &self.deadlines else {
            return Vec::new();
        };
        deadlines
            .by_time
            .range(..=(now_ms, LeaseId::MAX))
            .map(|(_, id)| *id)
            .collect()
    }

    /// The remaining TTL of every tracked lease, for a checkpoint command.
    pub fn checkpoints(&self, now_ms: u64) -> Vec<LeaseCheckpoint> {
        let Some(deadlines) = &self.deadlines else {
            return Vec::new();
        };
        deadlines
            .by_lease
            .iter()
            .map(|(id, deadline)| LeaseCheckpoint {
                id: *id,
                remaining_ttl_ms: i64::try_from(deadline.saturating_sub(now_ms))
                    .unwrap_or(i64::MAX),
            })
            .collect()
    }

    /// Lease.TimeToLive: remaining seconds truncated toward zero as etcd's
    /// `int64(Remaining().Seconds())`; TTL -1 for a missing lease.
    pub fn time_to_live(&self, id: LeaseId, keys: bool, now_ms: u64) -> LeaseTimeToLiveResponse {
        let Some(lease) = self.leases.get(&id) else {
            return LeaseTimeToLiveResponse {
                id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            };
        };
        let deadline = self
            .deadlines
            .as_ref()
            .and_then(|d| d.by_lease.get(&id))
            .copied();
        let remaining_ms = match deadline {
            Some(deadline) => {
                let difference = i128::from(deadline) - i128::from(now_ms);
                difference.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
            }
            None => lease.restart_ms(),
        };
        LeaseTimeToLiveResponse {
            id,
            ttl: remaining_ms / MILLISECONDS_PER_SECOND,
            granted_ttl: lease.ttl_seconds,
            keys: if keys {
                lease.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Every lease ID, ascending.
    pub fn ids(&self) -> Vec<LeaseId> {
        self.leases.keys().copied().collect()
    }

    /// O(n) consistency checks of the deadline index.
    pub fn check_invariants(&self) {
        for (id, lease) in &self.leases {
            assert_eq!(*id, lease.id, "lease stored under the wrong ID");
            assert_ne!(*id, 0, "lease 0 granted");
        }
        if let Some(deadlines) = &self.deadlines {
            assert_eq!(
                deadlines.by_lease.len(),
                deadlines.by_time.len(),
                "deadline index sizes"
            );
            for (id, deadline) in &deadlines.by_lease {
                assert!(
                    self.leases.contains_key(id),
                    "deadline for missing lease {id}"
                );
                assert!(
                    deadlines.by_time.contains(&(*deadline, *id)),
                    "unindexed deadline {id}"
                );
            }
            assert_eq!(
                deadlines.by_lease.len(),
                self.leases.len(),
                "leases without deadline"
            );
        }
    }
}
