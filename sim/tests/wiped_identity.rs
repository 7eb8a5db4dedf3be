//! Why the simulator never restarts a wiped member under its old identity.
//!
//! A member whose data dir is wiped has forgotten its hard state, and with
//! it the vote it cast in its current term. Restarted with its original
//! flags (`--initial-cluster-state new`), Cairn's node founds the cluster
//! again from the bootstrap configuration and will grant a second vote in a
//! term it already voted in: two candidates can then both win that term.
//! etcd has the same hazard and guards it at start-up only when peers are
//! reachable ("member ... has already been bootstrapped"). The runner
//! therefore brings a wiped machine back as etcd's runbook says (remove
//! the old member, add a new one, start it in join mode), and
//! `Cluster::restart` refuses to run a machine whose membership is
//! `Wiped`.
//!
//! Started in join mode (`--initial-cluster-state existing`) instead, the
//! node has no configuration and grants no vote until a leader sent it a
//! snapshot; these tests pin both behaviours down at the Raft core, where
//! the vote is decided.

use std::collections::BTreeSet;

use cairn_core::raft::{Config, Index, Message, MessageBody, NodeId, Raft, Start, Term};

const WIPED: NodeId = NodeId(3);
const SEED: u64 = 7;

fn founding_voters() -> BTreeSet<NodeId> {
    [NodeId(1), NodeId(2), WIPED].into_iter().collect()
}

fn vote_request(from: u64, term: u64) -> Message {
    Message {
        from: NodeId(from),
        to: WIPED,
        term: Term(term),
        body: MessageBody::Vote {
            last_log_index: Index(0),
            last_log_term: Term(0),
            transfer: false,
        },
    }
}

/// Carries out every Ready (as a driver that persists everything) and
/// returns whether the node answered `candidate` with a granted vote.
fn granted_vote(raft: &mut Raft, candidate: u64) -> bool {
    let mut granted = None;
    while let Some(mut ready) = raft.ready() {
        for message in std::mem::take(&mut ready.messages) {
            if message.to == NodeId(candidate) {
                if let MessageBody::VoteResponse { reject } = message.body {
                    granted = Some(!reject);
                }
            }
        }
        raft.advance(ready);
    }
    granted.unwrap_or_else(|| panic!("no vote response to {candidate}"))
}

fn founding_member() -> Raft {
    let mut raft = Raft::new(
        Config::new(WIPED, SEED),
        Start::New {
            voters: founding_voters(),
        },
    );
    while let Some(ready) = raft.ready() {
        raft.advance(ready);
    }
    raft
}

#[test]
fn a_member_never_votes_twice_in_one_term_while_its_disk_lives() {
    let mut member = founding_member();
    member.step(vote_request(1, 5));
    assert!(granted_vote(&mut member, 1), "the first vote of term 5");
    member.step(vote_request(2, 5));
    assert!(!granted_vote(&mut member, 2), "a second vote in term 5");
    assert_eq!(member.status().vote, Some(NodeId(1)));
}

#[test]
fn a_wiped_member_restarted_as_a_founder_forgets_its_vote() {
    let mut member = founding_member();
    member.step(vote_request(1, 5));
    assert!(granted_vote(&mut member, 1), "the first vote of term 5");
    // The disk dies; the process restarts with its original flags.
    drop(member);
    let mut restarted = founding_member();
    restarted.step(vote_request(2, 5));
    assert!(
        granted_vote(&mut restarted, 2),
        "with its hard state gone, the wiped member votes again in term 5: \
         this is why the runner never restarts a wiped member under its old identity"
    );
}

#[test]
fn a_joining_member_grants_no_vote_before_a_leader_contacted_it() {
    let mut joiner = Raft::new(Config::new(WIPED, SEED), Start::Join);
    joiner.step(vote_request(2, 5));
    assert!(
        !granted_vote(&mut joiner, 2),
        "a member that joins has no configuration and must not vote"
    );
    assert_eq!(joiner.status().vote, None);
}
