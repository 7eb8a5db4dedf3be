//! Elections and roles: randomized timeouts, pre-vote, voting, check-quorum
//! and leader transfer (the Raft paper §5.2, Ongaro's dissertation §9.6 for
//! pre-vote and §6.2 / §3.10 for check-quorum and leadership transfer).
//!
//! Every role change goes through one of the four `become_*` functions,
//! which assert that the transition is legal.

use tracing::{debug, info};

use super::entry::{EntryKind, Index, NodeId, Term};
use super::message::MessageBody;
use super::node::Raft;
use super::progress::Progress;
use super::quorum::{self, VoteResult};
use super::read_only::ReadOnly;
use super::ready::Role;

impl Raft {
    pub(crate) fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
            self.election_elapsed = 0;
            self.hup(false);
        }
    }

    pub(crate) fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.config.election_timeout_ticks {
            self.election_elapsed = 0;
            if self.config.check_quorum && !self.quorum_recently_active() {
                info!(id = %self.id, term = self.term.0, "lost contact with a quorum: stepping down");
                self.become_follower(self.term, None);
                return;
            }
            self.prune_removed_members(true);
            if let Some(transferee) = self.lead_transferee.take() {
                info!(id = %self.id, transferee = %transferee, "leader transfer timed out");
            }
        }
        if self.heartbeat_elapsed >= self.config.heartbeat_interval_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat(None);
        }
    }

    /// True when a quorum of voters was heard from since the last check;
    /// clears the record for the next one.
    fn quorum_recently_active(&mut self) -> bool {
        let voters = &self.conf_state.voters;
        let active = voters
            .iter()
            .filter(|&&id| id == self.id || self.progress.get(&id).is_some_and(|p| p.recent_active))
            .count();
        for progress in self.progress.values_mut() {
            progress.recent_active = false;
        }
        active >= quorum::majority(voters.len())
    }

    /// Starts an election: a pre-vote round first when configured, unless
    /// this is a leader transfer, which must not wait.
    pub(crate) fn hup(&mut self, transfer: bool) {
        if self.role == Role::Leader {
            debug!(id = %self.id, "already leader: no campaign");
            return;
        }
        if !self.promotable() {
            debug!(id = %self.id, "not a voter: no campaign");
            return;
        }
        if self.config.pre_vote && !transfer {
            self.become_pre_candidate();
        } else {
            self.become_candidate();
        }
        self.request_votes(transfer);
    }

    fn request_votes(&mut self, transfer: bool) {
        let pre_vote = self.role == Role::PreCandidate;
        self.votes_granted.insert(self.id);
        if self.tally_votes() {
            return;
        }
        let last_log_index = self.log.last_index();
        let last_log_term = self.log.last_term();
        let voters: Vec<NodeId> = self
            .conf_state
            .voters
            .iter()
            .copied()
            .filter(|&id| id != self.id)
            .collect();
        for voter in voters {
            if pre_vote {
                let term = Term(self.term.0 + 1);
                self.send_with_term(
                    voter,
                    term,
                    MessageBody::PreVote {
                        last_log_index,
                        last_log_term,
                    },
                );
            } else {
                self.send(
                    voter,
                    MessageBody::Vote {
                        last_log_index,
                        last_log_term,
                        transfer,
                    },
                );
            }
        }
    }

    pub(crate) fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        last_log_index: Index,
        last_log_term: Term,
        pre_vote: bool,
    ) {
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (pre_vote && term > self.term);
        let log_ok = self.log.is_up_to_date(last_log_index, last_log_term);
        #[cfg(madsim)]
        let log_ok = log_ok
            || self.config.planted_bug == Some(super::config::PlantedRaftBug::VoteIgnoringLog);
        let grant = can_vote && self.log.has_base() && log_ok;
        debug!(
            id = %self.id,
            from = %from,
            term = term.0,
            pre_vote,
            grant,
            "vote request"
        );
        if pre_vote {
            let response_term = if grant { term } else { self.term };
            self.send_with_term(
                from,
                response_term,
                MessageBody::PreVoteResponse { reject: !grant },
            );
            return;
        }
        if grant {
            assert!(
                self.vote.is_none() || self.vote == Some(from),
                "{} voting twice in term {}: {:?} then {from}",
                self.id,
                self.term,
                self.vote
            );
            self.vote = Some(from);
            self.election_elapsed = 0;
        }
        self.send(from, MessageBody::VoteResponse { reject: !grant });
    }

    pub(crate) fn handle_vote_response(&mut self, from: NodeId, reject: bool) {
        if reject {
            self.votes_refused.insert(from);
        } else {
            self.votes_granted.insert(from);
        }
        self.tally_votes();
    }

    /// Acts on the votes counted so far; returns true when the election ended.
    fn tally_votes(&mut self) -> bool {
        match quorum::vote_result(
            &self.conf_state.voters,
            &self.votes_granted,
            &self.votes_refused,
        ) {
            VoteResult::Won => {
                if self.role == Role::PreCandidate {
                    self.become_candidate();
                    self.request_votes(false);
                } else {
                    self.become_leader();
                }
                true
            }
            VoteResult::Lost => {
                self.become_follower(self.term, None);
                true
            }
            VoteResult::Pending => false,
        }
    }

    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        assert!(
            term >= self.term,
            "term would decrease from {} to {term}",
            self.term
        );
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        let previous = self.role;
        self.role = Role::Follower;
        self.leader = leader;
        self.reset_role_state();
        if previous != Role::Follower {
            info!(id = %self.id, term = self.term.0, from = ?previous, "became follower");
        }
    }

    fn become_pre_candidate(&mut self) {
        assert!(
            self.role != Role::Leader,
            "leader {} cannot become pre-candidate",
            self.id
        );
        self.role = Role::PreCandidate;
        self.leader = None;
        self.reset_role_state();
        info!(id = %self.id, term = self.term.0, "became pre-candidate");
    }

    fn become_candidate(&mut self) {
        assert!(
            self.role != Role::Leader,
            "leader {} cannot become candidate",
            self.id
        );
        self.term = Term(self.term.0 + 1);
        self.vote = Some(self.id);
        self.role = Role::Candidate;
        self.leader = None;
        self.reset_role_state();
        info!(id = %self.id, term = self.term.0, "became candidate");
    }

    fn become_leader(&mut self) {
        assert!(
            self.role == Role::Candidate,
            "{:?} {} cannot become leader",
            self.role,
            self.id
        );
        assert_eq!(
            self.vote,
            Some(self.id),
            "leader must have voted for itself"
        );
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.reset_role_state();
        let next_index = Index(self.log.last_index().0 + 1);
        let members: Vec<NodeId> = self
            .conf_state
            .voters
            .iter()
            .chain(&self.conf_state.learners)
            .copied()
            .collect();
        for id in members {
            if id != self.id {
                let mut progress = Progress::new(next_index, self.config.inflight_messages_max);
                // Give every follower one election timeout to answer
                // before check-quorum counts it as gone.
                progress.recent_active = true;
                self.progress.insert(id, progress);
            }
        }
        info!(term = self.term.0, leader = %self.id, "became leader");
        // The no-op commits every earlier-term entry (§5.4.2); until it does,
        // membership changes and reads wait.
        self.leader_append(EntryKind::Normal, Vec::new())
            .unwrap_or_else(|error| panic!("a new leader must accept its no-op: {error}"));
        self.pending_conf_index = self.log.last_index();
    }

    /// Clears everything that belongs to one role in one term.
    fn reset_role_state(&mut self) {
        self.reset_timers();
        self.votes_granted.clear();
        self.votes_refused.clear();
        self.progress.clear();
        self.lead_transferee = None;
        self.pending_conf_index = Index(0);
        self.uncommitted_bytes = 0;
        self.read_only = ReadOnly::default();
        self.broadcast_pending = false;
    }

    /// Begins handing leadership to `to`: catch it up, then tell it to
    /// campaign at once (TimeoutNow).
    pub(crate) fn start_transfer(&mut self, to: NodeId) {
        assert!(self.role == Role::Leader, "transfer from a {:?}", self.role);
        if to == self.id {
            debug!(id = %self.id, "transfer to the leader itself ignored");
            return;
        }
        if !self.conf_state.voters.contains(&to) || !self.progress.contains_key(&to) {
            debug!(id = %self.id, to = %to, "transfer to a non-voter ignored");
            return;
        }
        if self.lead_transferee == Some(to) {
            return;
        }
        info!(id = %self.id, term = self.term.0, transferee = %to, "leader transfer started");
        self.lead_transferee = Some(to);
        // The transfer must finish within one election timeout.
        self.election_elapsed = 0;
        if self
            .progress
            .get(&to)
            .is_some_and(|p| p.match_index == self.log.last_index())
        {
            self.send(to, MessageBody::TimeoutNow);
        } else {
            self.send_append(to, true);
        }
    }
}
