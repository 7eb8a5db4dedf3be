//! The lease safety checker: a key attached to a lease disappears only when
//! the lease is revoked by a client or expired by the leader, and an expiry
//! never comes before the time to live the cluster promised.
//!
//! Inputs: the client history (grants, keepalives, revokes, leased puts),
//! the committed [`EventLog`], and the lease revocations the runner saw
//! applied ([`LeaseRevocation`]; client revokes and leader expiries are the
//! same log command, so the checker tells them apart by whether a client
//! asked). It checks:
//! - every committed delete is explained: by an acknowledged or
//!   indeterminate client delete of that key invoked before it was applied,
//!   or by a revocation at that revision of a lease the key was attached to;
//! - a revocation deletes exactly the keys attached to its lease, and no
//!   later committed put attaches a key to a revoked lease;
//! - an expiry (a revocation no client asked for before it was applied)
//!   happens no earlier than `invoke + ttl` of the last successful grant or
//!   keepalive, with `ttl` shortened by the fastest allowed leader clock
//!   (clock-drift faults speed a node's ticks up). Leases are checkpointed
//!   (the scenario's `lease_checkpoint_interval`), so a new leader resumes
//!   each lease from its checkpointed remaining TTL: a checkpoint that
//!   carried too little shows up here as an early expiry;
//! - a TimeToLive answer never gives a lease more than its granted TTL plus
//!   one leader extension per leader takeover in the run (as in etcd, each
//!   takeover adds the extension to the remaining TTL, and a checkpoint
//!   carries it on): a checkpointed lease must not come back after a
//!   leader change with more time than that. NB: counting the takeovers
//!   between a lease's last refresh and the answer, rather than in the
//!   whole run, would make the bound tight; it needs leader terms on the
//!   simulated time axis.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use cairn_core::kv::{EventType, KvConfig, LeaseId, RequestOp, Revision};

use crate::event_log::EventLog;
use crate::history::{visit_txn_ops, History, Operation, OperationResult, Outcome};
use crate::time::SimTime;

/// Default fastest leader clock, in percent of real time (no drift).
pub const TICK_RATE_PERCENT_MAX_DEFAULT: u64 = 100;

/// A lease revocation as applied by the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseRevocation {
    /// The lease.
    pub lease: LeaseId,
    /// The revision of its key deletions; `None` when no key was attached.
    pub revision: Option<Revision>,
    /// When a member first applied it.
    pub applied_at: SimTime,
}

/// Checker bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseCheckConfig {
    /// The fastest any member's clock may run, in percent of real time
    /// (100 without clock drift, 130 with +30% drift).
    pub tick_rate_percent_max: u64,
    /// The most times a member took over as leader in the run: each
    /// takeover may add the leader extension to every lease (etcd's
    /// `Promote`), checkpointed remaining TTL included.
    pub leader_promotions_max: usize,
}

impl Default for LeaseCheckConfig {
    fn default() -> Self {
        LeaseCheckConfig {
            tick_rate_percent_max: TICK_RATE_PERCENT_MAX_DEFAULT,
            leader_promotions_max: 1,
        }
    }
}

