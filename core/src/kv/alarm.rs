//! Alarms: member-level conditions that are replicated state, as in etcd.
//! A member whose backend exceeds its quota raises NOSPACE through the log,
//! and while any NOSPACE alarm is active every member refuses the writes
//! that grow the state (etcd's "capped" applier) until an operator disarms
//! it. Keeping the alarms in the store puts them in snapshots and hashes.

use serde::{Deserialize, Serialize};

/// etcd's AlarmType (NONE is not an alarm, and CORRUPT is never raised).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AlarmType {
    /// The backend exceeded --quota-backend-bytes.
    NoSpace,
}

/// etcd's AlarmRequest action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlarmAction {
    /// List the active alarms.
    Get,
    /// Raise an alarm for a member.
    Activate,
    /// Clear a member's alarm.
    Deactivate,
}

/// One active alarm: which member raised which alarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AlarmMember {
    /// The member that raised it.
    pub member_id: u64,
    /// What it is.
    pub alarm: AlarmType,
}

/// Maintenance.Alarm as a replicated command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmRequest {
    /// What to do.
    pub action: AlarmAction,
    /// The member and alarm acted on (ignored by `Get`).
    pub member: AlarmMember,
}
