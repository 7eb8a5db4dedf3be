//! The verdict of one run: every checker's report side by side, the fault
//! counts, and one answer. A run passes only when every check that ran
//! found nothing wrong *and* nothing was left unknown: an exhausted search
//! budget or an unverifiable watch session fails the run, so a budget can
//! never hide a bug.

use std::collections::BTreeMap;
use std::fmt;

use crate::checker::convergence::ConvergenceReport;
use crate::checker::durability::DurabilityReport;
use crate::checker::implicated::Implicated;
use crate::checker::lease::LeaseReport;
use crate::checker::linearizable::LinearizabilityReport;
use crate::checker::raft::{RaftSummary, RaftViolation};
use crate::checker::revision::RevisionReport;
use crate::checker::txn::TxnReport;
use crate::checker::watch::WatchReport;
use crate::scenario::Check;

/// Everything the checkers concluded about one run. `None` means the check
/// did not run (the scenario did not ask for it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunVerdict {
    /// Per-key linearizability.
    pub linearizability: Option<LinearizabilityReport>,
    /// Revision order and reads against committed state.
    pub revisions: Option<RevisionReport>,
    /// Transactions re-executed against the committed state (with revisions).
    pub txns: Option<TxnReport>,
    /// Watch guarantees.
    pub watch: Option<WatchReport>,
    /// Acknowledged writes survived.
    pub durability: Option<DurabilityReport>,
    /// Lease safety.
    pub lease: Option<LeaseReport>,
    /// Raft invariants: counts, and the violation that stopped the run, if any.
    pub raft: Option<(RaftSummary, Option<RaftViolation>)>,
    /// Progress after healing: `Err` says what did not happen in time.
    pub liveness: Option<Result<(), String>>,
    /// Durable match indexes, and every live member converged after healing.
    pub convergence: Option<ConvergenceReport>,
    /// Faults injected, by kind.
    pub fault_counts: BTreeMap<&'static str, usize>,
}

impl RunVerdict {
    /// Every check that ran passed, with nothing unknown.
    pub fn is_ok(&self) -> bool {
        self.linearizability
            .as_ref()
            .is_none_or(LinearizabilityReport::is_ok)
            && self.revisions.as_ref().is_none_or(RevisionReport::is_ok)
            && self.txns.as_ref().is_none_or(TxnReport::is_ok)
            && self.watch.as_ref().is_none_or(WatchReport::is_ok)
            && self.durability.as_ref().is_none_or(DurabilityReport::is_ok)
            && self.lease.as_ref().is_none_or(LeaseReport::is_ok)
            && self
                .raft
                .as_ref()
                .is_none_or(|(_, violation)| violation.is_none())
            && self.liveness.as_ref().is_none_or(Result::is_ok)
            && self
                .convergence
                .as_ref()
                .is_none_or(ConvergenceReport::is_ok)
    }

    /// The checks that failed (an unknown counts as a failure), in
    /// [`Check::ALL`] order: what `cairn-sim shrink` must keep failing.
    pub fn failed_checks(&self) -> Vec<Check> {
        let failed = |check: Check| match check {
            Check::Linearizable => self
                .linearizability
                .as_ref()
                .is_some_and(|report| !report.is_ok()),
            // The txn checker runs with the revision checker.
            Check::Revisions => {
                self.revisions
                    .as_ref()
                    .is_some_and(|report| !report.is_ok())
                    || self.txns.as_ref().is_some_and(|report| !report.is_ok())
            }
            Check::Raft => self
                .raft
                .as_ref()
                .is_some_and(|(_, violation)| violation.is_some()),
            Check::Watch => self.watch.as_ref().is_some_and(|report| !report.is_ok()),
            Check::Durability => self
                .durability
                .as_ref()
                .is_some_and(|report| !report.is_ok()),
            Check::Lease => self.lease.as_ref().is_some_and(|report| !report.is_ok()),
            Check::Liveness => self.liveness.as_ref().is_some_and(Result::is_err),
            Check::Convergence => self
                .convergence
                .as_ref()
                .is_some_and(|report| !report.is_ok()),
        };
        Check::ALL
            .into_iter()
            .filter(|check| failed(*check))
            .collect()
    }

    /// What the failed checks point at: see [`Implicated`].
    pub fn implicated(&self) -> Implicated {
        Implicated::of(self)
    }

    /// How many verdicts are "unknown" rather than pass or fail (key
    /// partitions out of search budget, unverifiable watch sessions).
    pub fn unknown_count(&self) -> usize {
        self.linearizability
            .as_ref()
            .map_or(0, LinearizabilityReport::unknown_count)
            + self
                .watch
                .as_ref()
                .map_or(0, |watch| watch.sessions_unverifiable)
    }
}

impl fmt::Display for RunVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = if self.is_ok() { "PASS" } else { "FAIL" };
        writeln!(f, "verdict: {outcome} ({} unknown)", self.unknown_count())?;
        let faults: Vec<String> = self
            .fault_counts
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect();
        writeln!(
            f,
            "faults: {}",
            if faults.is_empty() {
                "none".into()
            } else {
                faults.join(", ")
            }
        )?;
        if let Some(report) = &self.linearizability {
            write!(f, "{report}")?;
        }
        if let Some(report) = &self.revisions {
            write!(f, "{report}")?;
        }
        if let Some(report) = &self.txns {
            write!(f, "{report}")?;
        }
        if let Some(report) = &self.watch {
            write!(f, "{report}")?;
        }
        if let Some(report) = &self.durability {
            write!(f, "{report}")?;
        }
        if let Some(report) = &self.lease {
            write!(f, "{report}")?;
        }
        if let Some((summary, violation)) = &self.raft {
            writeln!(f, "{summary}")?;
            if let Some(violation) = violation {
                writeln!(f, "  {violation}")?;
            }
        }
        match &self.liveness {
            None => {}
            Some(Ok(())) => writeln!(f, "liveness: progress resumed after healing")?,
            Some(Err(reason)) => writeln!(f, "liveness: FAILED: {reason}")?,
        }
        if let Some(report) = &self.convergence {
            write!(f, "{report}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::linearizable::{PartitionReport, PartitionVerdict};

    #[test]
    fn an_unknown_partition_fails_the_run() {
        let mut verdict = RunVerdict::default();
        assert!(verdict.is_ok());
        verdict.linearizability = Some(LinearizabilityReport {
            partitions: vec![PartitionReport {
                key: b"a".to_vec(),
                operations: 3,
                steps: 10,
                verdict: PartitionVerdict::Unknown,
            }],
            ..LinearizabilityReport::default()
        });
        assert!(!verdict.is_ok());
        assert_eq!(verdict.unknown_count(), 1);
        assert!(verdict.to_string().starts_with("verdict: FAIL (1 unknown)"));
    }

    #[test]
    fn a_liveness_failure_fails_the_run() {
        let verdict = RunVerdict {
            liveness: Some(Err("no write committed within 20s".into())),
            ..RunVerdict::default()
        };
        assert!(!verdict.is_ok());
        assert!(verdict
            .to_string()
            .contains("no write committed within 20s"));
    }
}