/// A broken lease guarantee.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaseViolation {
    /// A key vanished with no client delete and no revocation of its lease.
    #[error("key {key:?} deleted at revision {revision} without a delete or a revocation of its lease {lease}")]
    UnexplainedDelete {
        /// The key.
        key: String,
        /// The revision.
        revision: Revision,
        /// The lease it was attached to (0 for none).
        lease: LeaseId,
    },
    /// A revocation deleted the wrong set of keys.
    #[error(
        "revocation of lease {lease} at revision {revision} deleted {deleted:?}, but the attached keys were {attached:?}"
    )]
    WrongKeysDeleted {
        /// The lease.
        lease: LeaseId,
        /// The revision.
        revision: Revision,
        /// The keys deleted.
        deleted: Vec<String>,
        /// The keys attached just before.
        attached: Vec<String>,
    },
    /// A key was attached to a lease after the lease was revoked.
    #[error("key {key:?} attached to lease {lease} at revision {revision}, after its revocation at {revoked_at}")]
    AttachedAfterRevocation {
        /// The key.
        key: String,
        /// The lease.
        lease: LeaseId,
        /// The attaching put's revision.
        revision: Revision,
        /// The revocation's revision.
        revoked_at: Revision,
    },
    /// A TimeToLive answer gave a lease more time than it was granted.
    #[error(
        "lease {lease}: TimeToLive at {answered_at} said {ttl_seconds}s remain, more than the \
         granted {granted_ttl_seconds}s plus {extension_seconds}s of leader extensions"
    )]
    TimeToLiveBeyondGrant {
        /// The lease.
        lease: LeaseId,
        /// When the answer arrived.
        answered_at: SimTime,
        /// The remaining TTL answered.
        ttl_seconds: i64,
        /// The granted TTL answered.
        granted_ttl_seconds: i64,
        /// The most the leader extensions could have added.
        extension_seconds: i64,
    },
    /// A lease expired before its time to live elapsed.
    #[error(
        "lease {lease} expired at {applied_at}, but a refresh at {refreshed_at} promised {ttl_seconds}s (earliest allowed {earliest})"
    )]
    EarlyExpiry {
        /// The lease.
        lease: LeaseId,
        /// When its revocation was first applied.
        applied_at: SimTime,
        /// When the refreshing grant or keepalive was invoked.
        refreshed_at: SimTime,
        /// The promised time to live.
        ttl_seconds: i64,
        /// The earliest legal expiry.
        earliest: SimTime,
    },
}

/// The result of [`check_leases`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseReport {
    /// Committed deletes examined.
    pub deletes_checked: usize,
    /// Revocations examined.
    pub revocations_checked: usize,
    /// Of those, expiries (no client revoke could explain them).
    pub expiries: usize,
    /// Deletes beyond the replayable log: not verified.
    pub deletes_unverifiable: usize,
    /// TimeToLive answers checked against the granted TTL.
    pub time_to_live_checked: usize,
    /// Every violation.
    pub violations: Vec<LeaseViolation>,
}

impl LeaseReport {
    /// No violation.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for LeaseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "leases: {} deletes checked ({} unverifiable), {} revocations ({} expiries), \
             {} time-to-live answers, {} violations",
            self.deletes_checked,
            self.deletes_unverifiable,
            self.revocations_checked,
            self.expiries,
            self.time_to_live_checked,
            self.violations.len()
        )?;
        for violation in &self.violations {
            writeln!(f, "  {violation}")?;
        }
        Ok(())
    }
}

/// Checks lease safety.
pub fn check_leases(
    history: &History,
    log: &EventLog,
    revocations: &[LeaseRevocation],
    config: &LeaseCheckConfig,
) -> LeaseReport {
    let mut report = LeaseReport::default();
    check_deletes(history, log, revocations, &mut report);
    check_expiries(history, revocations, config, &mut report);
    check_time_to_live(history, config, &mut report);
    report
}

/// Whole seconds leaders taking over `promotions` times may add to a
/// lease's remaining TTL (the store's leader extension each time).
fn leader_extension_seconds(promotions: usize) -> i64 {
    let extension_ms = KvConfig::default().lease_leader_extension_ms;
    let promotions = u64::try_from(promotions).unwrap_or(u64::MAX);
    i64::try_from(extension_ms.saturating_mul(promotions).div_ceil(1000)).unwrap_or(i64::MAX)
}

