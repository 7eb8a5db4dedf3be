//! Waiters: the requests the driver owes an answer, and their deadlines.

use super::*;

/// A client proposal awaiting its apply.
#[derive(Debug)]
pub(super) struct ProposalWaiter {
    /// Compared on apply: a request ID alone could collide with another
    /// member's (16 bits of member prefix).
    pub(super) command: Command,
    pub(super) reply: Reply<(ResponseHeader, CommandResponse)>,
}

/// Reads sharing one ReadIndex round.
#[derive(Debug)]
pub(super) struct ReadBatch {
    pub(super) reads: Vec<ReadRequest>,
    pub(super) deadline: Instant,
}

/// The reply channel of a request forwarded to the leader.
#[derive(Debug)]
pub(super) enum ForwardReply {
    KeepAlive(Reply<(ResponseHeader, i64)>),
    TimeToLive(Reply<(ResponseHeader, cairn_core::kv::LeaseTimeToLiveResponse)>),
}

impl ForwardReply {
    pub(super) fn fail(self, error: NodeError) {
        match self {
            ForwardReply::KeepAlive(reply) => drop(reply.send(Err(error))),
            ForwardReply::TimeToLive(reply) => drop(reply.send(Err(error))),
        }
    }
}

#[derive(Debug)]
pub(super) struct ForwardWaiter {
    pub(super) reply: ForwardReply,
    pub(super) deadline: Instant,
}

/// A membership change awaiting its apply.
#[derive(Debug)]
pub(super) struct ConfChangeWaiter {
    pub(super) change: ConfChange,
    pub(super) member: Member,
    pub(super) reply: Reply<(ResponseHeader, Member, Vec<Member>)>,
    pub(super) deadline: Instant,
    /// Raft accepted it (false while another change is pending).
    pub(super) proposed: bool,
}

/// A MoveLeader awaiting the new leader.
#[derive(Debug)]
pub(super) struct LeaderMoveWaiter {
    pub(super) target: NodeId,
    pub(super) reply: Reply<ResponseHeader>,
    pub(super) deadline: Instant,
}

/// A graceful shutdown in progress.
#[derive(Debug)]
pub(super) struct ShutdownState {
    pub(super) replies: Vec<Reply<()>>,
    /// Stop at this time even if leadership did not move.
    pub(super) deadline: Instant,
}

impl Driver {
    // ----- timeouts -----

    pub(super) fn expire_waiters(&mut self) {
        let now = Instant::now();
        while let Some(&(deadline, request_id)) = self.proposal_deadlines.front() {
            if deadline > now {
                break;
            }
            self.proposal_deadlines.pop_front();
            if let Some(waiter) = self.pending_proposals.remove(&request_id) {
                debug!(request_id, "proposal timed out");
                self.metrics
                    .proposals_failed
                    .fetch_add(1, Ordering::Relaxed);
                let _ = waiter.reply.send(Err(NodeError::Timeout));
            }
        }
        let expired: Vec<u64> = self
            .reads_in_flight
            .iter()
            .filter(|(_, batch)| batch.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            if let Some(batch) = self.reads_in_flight.remove(&id) {
                for read in batch.reads {
                    read.fail(NodeError::Timeout);
                }
            }
        }
        let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_awaiting_apply)
            .into_iter()
            .partition(|(_, batch)| batch.deadline <= now);
        self.reads_awaiting_apply = waiting;
        for (_, batch) in expired {
            for read in batch.reads {
                read.fail(NodeError::Timeout);
            }
        }
        let expired: Vec<u64> = self
            .pending_forwards
            .iter()
            .filter(|(_, waiter)| waiter.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            if let Some(waiter) = self.pending_forwards.remove(&id) {
                waiter.reply.fail(NodeError::Timeout);
            }
        }
        let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_conf_changes)
            .into_iter()
            .partition(|waiter| waiter.deadline <= now);
        self.pending_conf_changes = waiting;
        for waiter in expired {
            let _ = waiter.reply.send(Err(NodeError::Timeout));
        }
        let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_leader_moves)
            .into_iter()
            .partition(|waiter| waiter.deadline <= now);
        self.pending_leader_moves = waiting;
        for waiter in expired {
            let _ = waiter.reply.send(Err(NodeError::Timeout));
        }
        self.update_pending_metric();
    }

    /// Fails every waiter (the node is stopping).
    pub(super) fn fail_all(&mut self, error: NodeError) {
        for (_, waiter) in std::mem::take(&mut self.pending_proposals) {
            let _ = waiter.reply.send(Err(error.clone()));
        }
        self.proposal_deadlines.clear();
        for read in std::mem::take(&mut self.reads_unsent) {
            read.fail(error.clone());
        }
        for (_, batch) in std::mem::take(&mut self.reads_in_flight) {
            for read in batch.reads {
                read.fail(error.clone());
            }
        }
        for (_, batch) in std::mem::take(&mut self.reads_awaiting_apply) {
            for read in batch.reads {
                read.fail(error.clone());
            }
        }
        for (_, waiter) in std::mem::take(&mut self.pending_forwards) {
            waiter.reply.fail(error.clone());
        }
        for waiter in std::mem::take(&mut self.pending_conf_changes) {
            let _ = waiter.reply.send(Err(error.clone()));
        }
        for waiter in std::mem::take(&mut self.pending_leader_moves) {
            let _ = waiter.reply.send(Err(error.clone()));
        }
        // Closing the streams ends every session's `next()`.
        self.watch_streams.clear();
        self.requests.close();
        while let Ok(request) = self.requests.try_recv() {
            fail_request(request, error.clone());
        }
        self.update_pending_metric();
        self.metrics.has_leader.store(false, Ordering::Relaxed);
        self.metrics.is_leader.store(false, Ordering::Relaxed);
    }
}
