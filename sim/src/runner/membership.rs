//! The operator's membership actions, through the same path as etcd's
//! Cluster API (`NodeHandle::member_add / member_promote / member_remove`):
//! adding a learner on a new machine and starting it in join mode once the
//! add is confirmed, promoting a learner once it has caught up, removing a
//! member, and bringing a wiped machine back under a new identity.
//!
//! Each action retries like an operator who re-runs `etcdctl member ...`
//! after a timeout: an answer that says the earlier attempt took effect
//! (the member exists, is already a voter, is already gone) counts as
//! success, and the number of attempts is bounded. An action that gave up
//! may still take effect later (its entry was in some log), so the operator
//! never trusts its own view blindly: [`reconcile`] reads the member table
//! (linearizably) before every action and after one that gave up, and
//! brings the runner's [`Membership`] view in line with it.

use std::time::Duration;

use cairn_core::raft::NodeId;
use cairn_server::node::{Member as TableMember, NodeError, NodeHandle};

use super::cluster::{Cluster, Membership};
use super::quorum_budget::Doubt;
use super::workload::CLIENT_TIMEOUT;

/// Attempts at a member add or remove before the operator gives up.
pub const MEMBERSHIP_ATTEMPTS_MAX: u32 = 10;
/// Attempts at promoting a learner (it must first catch up, possibly by
/// snapshot) before the operator gives up.
pub const PROMOTE_ATTEMPTS_MAX: u32 = 40;
/// Pause between attempts.
pub const MEMBERSHIP_RETRY: Duration = Duration::from_millis(500);

/// Why a membership action did not take effect.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// The cluster refused it for good.
    #[error("refused: {error}")]
    Refused {
        /// The cluster's answer.
        error: NodeError,
    },
    /// Every attempt failed or timed out.
    #[error("gave up after {attempts} attempts; last answer: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last answer.
        last: String,
    },
}

/// How one attempt ended.
enum Attempt<T> {
    Done(T),
    Retry(String),
    Refused(NodeError),
}

/// The handle an operator's request goes to: the leader's when one is
/// known (etcd forwards to it anyway), else a running voter's. Never a
/// learner's: a member that joined holds every member, itself included, as
/// a voter in its table until it has applied its own add, and would refuse
/// its own promotion as "not a learner".
fn operator_handle(cluster: &Cluster) -> Option<NodeHandle> {
    if let Some(leader) = cluster.leader() {
        if let Some(handle) = cluster.member(leader).handle() {
            return Some(handle);
        }
    }
    cluster
        .handles()
        .into_iter()
        .find(|(number, _)| cluster.member(*number).membership() == Membership::Voter)
        .map(|(_, handle)| handle)
}

/// Runs `attempt` (named `action` in the trace) up to `attempts_max`
/// times, `MEMBERSHIP_RETRY` apart.
async fn retry<T, F, Fut>(
    cluster: &Cluster,
    action: &str,
    attempts_max: u32,
    mut attempt: F,
) -> Result<T, MembershipError>
where
    F: FnMut(NodeHandle, u32) -> Fut,
    Fut: std::future::Future<Output = Attempt<T>>,
{
    let mut last = String::from("no member running");
    for number in 0..attempts_max {
        if number > 0 {
            tokio::time::sleep(MEMBERSHIP_RETRY).await;
        }
        let Some(handle) = operator_handle(cluster) else {
            continue;
        };
        match attempt(handle, number).await {
            Attempt::Done(value) => {
                cluster.trace(&format!("operator: {action}, attempt {number}: done"));
                return Ok(value);
            }
            Attempt::Retry(reason) => {
                cluster.trace(&format!("operator: {action}, attempt {number}: {reason}"));
                last = reason;
            }
            Attempt::Refused(error) => return Err(MembershipError::Refused { error }),
        }
    }
    Err(MembershipError::GaveUp {
        attempts: attempts_max,
        last,
    })
}