fn check_time_to_live(history: &History, config: &LeaseCheckConfig, report: &mut LeaseReport) {
    let extension = leader_extension_seconds(config.leader_promotions_max);
    for record in history.records() {
        let (
            Operation::LeaseTimeToLive { lease },
            Outcome::Completed {
                at,
                result:
                    OperationResult::LeaseTimeToLive {
                        ttl_seconds,
                        granted_ttl_seconds,
                        ..
                    },
            },
        ) = (&record.operation, &record.outcome)
        else {
            continue;
        };
        if *ttl_seconds < 0 {
            continue;
        }
        report.time_to_live_checked += 1;
        if *ttl_seconds > granted_ttl_seconds.saturating_add(extension) {
            report
                .violations
                .push(LeaseViolation::TimeToLiveBeyondGrant {
                    lease: *lease,
                    answered_at: *at,
                    ttl_seconds: *ttl_seconds,
                    granted_ttl_seconds: *granted_ttl_seconds,
                    extension_seconds: extension,
                });
        }
    }
}

fn lossy(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn check_deletes(
    history: &History,
    log: &EventLog,
    revocations: &[LeaseRevocation],
    report: &mut LeaseReport,
) {
    let revoking: BTreeMap<Revision, LeaseId> = revocations
        .iter()
        .filter_map(|revocation| Some((revocation.revision?, revocation.lease)))
        .collect();
    // Client deletes that may have taken effect, by key: (invoked, acknowledged revision).
    let mut client_deletes: BTreeMap<&[u8], Vec<(SimTime, Option<Revision>)>> = BTreeMap::new();
    for record in history.records() {
        if let Operation::Txn { request } = &record.operation {
            // A txn may delete any key it names in a delete; the txn checker
            // verifies exactly which it did.
            if matches!(record.outcome, Outcome::Failed { .. }) {
                continue;
            }
            visit_txn_ops(request, &mut |op| {
                if let RequestOp::DeleteRange(delete) = op {
                    client_deletes
                        .entry(&delete.key)
                        .or_default()
                        .push((record.invoked_at, None));
                }
            });
            continue;
        }
        let Operation::Delete { key } = &record.operation else {
            continue;
        };
        let acknowledged = match &record.outcome {
            Outcome::Failed { .. } => continue,
            Outcome::Completed {
                result: OperationResult::Delete { deleted: 0, .. },
                ..
            } => continue,
            Outcome::Completed { result, .. } => Some(result.revision()),
            Outcome::Pending | Outcome::Indeterminate { .. } => None,
        };
        client_deletes
            .entry(key)
            .or_default()
            .push((record.invoked_at, acknowledged));
    }
    let mut revoked: BTreeMap<LeaseId, Revision> = BTreeMap::new();
    let mut replay = log.replay();
    loop {
        let revision = replay.revision() + 1;
        let revoked_lease = revoking.get(&revision).copied();
        // The keys attached to the lease revoked at this revision, before it.
        let attached: BTreeSet<Vec<u8>> = revoked_lease.map_or_else(BTreeSet::new, |lease| {
            replay
                .state()
                .iter()
                .filter(|(_, kv)| kv.lease == lease)
                .map(|(key, _)| key.clone())
                .collect()
        });
        let Some(applied) = replay.step() else { break };
        let applied_at = log
            .get(revision)
            .expect("replayed revisions are recorded")
            .applied_at;
        let mut deleted_keys: BTreeSet<Vec<u8>> = BTreeSet::new();
        for event in &applied {
            let key = &event.event.kv.key;
            match event.event.kind {
                EventType::Put => {
                    let lease = event.event.kv.lease;
                    if let Some(revoked_at) = revoked.get(&lease) {
                        report
                            .violations
                            .push(LeaseViolation::AttachedAfterRevocation {
                                key: lossy(key),
                                lease,
                                revision,
                                revoked_at: *revoked_at,
                            });
                    }
                }
                EventType::Delete => {
                    report.deletes_checked += 1;
                    deleted_keys.insert(key.clone());
                    let lease = event.previous.as_ref().map_or(0, |kv| kv.lease);
                    let by_revocation = lease != 0 && revoked_lease == Some(lease);
                    let by_client = client_deletes.get(key.as_slice()).is_some_and(|deletes| {
                        deletes.iter().any(|(invoked_at, acknowledged)| {
                            *invoked_at <= applied_at
                                && acknowledged.is_none_or(|at| at == revision)
                        })
                    });
                    if !by_revocation && !by_client {
                        report.violations.push(LeaseViolation::UnexplainedDelete {
                            key: lossy(key),
                            revision,
                            lease,
                        });
                    }
                }
            }
        }
        if let Some(lease) = revoked_lease {
            revoked.insert(lease, revision);
            if attached != deleted_keys {
                report.violations.push(LeaseViolation::WrongKeysDeleted {
                    lease,
                    revision,
                    deleted: deleted_keys.iter().map(|key| lossy(key)).collect(),
                    attached: attached.iter().map(|key| lossy(key)).collect(),
                });
            }
        }
    }
    // Deletes the replay could not reach.
    for (_, events) in log.range(replay.revision() + 1, log.last_revision()) {
        report.deletes_unverifiable += events
            .events
            .iter()
            .filter(|event| event.kind == EventType::Delete)
            .count();
    }
}

fn check_expiries(
    history: &History,
    revocations: &[LeaseRevocation],
    config: &LeaseCheckConfig,
    report: &mut LeaseReport,
) {
    assert!(
        config.tick_rate_percent_max >= 1,
        "tick_rate_percent_max {} must be positive",
        config.tick_rate_percent_max
    );
    // Per lease: client revokes (invoked at) and refreshes (invoked at, ttl).
    let mut client_revokes: BTreeMap<LeaseId, Vec<SimTime>> = BTreeMap::new();
    let mut refreshes: BTreeMap<LeaseId, Vec<(SimTime, i64)>> = BTreeMap::new();
    for record in history.records() {
        match (&record.operation, &record.outcome) {
            (Operation::LeaseRevoke { .. }, Outcome::Failed { .. }) => {}
            (Operation::LeaseRevoke { lease }, _) => {
                client_revokes
                    .entry(*lease)
                    .or_default()
                    .push(record.invoked_at);
            }
            (
                Operation::LeaseGrant { .. },
                Outcome::Completed {
                    result:
                        OperationResult::LeaseGrant {
                            lease, ttl_seconds, ..
                        },
                    ..
                },
            ) => refreshes
                .entry(*lease)
                .or_default()
                .push((record.invoked_at, *ttl_seconds)),
            (
                Operation::LeaseKeepAlive { lease },
                Outcome::Completed {
                    result: OperationResult::LeaseKeepAlive { ttl_seconds, .. },
                    ..
                },
            ) if *ttl_seconds > 0 => refreshes
                .entry(*lease)
                .or_default()
                .push((record.invoked_at, *ttl_seconds)),
            _ => {}
        }
    }
    for revocation in revocations {
        report.revocations_checked += 1;
        let asked = client_revokes
            .get(&revocation.lease)
            .is_some_and(|invocations| invocations.iter().any(|at| *at <= revocation.applied_at));
        if asked {
            continue;
        }
        report.expiries += 1;
        let Some(refreshes) = refreshes.get(&revocation.lease) else {
            continue;
        };
        for (refreshed_at, ttl_seconds) in refreshes {
            if *refreshed_at > revocation.applied_at {
                continue;
            }
            let ttl_nanos = u64::try_from(*ttl_seconds)
                .unwrap_or(0)
                .saturating_mul(1_000_000_000);
            let shortest = ttl_nanos.saturating_mul(100) / config.tick_rate_percent_max;
            let earliest = refreshed_at.saturating_add(Duration::from_nanos(shortest));
            if revocation.applied_at < earliest {
                report.violations.push(LeaseViolation::EarlyExpiry {
                    lease: revocation.lease,
                    applied_at: revocation.applied_at,
                    refreshed_at: *refreshed_at,
                    ttl_seconds: *ttl_seconds,
                    earliest,
                });
                break;
            }
        }
    }
}
