//! What a failed run points at: the operations, revisions, members, keys
//! and instants the checkers named in their violations, gathered from every
//! report of a [`RunVerdict`] so the failure report can highlight them on
//! its timeline and find the trace lines around them.
//!
//! The matches below are exhaustive on purpose: a new kind of violation
//! must say here what it implicates, or the report could not show it.

use std::collections::BTreeSet;

use cairn_core::kv::{LeaseId, Revision};
use cairn_core::raft::NodeId;

use crate::checker::durability::DurabilityViolation;
use crate::checker::lease::LeaseViolation;
use crate::checker::linearizable::PartitionVerdict;
use crate::checker::raft::RaftViolation;
use crate::checker::revision::RevisionViolation;
use crate::checker::verdict::RunVerdict;
use crate::checker::watch::WatchViolation;
use crate::history::OperationId;
use crate::scenario::Check;
use crate::time::SimTime;

/// One violation, as its checker words it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The check that found it.
    pub check: Check,
    /// The violation, in the checker's words.
    pub text: String,
}

/// Everything the failed checks of one run implicate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Implicated {
    /// Operations a violation names: the culprits.
    pub operations: BTreeSet<OperationId>,
    /// Operations that frame a violation without being its culprits (a
    /// linearizability counterexample's longest accepted order).
    pub context: BTreeSet<OperationId>,
    /// Revisions a violation names.
    pub revisions: BTreeSet<Revision>,
    /// Members a violation names.
    pub members: BTreeSet<NodeId>,
    /// Keys a violation names.
    pub keys: BTreeSet<String>,
    /// Watch sessions a violation names.
    pub watch_sessions: BTreeSet<u64>,
    /// Leases a violation names.
    pub leases: BTreeSet<LeaseId>,
    /// Instants of simulated time a violation names.
    pub instants: BTreeSet<SimTime>,
    /// Every violation, in check order.
    pub findings: Vec<Finding>,
}

impl Implicated {
    /// Gathers what every failed check of `verdict` implicates.
    pub fn of(verdict: &RunVerdict) -> Implicated {
        let mut implicated = Implicated::default();
        if let Some(report) = &verdict.linearizability {
            for partition in &report.partitions {
                let key = String::from_utf8_lossy(&partition.key).into_owned();
                let text = match &partition.verdict {
                    PartitionVerdict::Linearizable => continue,
                    PartitionVerdict::Unknown => format!(
                        "key {key:?}: unknown after {} steps over {} operations",
                        partition.steps, partition.operations
                    ),
                    PartitionVerdict::NotLinearizable(counterexample) => {
                        implicated
                            .operations
                            .extend(counterexample.blocked.iter().copied());
                        implicated
                            .context
                            .extend(counterexample.longest_linearization.iter().copied());
                        let blocked: BTreeSet<String> = counterexample
                            .blocked
                            .iter()
                            .map(OperationId::to_string)
                            .collect();
                        format!(
                            "key {key:?}: not linearizable; none of {} can follow the {} operations linearized",
                            blocked.into_iter().collect::<Vec<_>>().join(", "),
                            counterexample.longest_linearization.len()
                        )
                    }
                };
                implicated.keys.insert(key);
                implicated.add(Check::Linearizable, text);
            }
        }
        if let Some(report) = &verdict.revisions {
            for violation in &report.violations {
                implicated.revision(violation);
            }
        }
        if let Some(report) = &verdict.txns {
            for violation in &report.violations {
                implicated.operations.insert(violation.operation);
                implicated.revisions.insert(violation.revision);
                implicated.add(Check::Revisions, violation.to_string());
            }
        }
        if let Some(report) = &verdict.convergence {
            if let Some(violation) = &report.match_violation {
                implicated
                    .members
                    .extend([violation.leader, violation.follower]);
                implicated.add(Check::Convergence, violation.to_string());
            }
            if let Some(Err(reason)) = &report.converged {
                implicated.add(Check::Convergence, reason.clone());
            }
        }
        if let Some(report) = &verdict.watch {
            for violation in &report.violations {
                implicated.watch(violation);
            }
            if report.sessions_unverifiable > 0 {
                let text = format!(
                    "{} watch sessions could not be verified",
                    report.sessions_unverifiable
                );
                implicated.add(Check::Watch, text);
            }
        }
        if let Some(report) = &verdict.durability {
            for violation in &report.violations {
                implicated.durability(violation);
            }
        }
        if let Some(report) = &verdict.lease {
            for violation in &report.violations {
                implicated.lease(violation);
            }
        }
        if let Some((_, Some(violation))) = &verdict.raft {
            implicated.raft(violation);
        }
        if let Some(Err(reason)) = &verdict.liveness {
            implicated.add(Check::Liveness, reason.clone());
        }
        implicated
    }

    /// Whether nothing at all is implicated.
    pub fn is_empty(&self) -> bool {
        self.findings.is_empty()
    }

    fn add(&mut self, check: Check, text: String) {
        self.findings.push(Finding { check, text });
    }

    fn revision(&mut self, violation: &RevisionViolation) {
        match violation {
            RevisionViolation::DuplicateRevision {
                revision,
                first,
                second,
            } => {
                self.operations.extend([*first, *second]);
                self.revisions.insert(*revision);
            }
            RevisionViolation::RealTimeOrder {
                earlier,
                earlier_revision,
                later,
                later_revision,
                ..
            } => {
                self.operations.extend([*earlier, *later]);
                self.revisions.extend([*earlier_revision, *later_revision]);
            }
            RevisionViolation::MalformedKeyValue {
                operation,
                revision,
                ..
            } => {
                self.operations.insert(*operation);
                self.revisions.insert(*revision);
            }
            RevisionViolation::ConflictingObservation {
                key,
                mod_revision,
                first,
                second,
                ..
            } => {
                self.operations.extend([*first, *second]);
                self.revisions.insert(*mod_revision);
                self.keys.insert(key.clone());
            }
            RevisionViolation::StaleOrPhantomRead {
                operation,
                revision,
                key,
                ..
            } => {
                self.operations.insert(*operation);
                self.revisions.insert(*revision);
                self.keys.insert(key.clone());
            }
        }
        self.add(Check::Revisions, violation.to_string());
    }