/// Reads the member table linearizably and brings the runner's view of
/// every machine in line with it: a member missing from it was removed by
/// an attempt that gave up too early, a learner that is a voter there was
/// promoted, and an abandoned machine whose add took effect after all
/// starts. Returns the table.
pub async fn reconcile(cluster: &Cluster) -> Result<Vec<TableMember>, MembershipError> {
    let table = retry(
        cluster,
        "member list",
        MEMBERSHIP_ATTEMPTS_MAX,
        |handle, _| async move {
            match tokio::time::timeout(CLIENT_TIMEOUT, handle.member_list_with(true)).await {
                Ok(Ok((_, table))) => Attempt::Done(table),
                Ok(Err(error)) => Attempt::Retry(error.to_string()),
                Err(_) => Attempt::Retry("timed out".to_string()),
            }
        },
    )
    .await?;
    for member in cluster.members() {
        let id = member.id();
        let entry = table.iter().find(|entry| entry.id == id.0);
        match (member.membership(), entry) {
            (Membership::Voter | Membership::Learner, None) => {
                cluster.set_membership(member.number, Membership::Removed);
            }
            (Membership::Learner, Some(entry)) if !entry.is_learner => {
                cluster.set_membership(member.number, Membership::Voter);
            }
            (Membership::Abandoned, Some(entry)) => {
                cluster.start_joined(member.number, &table);
                if !entry.is_learner {
                    cluster.set_membership(member.number, Membership::Voter);
                }
            }
            _ => {}
        }
    }
    Ok(table)
}

/// After an action failed: whether the table shows it took effect anyway
/// (an earlier attempt that timed out, or someone else, did it).
async fn took_effect(
    cluster: &Cluster,
    error: MembershipError,
    effect: impl Fn(&[TableMember]) -> bool,
) -> Result<Vec<TableMember>, MembershipError> {
    match reconcile(cluster).await {
        Ok(table) if effect(&table) => Ok(table),
        _ => Err(error),
    }
}

/// `member add --learner` with `peer_urls`; the member table after it.
pub async fn add_learner(
    cluster: &Cluster,
    peer_urls: Vec<String>,
) -> Result<Vec<TableMember>, MembershipError> {
    let action = format!("member add --learner {peer_urls:?}");
    let result = retry(cluster, &action, MEMBERSHIP_ATTEMPTS_MAX, |handle, _| {
        let peer_urls = peer_urls.clone();
        async move {
            let answer =
                tokio::time::timeout(CLIENT_TIMEOUT, handle.member_add(peer_urls, true)).await;
            match answer {
                Ok(Ok((_, _, table))) => Attempt::Done(table),
                // Perhaps an earlier attempt that timed out took effect:
                // checked against the table below.
                Ok(Err(error @ (NodeError::PeerUrlExists | NodeError::MemberIdExists))) => {
                    Attempt::Refused(error)
                }
                Ok(Err(error)) => Attempt::Retry(error.to_string()),
                Err(_) => Attempt::Retry("timed out".to_string()),
            }
        }
    })
    .await;
    match result {
        Ok(table) => Ok(table),
        Err(error) => {
            took_effect(cluster, error, |table| {
                table
                    .iter()
                    .any(|member| member.peer_urls.iter().any(|url| peer_urls.contains(url)))
            })
            .await
        }
    }
}

/// `member promote` of `id`. A refusal that says it is no learner (an
/// earlier attempt may have promoted it) is checked against the table.
pub async fn promote(cluster: &Cluster, id: NodeId) -> Result<(), MembershipError> {
    let action = format!("member promote {id}");
    let result = retry(
        cluster,
        &action,
        PROMOTE_ATTEMPTS_MAX,
        |handle, _| async move {
            match tokio::time::timeout(CLIENT_TIMEOUT, handle.member_promote(id.0)).await {
                Ok(Ok(_)) => Attempt::Done(()),
                Ok(Err(error @ (NodeError::MemberNotLearner | NodeError::MemberNotFound))) => {
                    Attempt::Refused(error)
                }
                Ok(Err(error)) => Attempt::Retry(error.to_string()),
                Err(_) => Attempt::Retry("timed out".to_string()),
            }
        },
    )
    .await;
    let Err(error) = result else { return Ok(()) };
    took_effect(cluster, error, |table| {
        table
            .iter()
            .any(|member| member.id == id.0 && !member.is_learner)
    })
    .await
    .map(|_| ())
}

