//! Guards the lease safety checker: a key attached to a lease disappears
//! only through a client delete or a revocation (client revoke or leader
//! expiry) of that lease, a revocation deletes exactly its keys, nothing is
//! attached to a revoked lease, and no lease expires before its TTL.

mod common;

use cairn_core::raft::NodeId;
use cairn_sim::checker::lease::{check_leases, LeaseCheckConfig, LeaseRevocation, LeaseViolation};
use cairn_sim::event_log::EventLog;
use cairn_sim::history::{History, Operation, OperationResult};
use common::*;

const LEASE: i64 = 0x77;

/// Revision 2 grants nothing (grants do not bump the revision); revision 2
/// puts lock under the lease, 3 puts other without, 4 deletes lock at `at`.
fn log(delete_at: u64) -> EventLog {
    let mut log = EventLog::new(1);
    log.record(
        NodeId(1),
        2,
        vec![put_event(leased(kv("lock", "me", 2, 2, 1), LEASE))],
        ms(100),
    )
    .expect("2");
    log.record(
        NodeId(1),
        3,
        vec![put_event(kv("other", "x", 3, 3, 1))],
        ms(200),
    )
    .expect("3");
    log.record(NodeId(1), 4, vec![delete_event("lock", 4)], ms(delete_at))
        .expect("4");
    log
}

fn granted(history: &mut History, at: u64, ttl_seconds: i64) {
    done(
        history,
        1,
        at,
        Operation::LeaseGrant { ttl_seconds },
        at + 5,
        OperationResult::LeaseGrant {
            revision: 1,
            lease: LEASE,
            ttl_seconds,
        },
    );
}

#[test]
fn expiry_after_the_ttl_is_fine() {
    let mut history = History::new();
    granted(&mut history, 0, 2);
    let revocations = [LeaseRevocation {
        lease: LEASE,
        revision: Some(4),
        applied_at: ms(2_500),
    }];
    let report = check_leases(
        &history,
        &log(2_500),
        &revocations,
        &LeaseCheckConfig::default(),
    );
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.expiries, 1);
    assert_eq!(report.deletes_checked, 1);
}

#[test]
fn expiry_before_the_ttl_is_a_violation() {
    let mut history = History::new();
    granted(&mut history, 0, 2);
    let revocations = [LeaseRevocation {
        lease: LEASE,
        revision: Some(4),
        applied_at: ms(1_500),
    }];
    let report = check_leases(
        &history,
        &log(1_500),
        &revocations,
        &LeaseCheckConfig::default(),
    );
    assert!(
        matches!(
            report.violations.as_slice(),
            [LeaseViolation::EarlyExpiry { .. }]
        ),
        "{report}"
    );
    // With a leader clock allowed to run at 150%, 1.5s after a 2s grant is legal.
    let fast = LeaseCheckConfig {
        tick_rate_percent_max: 150,
        ..LeaseCheckConfig::default()
    };
    assert!(check_leases(&history, &log(1_500), &revocations, &fast).is_ok());
}

#[test]
fn a_keepalive_extends_the_earliest_expiry() {
    let mut history = History::new();
    granted(&mut history, 0, 2);
    done(
        &mut history,
        1,
        1_500,
        Operation::LeaseKeepAlive { lease: LEASE },
        1_510,
        OperationResult::LeaseKeepAlive {
            revision: 3,
            ttl_seconds: 2,
        },
    );
    let revocations = [LeaseRevocation {
        lease: LEASE,
        revision: Some(4),
        applied_at: ms(2_500),
    }];
    let report = check_leases(
        &history,
        &log(2_500),
        &revocations,
        &LeaseCheckConfig::default(),
    );
    assert!(
        matches!(
            report.violations.as_slice(),
            [LeaseViolation::EarlyExpiry { .. }]
        ),
        "{report}"
    );
}

#[test]
fn a_client_revoke_may_delete_early() {
    let mut history = History::new();
    granted(&mut history, 0, 60);
    done(
        &mut history,
        1,
        400,
        Operation::LeaseRevoke { lease: LEASE },
        600,
        OperationResult::LeaseRevoke { revision: 4 },
    );
    let revocations = [LeaseRevocation {
        lease: LEASE,
        revision: Some(4),
        applied_at: ms(500),
    }];
    let report = check_leases(
        &history,
        &log(500),
        &revocations,
        &LeaseCheckConfig::default(),
    );
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.expiries, 0);
}