    fn watch(&mut self, violation: &WatchViolation) {
        match violation {
            WatchViolation::OutOfOrder {
                session,
                previous,
                revision,
            } => {
                self.watch_sessions.insert(*session);
                self.revisions.extend([*previous, *revision]);
            }
            WatchViolation::SplitRevision {
                session, revision, ..
            }
            | WatchViolation::WrongEvents {
                session, revision, ..
            }
            | WatchViolation::Gap {
                session, revision, ..
            }
            | WatchViolation::HeaderBehindEvents {
                session, revision, ..
            } => {
                self.watch_sessions.insert(*session);
                self.revisions.insert(*revision);
            }
            WatchViolation::WrongPreviousKeyValue {
                session,
                revision,
                key,
                ..
            } => {
                self.watch_sessions.insert(*session);
                self.revisions.insert(*revision);
                self.keys.insert(key.clone());
            }
            WatchViolation::Compaction { session, .. }
            | WatchViolation::AfterCancel { session, .. } => {
                self.watch_sessions.insert(*session);
            }
        }
        self.add(Check::Watch, violation.to_string());
    }

    fn durability(&mut self, violation: &DurabilityViolation) {
        self.operations.insert(violation.operation);
        self.revisions.insert(violation.revision);
        self.keys.insert(violation.key.clone());
        self.add(Check::Durability, violation.to_string());
    }

    fn lease(&mut self, violation: &LeaseViolation) {
        match violation {
            LeaseViolation::UnexplainedDelete {
                key,
                revision,
                lease,
            } => {
                self.keys.insert(key.clone());
                self.revisions.insert(*revision);
                self.leases.insert(*lease);
            }
            LeaseViolation::WrongKeysDeleted {
                lease,
                revision,
                deleted,
                attached,
            } => {
                self.leases.insert(*lease);
                self.revisions.insert(*revision);
                self.keys.extend(deleted.iter().chain(attached).cloned());
            }
            LeaseViolation::AttachedAfterRevocation {
                key,
                lease,
                revision,
                revoked_at,
            } => {
                self.keys.insert(key.clone());
                self.leases.insert(*lease);
                self.revisions.extend([*revision, *revoked_at]);
            }
            LeaseViolation::EarlyExpiry {
                lease,
                applied_at,
                refreshed_at,
                ..
            } => {
                self.leases.insert(*lease);
                self.instants.extend([*applied_at, *refreshed_at]);
            }
            LeaseViolation::TimeToLiveBeyondGrant {
                lease, answered_at, ..
            } => {
                self.leases.insert(*lease);
                self.instants.insert(*answered_at);
            }
        }
        self.add(Check::Lease, violation.to_string());
    }

    fn raft(&mut self, violation: &RaftViolation) {
        match violation {
            RaftViolation::TwoLeaders { first, second, .. } => {
                self.members.extend([*first, *second]);
            }
            RaftViolation::LogMismatch {
                node, first_node, ..
            }
            | RaftViolation::StateDiverged {
                node, first_node, ..
            } => {
                self.members.extend([*node, *first_node]);
            }
            RaftViolation::CommittedEntryChanged { node, .. }
            | RaftViolation::IndexOrder { node, .. } => {
                self.members.insert(*node);
            }
        }
        self.add(Check::Raft, violation.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::durability::DurabilityReport;
    use crate::checker::linearizable::{Counterexample, LinearizabilityReport, PartitionReport};

    #[test]
    fn a_counterexample_implicates_its_blocked_operations_and_frames_the_rest() {
        let verdict = RunVerdict {
            linearizability: Some(LinearizabilityReport {
                partitions: vec![PartitionReport {
                    key: b"k1".to_vec(),
                    operations: 4,
                    steps: 9,
                    verdict: PartitionVerdict::NotLinearizable(Counterexample {
                        longest_linearization: vec![OperationId(0), OperationId(1)],
                        blocked: vec![OperationId(3)],
                    }),
                }],
                ..LinearizabilityReport::default()
            }),
            durability: Some(DurabilityReport {
                writes_checked: 3,
                violations: vec![DurabilityViolation {
                    operation: OperationId(2),
                    kind: "put",
                    key: "k2".into(),
                    revision: 7,
                    reason: "gone".into(),
                }],
            }),
            ..RunVerdict::default()
        };
        let implicated = Implicated::of(&verdict);
        assert_eq!(
            implicated.operations,
            BTreeSet::from([OperationId(2), OperationId(3)])
        );
        assert_eq!(
            implicated.context,
            BTreeSet::from([OperationId(0), OperationId(1)])
        );
        assert_eq!(implicated.revisions, BTreeSet::from([7]));
        assert_eq!(
            implicated.keys,
            BTreeSet::from(["k1".to_string(), "k2".to_string()])
        );
        let checks: Vec<Check> = implicated.findings.iter().map(|f| f.check).collect();
        assert_eq!(checks, [Check::Linearizable, Check::Durability]);
    }

    #[test]
    fn a_passing_verdict_implicates_nothing() {
        assert!(Implicated::of(&RunVerdict::default()).is_empty());
    }
}