/// `member remove` of `id`. A refusal that says it is not found (an
/// earlier attempt may have removed it) is checked against the table.
pub async fn remove(cluster: &Cluster, id: NodeId) -> Result<(), MembershipError> {
    let action = format!("member remove {id}");
    let result = retry(
        cluster,
        &action,
        MEMBERSHIP_ATTEMPTS_MAX,
        |handle, _| async move {
            match tokio::time::timeout(CLIENT_TIMEOUT, handle.member_remove(id.0)).await {
                Ok(Ok(_)) => Attempt::Done(()),
                Ok(Err(
                    error @ (NodeError::MemberNotFound | NodeError::NotEnoughStartedMembers),
                )) => Attempt::Refused(error),
                Ok(Err(error)) => Attempt::Retry(error.to_string()),
                Err(_) => Attempt::Retry("timed out".to_string()),
            }
        },
    )
    .await;
    let Err(error) = result else { return Ok(()) };
    took_effect(cluster, error, |table| {
        table.iter().all(|member| member.id != id.0)
    })
    .await
    .map(|_| ())
}

/// Adds a new machine as a learner and starts it in join mode; returns its
/// number. The machine is created (numbered) first; if the add never takes
/// effect it is abandoned, never started.
pub async fn add_learner_machine(cluster: &Cluster) -> Result<u32, (u32, MembershipError)> {
    let member = cluster.add_machine();
    let number = member.number;
    let urls = super::cluster::peer_urls(number, 0);
    match add_learner(cluster, urls).await {
        Ok(table) => {
            cluster.start_joined(number, &table);
            Ok(number)
        }
        Err(error) => {
            cluster.set_membership(number, Membership::Abandoned);
            Err((number, error))
        }
    }
}

/// Promotes learner machine `number` to voter.
pub async fn promote_machine(cluster: &Cluster, number: u32) -> Result<(), MembershipError> {
    let id = cluster.member(number).id();
    promote(cluster, id).await?;
    let member = cluster.member(number);
    if member.id() == id && member.membership() == Membership::Learner {
        cluster.set_membership(number, Membership::Voter);
    }
    Ok(())
}

/// Removes machine `number`'s current identity. The machine's process
/// stops on its own once it learns of its removal.
pub async fn remove_machine(cluster: &Cluster, number: u32) -> Result<(), MembershipError> {
    let id = cluster.member(number).id();
    remove(cluster, id).await?;
    cluster.set_membership(number, Membership::Removed);
    Ok(())
}

/// How a wiped machine's return went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejoin {
    /// Back under a new identity, as a voter again if `voter`.
    Rejoined {
        /// Promoted back to voter (it was one).
        voter: bool,
    },
    /// Its old identity's removal gave up: it may or may not be gone, and
    /// the machine stays wiped.
    RemovalFailed(MembershipError),
    /// Its old identity is gone, but adding the new one gave up: the machine
    /// is abandoned.
    AddFailed(MembershipError),
    /// Back as a learner; its promotion gave up and may or may not have
    /// taken effect.
    PromotionFailed(MembershipError),
}

/// Brings wiped machine `number` back as an operator would after replacing
/// its disk: remove its old identity, add it under a new identity (new peer
/// URL, new member ID) as a learner, start it in join mode so it catches up
/// from the leader (by snapshot once the log is compacted), and promote it
/// if it was a voter. Its old identity never runs again.
///
/// `before` is told of each change about to be proposed whose outcome may
/// end in doubt (the removal, then the promotion).
pub async fn rejoin_wiped(
    cluster: &Cluster,
    number: u32,
    voter: bool,
    before: impl Fn(Doubt),
) -> Rejoin {
    let old = cluster.member(number).id();
    before(Doubt::Removal);
    if let Err(error) = remove(cluster, old).await {
        return Rejoin::RemovalFailed(error);
    }
    let urls = cluster.next_identity(number);
    let table = match add_learner(cluster, urls).await {
        Ok(table) => table,
        Err(error) => {
            cluster.set_membership(number, Membership::Abandoned);
            return Rejoin::AddFailed(error);
        }
    };
    cluster.start_joined(number, &table);
    if !voter {
        return Rejoin::Rejoined { voter: false };
    }
    before(Doubt::Promotion);
    match promote_machine(cluster, number).await {
        Ok(()) => Rejoin::Rejoined { voter: true },
        Err(error) => Rejoin::PromotionFailed(error),
    }
}
