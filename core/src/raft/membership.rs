//! Membership changes, one member at a time, effective when appended.
//!
//! Cairn uses single-server changes (Ongaro's dissertation, §4.1), not joint
//! consensus: every change adds or removes one voter (or touches only
//! learners), so any majority of the old voters intersects any majority of
//! the new ones and no two leaders can be elected in one term across the
//! change. Three rules make this safe under faults:
//!
//! 1. **Effective on append.** Every node uses the latest configuration in
//!    its log, committed or not, and falls back to the previous one if the
//!    entry is truncated. (Applying at commit instead lets a node that has
//!    not learned of two successive commits elect itself with a majority of
//!    a configuration two steps old, which need not intersect the newest.)
//! 2. **One at a time.** The leader refuses a change while the latest
//!    configuration entry in its log is uncommitted.
//! 3. **Current-term entry first.** A new leader refuses changes until it
//!    has committed an entry of its own term (its no-op), which fixes the
//!    single-server bug Ongaro reported in 2015, where changes proposed by
//!    successive leaders could otherwise overlap.
//!
//! A leader that removes itself keeps leading (without counting itself)
//! until the change commits, then hands over (TimeoutNow to the most
//! up-to-date voter) and steps down, never to campaign again. A node whose
//! removal is appended but not yet committed may still campaign: if a
//! leader is deposed right after appending its own removal, its log can be
//! the only up-to-date one, and the cluster would otherwise be stuck.
//! Votes are always counted in the candidate's latest configuration, so
//! this affects liveness only.

use super::entry::{ConfChange, ConfState, Entry, EntryKind, NodeId};

/// Why a membership change was refused before it reached the log.
pub(crate) fn validate(conf_state: &ConfState, change: &ConfChange) -> Result<(), String> {
    let is_member =
        |id: &NodeId| conf_state.voters.contains(id) || conf_state.learners.contains(id);
    match change {
        ConfChange::AddVoter { id, .. } | ConfChange::AddLearner { id, .. } if is_member(id) => {
            Err(format!("{id} is already a member"))
        }
        ConfChange::AddVoter { id, .. } | ConfChange::AddLearner { id, .. } if id.0 == 0 => {
            Err("member id 0 is reserved".to_string())
        }
        ConfChange::PromoteLearner { id } if !conf_state.learners.contains(id) => {
            Err(format!("{id} is not a learner"))
        }
        ConfChange::RemoveNode { id } if !is_member(id) => Err(format!("{id} is not a member")),
        ConfChange::RemoveNode { id }
            if conf_state.voters.contains(id) && conf_state.voters.len() == 1 =>
        {
            Err(format!("removing {id} would leave no voters"))
        }
        ConfChange::UpdateNode { id, .. } if !is_member(id) => Err(format!("{id} is not a member")),
        _ => Ok(()),
    }
}

/// Applies one change to a configuration. Changes that do not fit (they can
/// only come from a log written by a buggy leader) leave it unchanged.
pub(crate) fn apply(conf_state: &mut ConfState, change: &ConfChange) {
    match change {
        ConfChange::AddVoter { id, .. } => {
            conf_state.learners.remove(id);
            conf_state.voters.insert(*id);
        }
        ConfChange::AddLearner { id, .. } => {
            if !conf_state.voters.contains(id) {
                conf_state.learners.insert(*id);
            }
        }
        ConfChange::PromoteLearner { id } => {
            if conf_state.learners.remove(id) {
                conf_state.voters.insert(*id);
            }
        }
        ConfChange::RemoveNode { id } => {
            conf_state.voters.remove(id);
            conf_state.learners.remove(id);
        }
        ConfChange::UpdateNode { .. } => {}
    }
}

/// Decodes the change an entry carries. Entries in the log were encoded
/// by a leader's `propose_conf_change`; one that does not decode is corrupt.
pub(crate) fn decode(entry: &Entry) -> ConfChange {
    assert!(
        entry.kind == EntryKind::ConfChange,
        "entry {} is not a conf change",
        entry.index
    );
    match ConfChange::decode(&entry.data) {
        Ok(change) => change,
        Err(error) => panic!("conf change entry {} does not decode: {error}", entry.index),
    }
}
