//! Leadership: role and leader changes (lease promotion, failing reads that
//! cannot complete), MoveLeader, and the graceful shutdown that hands
//! leadership to the most up-to-date voter first.

use super::*;

impl Driver {
    // ----- leadership -----

    pub(super) fn move_leader(&mut self, target: NodeId, reply: Reply<ResponseHeader>) {
        if !self.is_leader() {
            let _ = reply.send(Err(NodeError::NotLeader));
            return;
        }
        if target == self.config.member_id {
            let _ = reply.send(Ok(self.header()));
            return;
        }
        if !self.raft.status().conf_state.voters.contains(&target) {
            let _ = reply.send(Err(NodeError::BadLeaderTransferee));
            return;
        }
        info!(target = %target, "moving leadership");
        self.raft.transfer_leader(target);
        let deadline = self.deadline();
        self.pending_leader_moves.push(LeaderMoveWaiter {
            target,
            reply,
            deadline,
        });
    }

    pub(super) fn begin_shutdown(&mut self, reply: Reply<()>) {
        if let Some(shutdown) = &mut self.shutdown {
            shutdown.replies.push(reply);
            return;
        }
        let timeout = SHUTDOWN_TRANSFER_TIMEOUT.min(self.config.request_timeout);
        let mut shutdown = ShutdownState {
            replies: vec![reply],
            deadline: Instant::now() + timeout,
        };
        if self.is_leader() {
            let status = self.raft.status();
            // The most up-to-date other voter; ties go to the lowest ID.
            let target = status
                .conf_state
                .voters
                .iter()
                .filter(|&&id| id != self.config.member_id)
                .map(|&id| (status.match_index.get(&id).copied().unwrap_or(Index(0)), id))
                .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            if let Some((match_index, target)) = target {
                info!(target = %target, match_index = match_index.0,
                    "shutting down: transferring leadership");
                self.raft.transfer_leader(target);
            } else {
                shutdown.deadline = Instant::now();
            }
        } else {
            shutdown.deadline = Instant::now();
        }
        self.shutdown = Some(shutdown);
    }

    pub(super) fn should_stop(&self) -> bool {
        if self.removed {
            return true;
        }
        match &self.shutdown {
            Some(shutdown) => !self.is_leader() || Instant::now() >= shutdown.deadline,
            None => false,
        }
    }

    pub(super) fn on_soft_state(&mut self, leader: Option<NodeId>, role: Role) {
        let was_leader = self.is_leader();
        if leader != self.leader {
            if leader.is_some() {
                self.metrics.leader_changes.fetch_add(1, Ordering::Relaxed);
            }
            info!(leader = ?leader.map(|id| id.to_string()), term = self.term.0, "leader changed");
            // A ReadIndex round may never complete under a new leader.
            for (_, batch) in std::mem::take(&mut self.reads_in_flight) {
                for read in batch.reads {
                    read.fail(NodeError::LeaderChanged);
                }
            }
            let header = self.header();
            let (moved, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_leader_moves)
                .into_iter()
                .partition(|waiter| Some(waiter.target) == leader);
            self.pending_leader_moves = waiting;
            for waiter in moved {
                let _ = waiter.reply.send(Ok(header));
            }
        }
        if role != self.role {
            info!(role = ?role, term = self.term.0, "role changed");
        }
        self.leader = leader;
        self.role = role;
        let is_leader = self.is_leader();
        if is_leader && !was_leader {
            self.store.lease_promote(self.now_ms());
        } else if was_leader && !is_leader {
            self.store.lease_demote();
            self.lease_revokes_pending.clear();
            self.fail_checkpointed_keep_alives();
        }
        self.metrics
            .has_leader
            .store(leader.is_some(), Ordering::Relaxed);
        self.metrics.is_leader.store(is_leader, Ordering::Relaxed);
    }
}
