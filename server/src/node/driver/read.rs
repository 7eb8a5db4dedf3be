//! Reads: serializable ones answered from the local store at once,
//! linearizable ones batched into ReadIndex rounds and answered once the
//! applied index reaches the round's read index.
//!
//! At most one round is in flight per member: reads that arrive meanwhile
//! queue for the next one, which starts as soon as the current one is
//! answered. Under load a round then confirms hundreds of reads with one
//! heartbeat exchange instead of a handful; when idle a read starts its
//! round at once. A round that seems lost (a dropped message) stops
//! holding the queue back after a tick.

use super::*;

impl Driver {
    // ----- reads -----

    /// Starts one ReadIndex round for every read queued, unless a round
    /// started this tick is still in flight.
    pub(super) fn flush_reads(&mut self) {
        if self.reads_unsent.is_empty() {
            return;
        }
        if !self.reads_in_flight.is_empty() && self.read_round_tick == self.ticks {
            return;
        }
        self.read_round_tick = self.ticks;
        let reads = std::mem::take(&mut self.reads_unsent);
        let batch_id = self.next_request_id();
        match self.raft.read_index(batch_id.to_be_bytes().to_vec()) {
            Ok(()) => {
                let deadline = self.deadline();
                trace!(batch_id, reads = reads.len(), "read index requested");
                self.reads_in_flight
                    .insert(batch_id, ReadBatch { reads, deadline });
            }
            Err(error) => {
                let error = propose_error(error);
                for read in reads {
                    read.fail(error.clone());
                }
            }
        }
    }

    pub(super) fn on_read_states(&mut self, read_states: Vec<ReadState>) {
        for read_state in read_states {
            let Ok(bytes) = <[u8; 8]>::try_from(read_state.context.as_slice()) else {
                warn!(context = ?read_state.context, "read state with a foreign context");
                continue;
            };
            let batch_id = u64::from_be_bytes(bytes);
            if let Some(batch) = self.reads_in_flight.remove(&batch_id) {
                self.reads_awaiting_apply.push((read_state.index, batch));
            }
        }
        if self.reads_in_flight.is_empty() && !self.reads_unsent.is_empty() {
            // The reads queued behind the answered round go next turn.
            self.more_work = true;
        }
    }

    /// Answers the reads whose read index is applied.
    pub(super) fn answer_applied_reads(&mut self) {
        let applied = self.applied_index;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_awaiting_apply)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.reads_awaiting_apply = waiting;
        for (_, batch) in ready {
            for read in batch.reads {
                self.answer_read(read);
            }
        }
    }

    pub(super) fn answer_read(&mut self, read: ReadRequest) {
        let header = self.header();
        match read {
            ReadRequest::Range { request, reply } => {
                let result = self.store.range(&request).map_err(NodeError::from);
                let _ = reply.send(result.map(|response| (header, response)));
            }
            ReadRequest::LeaseLeases { reply } => {
                let _ = reply.send(Ok((header, self.store.leases())));
            }
            ReadRequest::MemberList { reply } => {
                let _ = reply.send(Ok((header, self.members.values().cloned().collect())));
            }
        }
    }
}
