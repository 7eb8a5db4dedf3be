//! The leader's lease duties: renewals (local or forwarded from followers,
//! since only the leader holds deadlines), revoking expired leases through
//! the log, and periodic checkpoints of remaining TTLs.

use super::*;

impl Driver {
    // ----- leases -----

    /// A keep-alive on the leader. The answer goes to `answer` at once, or,
    /// when the lease carries a checkpointed remaining TTL, once a
    /// checkpoint of 0 clearing it has committed and applied (etcd 3.5's
    /// `Renew` waits for that checkpoint the same way): until then a new
    /// leader would restart the lease from the stale remainder, shorter
    /// than the TTL this keep-alive promises (found by the simulator once
    /// checkpoints fired: swarm-quick seeds 176016817, 355256078, …).
    pub(super) fn lease_keep_alive_on_leader(&mut self, id: LeaseId, answer: KeepAliveAnswer) {
        #[cfg(madsim)]
        if self.planted(PlantedBug::KeepAliveBeforeCheckpoint) {
            let result = self.lease_keep_alive_locally(id);
            drop(self.store.lease_renewal_checkpoints());
            self.answer_keep_alive(answer, result);
            return;
        }
        let result = self.lease_keep_alive_locally(id);
        let mut checkpoints = self.store.lease_renewal_checkpoints();
        // A periodic checkpoint proposed before this renewal and not yet
        // applied would leave the remainder it measured, older than this
        // renewal: clear it after that one too.
        if result.is_ok()
            && self.periodic_checkpoint_index > self.applied_index
            && !checkpoints.iter().any(|checkpoint| checkpoint.id == id)
        {
            checkpoints.push(LeaseCheckpoint {
                id,
                remaining_ttl_ms: 0,
            });
        }
        if checkpoints.is_empty() {
            self.answer_keep_alive(answer, result);
            return;
        }
        let Ok(ttl) = result else {
            self.answer_keep_alive(answer, result);
            return;
        };
        let waits = checkpoints.iter().any(|checkpoint| checkpoint.id == id);
        let proposed = self.propose_internal(Command::LeaseCheckpoint { checkpoints });
        if !waits {
            self.answer_keep_alive(answer, Ok(ttl));
        } else if !proposed {
            self.answer_keep_alive(answer, Err(KvError::NotLeader));
        } else {
            let index = self.raft.last_index();
            debug!(
                lease = id,
                index = index.0,
                "keep-alive waits for its checkpoint of 0"
            );
            self.keep_alives_awaiting_checkpoint.push(KeepAliveWaiter {
                id,
                index,
                term: self.raft.term(),
                answer,
            });
        }
    }

    /// Answers the keep-alives whose clearing checkpoint has applied: renewed
    /// again from now if that checkpoint is the one this leader proposed,
    /// refused if the log replaced it.
    pub(super) fn answer_checkpointed_keep_alives(&mut self) {
        if self.keep_alives_awaiting_checkpoint.is_empty() {
            return;
        }
        let applied = self.applied_index;
        let (ready, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.keep_alives_awaiting_checkpoint)
                .into_iter()
                .partition(|waiter| waiter.index <= applied);
        self.keep_alives_awaiting_checkpoint = waiting;
        for waiter in ready {
            let ours = self.is_leader() && self.raft.term_of(waiter.index) == Some(waiter.term);
            let result = if ours {
                match self.store.lease_renew(waiter.id, self.now_ms()) {
                    Ok(ttl) => Ok(ttl),
                    Err(KvError::LeaseNotFound) => Ok(0),
                    Err(error) => Err(error),
                }
            } else {
                Err(KvError::NotLeader)
            };
            self.answer_keep_alive(waiter.answer, result);
        }
    }

    /// Refuses every keep-alive still waiting for its checkpoint (this
    /// member stopped leading).
    pub(super) fn fail_checkpointed_keep_alives(&mut self) {
        for waiter in std::mem::take(&mut self.keep_alives_awaiting_checkpoint) {
            self.answer_keep_alive(waiter.answer, Err(KvError::NotLeader));
        }
    }

    fn answer_keep_alive(&mut self, answer: KeepAliveAnswer, result: Result<i64, KvError>) {
        match answer {
            KeepAliveAnswer::Local(reply) => {
                let header = self.header();
                let _ = reply.send(result.map(|ttl| (header, ttl)).map_err(NodeError::from));
            }
            KeepAliveAnswer::Peer { from, request_id } => {
                let response = PeerResponse::LeaseKeepAlive(result.map_err(|error| match error {
                    KvError::NotLeader => PeerError::NotLeader,
                    error => PeerError::from(error),
                }));
                let message = PeerMessage::Response {
                    request_id,
                    response,
                };
                if let Err(error) = self.transport.send(from, message) {
                    debug!(peer = %from, %error, "cannot answer a forwarded keep-alive");
                }
            }
        }
    }

