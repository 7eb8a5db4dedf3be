//! The leader's lease duties: renewals (local or forwarded from followers,
//! since only the leader holds deadlines), revoking expired leases through
//! the log, and periodic checkpoints of remaining TTLs.

use super::*;

impl Driver {
    // ----- leases -----

    pub(super) fn lease_keep_alive_locally(&mut self, id: LeaseId) -> Result<i64, KvError> {
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
                PeerResponse::LeaseKeepAlive(if self.is_leader() {
                    self.lease_keep_alive_locally(id).map_err(PeerError::from)
                } else {
                    Err(PeerError::NotLeader)
                })
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
        }
    }
}