#[test]
fn a_leased_key_vanishing_without_revocation_is_a_violation() {
    let history = History::new();
    let report = check_leases(&history, &log(500), &[], &LeaseCheckConfig::default());
    assert!(
        matches!(
            report.violations.as_slice(),
            [LeaseViolation::UnexplainedDelete { lease: LEASE, .. }]
        ),
        "{report}"
    );
}

#[test]
fn a_client_delete_explains_a_vanished_key() {
    let mut history = History::new();
    done(&mut history, 1, 450, delete("lock"), 520, delete_ok(4, 1));
    assert!(check_leases(&history, &log(500), &[], &LeaseCheckConfig::default()).is_ok());
}

#[test]
fn a_revocation_must_delete_exactly_its_keys() {
    let mut log = EventLog::new(1);
    log.record(
        NodeId(1),
        2,
        vec![put_event(leased(kv("a", "1", 2, 2, 1), LEASE))],
        ms(1),
    )
    .expect("2");
    log.record(
        NodeId(1),
        3,
        vec![put_event(leased(kv("b", "1", 3, 3, 1), LEASE))],
        ms(2),
    )
    .expect("3");
    log.record(NodeId(1), 4, vec![delete_event("a", 4)], ms(3))
        .expect("4");
    let mut history = History::new();
    done(
        &mut history,
        1,
        0,
        Operation::LeaseRevoke { lease: LEASE },
        10,
        OperationResult::LeaseRevoke { revision: 4 },
    );
    let revocations = [LeaseRevocation {
        lease: LEASE,
        revision: Some(4),
        applied_at: ms(3),
    }];
    let report = check_leases(&history, &log, &revocations, &LeaseCheckConfig::default());
    assert!(
        matches!(
            report.violations.as_slice(),
            [LeaseViolation::WrongKeysDeleted { .. }]
        ),
        "{report}"
    );
}

#[test]
fn attaching_to_a_revoked_lease_is_a_violation() {
    let mut log = log(500);
    log.record(
        NodeId(1),
        5,
        vec![put_event(leased(kv("lock", "again", 5, 5, 1), LEASE))],
        ms(600),
    )
    .expect("5");
    let mut history = History::new();
    done(
        &mut history,
        1,
        400,
        Operation::LeaseRevoke { lease: LEASE },
        600,
        OperationResult::LeaseRevoke { revision: 4 },
    );
    let revocations = [LeaseRevocation {
        lease: LEASE,
        revision: Some(4),
        applied_at: ms(500),
    }];
    let report = check_leases(&history, &log, &revocations, &LeaseCheckConfig::default());
    assert!(
        matches!(
            report.violations.as_slice(),
            [LeaseViolation::AttachedAfterRevocation { .. }]
        ),
        "{report}"
    );
}

/// A TimeToLive answer of `ttl_seconds` left of a 2 s lease, at 1 s.
fn answered(ttl_seconds: i64) -> History {
    let mut history = History::new();
    granted(&mut history, 0, 2);
    done(
        &mut history,
        1,
        1_000,
        Operation::LeaseTimeToLive { lease: LEASE },
        1_005,
        OperationResult::LeaseTimeToLive {
            revision: 3,
            ttl_seconds,
            granted_ttl_seconds: 2,
        },
    );
    history
}

#[test]
fn time_to_live_may_exceed_the_grant_by_one_extension_per_takeover() {
    let one_takeover = LeaseCheckConfig::default();
    // A new leader adds its 1 s extension: 3 s of a 2 s lease is legal.
    let report = check_leases(&answered(3), &EventLog::new(1), &[], &one_takeover);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.time_to_live_checked, 1);
    // 4 s needs a second takeover (the checkpoint carried the first extension).
    let report = check_leases(&answered(4), &EventLog::new(1), &[], &one_takeover);
    assert!(
        matches!(
            report.violations[..],
            [LeaseViolation::TimeToLiveBeyondGrant { ttl_seconds: 4, .. }]
        ),
        "{report}"
    );
    let two_takeovers = LeaseCheckConfig {
        leader_promotions_max: 2,
        ..LeaseCheckConfig::default()
    };
    assert!(check_leases(&answered(4), &EventLog::new(1), &[], &two_takeovers).is_ok());
}