    fn lease_keep_alive_locally(&mut self, id: LeaseId) -> Result<i64, KvError> {
        // etcd 3.5's rule (ensureLeadership, then waitAppliedIndex): renew
        // only once this leader has applied an entry of its own term. Until
        // then a revoke an earlier leader proposed may still sit in the log,
        // to commit with this leader's first entry: a renewal before it
        // would promise a TTL the lease will not live (found by the
        // simulator: swarm seeds 389 and 442).
        if self.raft.term_of(self.applied_index) != Some(self.raft.term()) {
            debug!(
                lease = id,
                "keep-alive before this leader applied its own term"
            );
            return Err(KvError::NotLeader);
        }
        match self.store.lease_renew(id, self.now_ms()) {
            Ok(ttl) => Ok(ttl),
            // etcd answers a keep-alive of an unknown lease with TTL 0.
            Err(KvError::LeaseNotFound) => Ok(0),
            Err(error) => Err(error),
        }
    }

    pub(super) fn forward(&mut self, request: PeerRequest, reply: ForwardReply) {
        if self.pending_requests() >= PENDING_REQUESTS_MAX {
            reply.fail(NodeError::TooManyRequests);
            return;
        }
        let Some(leader) = self.leader else {
            reply.fail(NodeError::NoLeader);
            return;
        };
        let request_id = self.next_request_id();
        let message = PeerMessage::Request {
            request_id,
            request,
        };
        if let Err(error) = self.transport.send(leader, message) {
            debug!(%error, "cannot forward to the leader");
            reply.fail(NodeError::NoLeader);
            return;
        }
        let deadline = self.deadline();
        self.pending_forwards
            .insert(request_id, ForwardWaiter { reply, deadline });
    }

    pub(super) fn on_peer_request(&mut self, from: NodeId, request_id: u64, request: PeerRequest) {
        let response = match request {
            PeerRequest::LeaseKeepAlive { id } => {
                if self.is_leader() {
                    self.lease_keep_alive_on_leader(id, KeepAliveAnswer::Peer { from, request_id });
                    return;
                }
                PeerResponse::LeaseKeepAlive(Err(PeerError::NotLeader))
            }
            PeerRequest::LeaseTimeToLive { id, keys } => {
                PeerResponse::LeaseTimeToLive(if self.is_leader() {
                    Ok(self.store.lease_time_to_live(id, keys, self.now_ms()))
                } else {
                    Err(PeerError::NotLeader)
                })
            }
        };
        let message = PeerMessage::Response {
            request_id,
            response,
        };
        if let Err(error) = self.transport.send(from, message) {
            debug!(peer = %from, %error, "cannot answer a forwarded request");
        }
    }

    pub(super) fn on_peer_response(&mut self, request_id: u64, response: PeerResponse) {
        let Some(waiter) = self.pending_forwards.remove(&request_id) else {
            trace!(request_id, "late or unknown forwarded response");
            return;
        };
        let header = self.header();
        let to_node_error = |error: PeerError| match error {
            PeerError::NotLeader => NodeError::LeaderChanged,
            PeerError::Kv(error) => NodeError::Kv(error),
        };
        match (waiter.reply, response) {
            (ForwardReply::KeepAlive(reply), PeerResponse::LeaseKeepAlive(result)) => {
                let _ = reply.send(result.map(|ttl| (header, ttl)).map_err(to_node_error));
            }
            (ForwardReply::TimeToLive(reply), PeerResponse::LeaseTimeToLive(result)) => {
                let _ = reply.send(result.map(|ttl| (header, ttl)).map_err(to_node_error));
            }
            (reply, response) => {
                warn!(
                    request_id,
                    ?response,
                    "forwarded response of the wrong kind"
                );
                reply.fail(NodeError::LeaderChanged);
            }
        }
    }

    pub(super) fn revoke_expired_leases(&mut self) {
        let now = Instant::now();
        let expired = self.store.lease_expired(self.now_ms());
        let mut proposed = 0;
        for id in expired {
            if proposed == LEASE_REVOKES_PER_TICK_MAX {
                break;
            }
            if self
                .lease_revokes_pending
                .get(&id)
                .is_some_and(|&retry| retry > now)
            {
                continue;
            }
            if self.propose_internal(Command::LeaseRevoke { id }) {
                debug!(lease = id, "lease expired; revoking");
                self.lease_revokes_pending.insert(id, self.deadline());
                proposed += 1;
            }
        }
    }

    pub(super) fn checkpoint_leases(&mut self) {
        let checkpoints: Vec<LeaseCheckpoint> = self.store.lease_checkpoints(self.now_ms());
        for chunk in checkpoints.chunks(LEASE_CHECKPOINTS_PER_ENTRY_MAX) {
            let command = Command::LeaseCheckpoint {
                checkpoints: chunk.to_vec(),
            };
            if !self.propose_internal(command) {
                return;
            }
            self.periodic_checkpoint_index = self.raft.last_index();
        }
    }
}

/// Where a keep-alive's answer goes.
pub(super) enum KeepAliveAnswer {
    /// A client of this member.
    Local(Reply<(ResponseHeader, i64)>),
    /// A follower that forwarded it.
    Peer {
        /// The follower.
        from: NodeId,
        /// Its request ID.
        request_id: u64,
    },
}

/// A keep-alive answered once the checkpoint of 0 at `index` has applied.
pub(super) struct KeepAliveWaiter {
    /// The lease.
    pub(super) id: LeaseId,
    /// Where the checkpoint was proposed.
    pub(super) index: Index,
    /// The term it was proposed in.
    pub(super) term: Term,
    /// Where the answer goes.
    pub(super) answer: KeepAliveAnswer,
}
