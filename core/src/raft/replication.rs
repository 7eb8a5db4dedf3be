//! Log replication: the leader's side (appends with per-follower flow
//! control, heartbeats, chunked snapshots, the commit rule) and the
//! follower's side (AppendEntries, heartbeats, snapshot assembly and
//! restore). The Raft paper §5.3–5.4 and §7.

use tracing::{debug, info};

use super::entry::{Entry, Index, NodeId, Snapshot, SnapshotMetadata, Term};
use super::log::entry_bytes;
use super::message::MessageBody;
use super::node::{IncomingSnapshot, Raft};
use super::progress::ProgressState;
use super::quorum;
use super::ready::Role;

impl Raft {
    // ---- Leader ----

    /// Sends `to` what it needs next, if its flow control allows. With
    /// `allow_empty`, an append without entries still goes (to carry the
    /// commit index or probe). Returns true when a message was sent.
    pub(crate) fn send_append(&mut self, to: NodeId, allow_empty: bool) -> bool {
        let Some(progress) = self.progress.get(&to) else {
            return false;
        };
        if let ProgressState::Snapshot { .. } = progress.state {
            return self.send_snapshot_chunk(to);
        }
        if progress.is_paused() {
            return false;
        }
        let next_index = progress.next_index;
        let prev_log_index = Index(next_index.0 - 1);
        let Some(prev_log_term) = self.log.term_of(prev_log_index) else {
            // Compacted away: only the snapshot can catch it up.
            let snapshot_index = self.log.snapshot_index();
            debug!(
                id = %self.id,
                to = %to,
                next = next_index.0,
                snapshot = snapshot_index.0,
                "follower needs the snapshot"
            );
            if let Some(progress) = self.progress.get_mut(&to) {
                progress.become_snapshot(snapshot_index);
            }
            return self.send_snapshot_chunk(to);
        };
        let entries = self
            .log
            .entries_from(next_index, self.config.message_bytes_max);
        if entries.is_empty() && !allow_empty {
            return false;
        }
        let commit = self.log.committed();
        if let Some(progress) = self.progress.get_mut(&to) {
            match progress.state {
                ProgressState::Replicate => {
                    if let Some(last) = entries.last() {
                        progress.next_index = Index(last.index.0 + 1);
                        progress.inflights.add(last.index);
                    }
                }
                ProgressState::Probe => progress.message_outstanding = true,
                ProgressState::Snapshot { .. } => unreachable!("handled above"),
            }
        }
        self.send(
            to,
            MessageBody::Append {
                prev_log_index,
                prev_log_term,
                entries,
                commit,
            },
        );
        true
    }

    /// Sends the next chunk of the snapshot to `to`, one chunk in flight at a time.
    pub(crate) fn send_snapshot_chunk(&mut self, to: NodeId) -> bool {
        let Some(snapshot) = self.log.snapshot() else {
            panic!("leader {} has no snapshot to send", self.id);
        };
        let metadata = snapshot.metadata.clone();
        let total_bytes = snapshot.data.len() as u64;
        let Some(progress) = self.progress.get_mut(&to) else {
            return false;
        };
        let ProgressState::Snapshot { index, offset } = progress.state else {
            return false;
        };
        if progress.message_outstanding {
            return false;
        }
        // The leader compacted again since: send the newer snapshot from the start.
        let offset = if index == metadata.index {
            offset.min(total_bytes)
        } else {
            0
        };
        progress.state = ProgressState::Snapshot {
            index: metadata.index,
            offset,
        };
        progress.message_outstanding = true;
        let end = offset
            .saturating_add(self.config.snapshot_chunk_bytes_max)
            .min(total_bytes);
        let data = snapshot.data[offset as usize..end as usize].to_vec();
        let done = end == total_bytes;
        self.send(
            to,
            MessageBody::Snapshot {
                metadata,
                offset,
                total_bytes,
                data,
                done,
            },
        );
        true
    }

    /// Sends every follower what it needs; in replicate state, as many
    /// appends as its window allows.
    pub(crate) fn broadcast_append(&mut self) {
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for peer in peers {
            if self.send_append(peer, true) {
                self.send_more(peer);
            }
        }
    }

    /// Fills `to`'s pipelining window with whatever entries remain.
    fn send_more(&mut self, to: NodeId) {
        // Bounded: each append either carries new entries (the log is
        // finite) or the progress is paused (probe, snapshot, full window).
        while self
            .progress
            .get(&to)
            .is_some_and(|p| p.state == ProgressState::Replicate)
            && self.send_append(to, false)
        {}
    }

    /// Heartbeats to every follower, carrying the latest read round (or
    /// `round`, when starting one).
    pub(crate) fn broadcast_heartbeat(&mut self, round: Option<u64>) {
        let context = match round {
            Some(round) => round.to_be_bytes().to_vec(),
            None => self.read_only.heartbeat_context(),
        };
        let committed = self.log.committed();
        for progress in self.progress.values_mut() {
            progress.sent_at_heartbeat = Index(progress.next_index.0 - 1);
        }
        let peers: Vec<(NodeId, Index)> = self
            .progress
            .iter()
            .map(|(&id, p)| (id, p.match_index))
            .collect();
        for (peer, match_index) in peers {
            let commit = committed.min(match_index);
            self.send(
                peer,
                MessageBody::Heartbeat {
                    commit,
                    context: context.clone(),
                },
            );
        }
    }

    /// Done once per Ready: start a read round and broadcast new entries
    /// or a new commit index, so that many requests share one message.
    pub(crate) fn flush_leader(&mut self) {
        if let Some(round) = self.read_only.start_round() {
            self.broadcast_heartbeat(Some(round));
            self.release_reads();
        }
        if self.broadcast_pending {
            self.broadcast_pending = false;
            self.broadcast_append();
        }
    }

    /// Advances the commit index to what a quorum of voters has persisted,
    /// if that entry is of the current term. Returns true when it moved.
    pub(crate) fn maybe_commit(&mut self) -> bool {
        if self.role != Role::Leader {
            return false;
        }
        let persisted = self.log.persisted();
        let quorum_index = quorum::committed_index(&self.conf_state.voters, |id| {
            if id == self.id {
                persisted
            } else {
                self.progress.get(&id).map_or(Index(0), |p| p.match_index)
            }
        });
        #[cfg(madsim)]
        let quorum_index = if self.config.planted_bug
            == Some(super::config::PlantedRaftBug::CommitWithoutQuorum)
        {
            persisted
        } else {
            quorum_index
        };
        let previous = self.log.committed();
        if !self.log.maybe_commit(quorum_index, self.term) {
            return false;
        }
        debug!(id = %self.id, term = self.term.0, commit = quorum_index.0, "commit advanced");
        self.on_commit_advanced(previous);
        true
    }

    fn on_commit_advanced(&mut self, previous: Index) {
        let committed = self.log.committed();
        let newly: u64 = self
            .log
            .entries_between(Index(previous.0 + 1), Index(committed.0 + 1))
            .iter()
            .filter(|e| e.term == self.term)
            .map(entry_bytes)
            .sum();
        self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(newly);
        self.broadcast_pending = true;
        if self.log.term_of(previous) != Some(self.term) && self.committed_in_current_term() {
            // First commit of this term: reads held back may now be served.
            for (context, requester) in self.read_only.take_waiting() {
                self.read_only.add(context, requester, committed);
            }
        }
        self.prune_removed_members(false);
        if committed >= self.conf_index && !self.conf_state.voters.contains(&self.id) {
            // Removed, and the removal is committed: tell the followers the
            // commit index, hand leadership to the most up-to-date voter
            // (no waiting for an election timeout), and step down for good.
            info!(
                id = %self.id,
                term = self.term.0,
                commit = committed.0,
                "removed from the configuration: stepping down"
            );
            self.broadcast_pending = false;
            self.broadcast_append();
            let last_index = self.log.last_index();
            let successor = self
                .conf_state
                .voters
                .iter()
                .filter_map(|id| self.progress.get(id).map(|p| (p.match_index, *id)))
                .filter(|(match_index, _)| *match_index == last_index)
                .max()
                .map(|(_, id)| id);
            if let Some(successor) = successor {
                self.send(successor, MessageBody::TimeoutNow);
            }
            self.become_follower(self.term, None);
        }
    }

    /// Forgets members whose removal is committed. Each is first told the
    /// commit index, so that its driver applies the entry that removed it
    /// and can shut down; one that has not yet acknowledged that entry is
    /// kept (and replicated to) until it does, or until `force` (once per
    /// election timeout).
    pub(crate) fn prune_removed_members(&mut self, force: bool) {
        let committed = self.log.committed();
        if committed < self.conf_index {
            return;
        }
        let conf_index = self.conf_index;
        let removed: Vec<(NodeId, Index)> = self
            .progress
            .iter()
            .filter(|(id, _)| {
                !self.conf_state.voters.contains(id) && !self.conf_state.learners.contains(id)
            })
            .filter(|(_, progress)| force || progress.match_index >= conf_index)
            .map(|(&id, progress)| (id, progress.match_index))
            .collect();
        for (id, match_index) in removed {
            debug!(id = %self.id, removed = %id, "forgetting removed member");
            let commit = committed.min(match_index);
            self.send(
                id,
                MessageBody::Heartbeat {
                    commit,
                    context: Vec::new(),
                },
            );
            self.progress.remove(&id);
        }
    }

    pub(crate) fn handle_append_response(
        &mut self,
        from: NodeId,
        reject: bool,
        index: Index,
        reject_hint: Index,
        reject_hint_term: Term,
    ) {
        let snapshot_index = self.log.snapshot_index();
        let first_index = self.log.first_index();
        let last_index = self.log.last_index();
        let match_hint = if reject_hint_term > Term(0) {
            self.log
                .find_conflict_by_term(reject_hint, reject_hint_term)
                .0
        } else {
            reject_hint
        };
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.recent_active = true;
        if reject {
            debug!(
                id = %self.id,
                from = %from,
                rejected = index.0,
                hint = reject_hint.0,
                "append rejected"
            );
            if !progress.maybe_decrease_to(index, match_hint) {
                return;
            }
            if index <= snapshot_index {
                // It cannot even vouch for our snapshot point (a joining
                // node with no base): only the snapshot helps.
                progress.become_snapshot(snapshot_index);
            } else if progress.state == ProgressState::Replicate {
                progress.become_probe();
            }
            self.send_append(from, true);
            return;
        }
        if !progress.maybe_update(index) {
            return;
        }
        match progress.state {
            ProgressState::Probe => progress.become_replicate(),
            ProgressState::Snapshot { .. } if progress.match_index.0 + 1 >= first_index.0 => {
                progress.become_probe();
                progress.become_replicate();
            }
            _ => {}
        }
        let caught_up = progress.match_index == last_index;
        self.prune_removed_members(false);
        if self.maybe_commit() {
            if self.role != Role::Leader {
                return;
            }
        } else {
            self.send_more(from);
        }
        if caught_up && self.lead_transferee == Some(from) {
            info!(id = %self.id, transferee = %from, "transferee caught up: timeout now");
            self.send(from, MessageBody::TimeoutNow);
        }
    }

    pub(crate) fn handle_heartbeat_response(&mut self, from: NodeId, context: Vec<u8>) {
        let last_index = self.log.last_index();
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.recent_active = true;
        // An answer means the follower is reachable: resume a stalled probe
        // or resend the current snapshot chunk.
        progress.message_outstanding = false;
        // An append sent before the heartbeat and still unacknowledged after
        // its answer was most likely lost (the transport drops silently):
        // probe again from the match rather than wait for a new proposal
        // to expose the gap. A false alarm (reordering) costs one resend.
        let stalled = progress.state == ProgressState::Replicate
            && progress.match_index < progress.sent_at_heartbeat;
        if stalled {
            debug!(id = %self.id, to = %from, r#match = progress.match_index.0, "pipeline stalled: probing");
            progress.become_probe();
        }
        let behind = progress.match_index < last_index
            || matches!(progress.state, ProgressState::Snapshot { .. });
        if behind {
            self.send_append(from, false);
        }
        if self.conf_state.voters.contains(&from) {
            self.read_only.acknowledge(from, &context);
            self.release_reads();
        }
    }

    pub(crate) fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        index: Index,
        next_offset: u64,
        reject: bool,
    ) {
        let snapshot_index = self.log.snapshot_index();
        let total_bytes = self.log.snapshot().map_or(0, |s| s.data.len() as u64);
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        let ProgressState::Snapshot {
            index: sending,
            offset,
        } = progress.state
        else {
            return;
        };
        if sending != index {
            return;
        }
        progress.recent_active = true;
        if reject || index != snapshot_index {
            debug!(id = %self.id, from = %from, index = index.0, reject, "snapshot send restarts");
            progress.state = ProgressState::Probe;
            progress.next_index = Index(progress.match_index.0 + 1);
            progress.message_outstanding = false;
            self.send_append(from, true);
            return;
        }
        if next_offset >= total_bytes {
            info!(id = %self.id, to = %from, index = index.0, "snapshot delivered");
            progress.maybe_update(index);
            progress.become_probe();
            self.send_append(from, true);
            return;
        }
        if next_offset == offset && progress.message_outstanding {
            // A duplicate answer to a chunk already resent.
            return;
        }
        progress.state = ProgressState::Snapshot {
            index,
            offset: next_offset,
        };
        progress.message_outstanding = false;
        self.send_snapshot_chunk(from);
    }

    // ---- Follower ----

    pub(crate) fn handle_append(
        &mut self,
        from: NodeId,
        prev_log_index: Index,
        prev_log_term: Term,
        entries: Vec<Entry>,
        commit: Index,
    ) {
        let committed = self.log.committed();
        if self.log.has_base() && prev_log_index < committed {
            // Everything up to our commit matches any leader's log.
            self.send_append_response(from, false, committed, Index(0), Term(0));
            return;
        }
        #[cfg(madsim)]
        let prev_log_term = if self.config.planted_bug
            == Some(super::config::PlantedRaftBug::AppendIgnoringPrevTerm)
        {
            self.log.term_of(prev_log_index).unwrap_or(prev_log_term)
        } else {
            prev_log_term
        };
        match self
            .log
            .maybe_append(prev_log_index, prev_log_term, &entries)
        {
            Some((last_new, truncated)) => {
                if let Some(at) = truncated {
                    debug!(id = %self.id, from = %from, at = at.0, "conflicting entries replaced");
                }
                self.after_log_change(truncated, &entries);
                self.log.commit_to(commit.min(last_new));
                self.send_append_response(from, false, last_new, Index(0), Term(0));
            }
            None => {
                let probe = prev_log_index.min(self.log.last_index());
                let (hint, hint_term) = self.log.find_conflict_by_term(probe, prev_log_term);
                debug!(
                    id = %self.id,
                    from = %from,
                    prev = prev_log_index.0,
                    hint = hint.0,
                    "append rejected"
                );
                self.send_append_response(from, true, prev_log_index, hint, hint_term);
            }
        }
    }

    fn send_append_response(
        &mut self,
        to: NodeId,
        reject: bool,
        index: Index,
        reject_hint: Index,
        reject_hint_term: Term,
    ) {
        self.send(
            to,
            MessageBody::AppendResponse {
                reject,
                index,
                reject_hint,
                reject_hint_term,
            },
        );
    }

    pub(crate) fn handle_heartbeat(&mut self, from: NodeId, commit: Index, context: Vec<u8>) {
        if self.log.has_base() {
            self.log.commit_to(commit.min(self.log.last_index()));
        }
        self.send(from, MessageBody::HeartbeatResponse { context });
    }

    pub(crate) fn handle_snapshot(
        &mut self,
        from: NodeId,
        metadata: SnapshotMetadata,
        offset: u64,
        total_bytes: u64,
        data: Vec<u8>,
        done: bool,
    ) {
        let index = metadata.index;
        if offset == 0 {
            self.incoming_snapshot = Some(IncomingSnapshot {
                metadata: metadata.clone(),
                data: Vec::new(),
            });
        }
        let expected = match &self.incoming_snapshot {
            Some(incoming) if incoming.metadata == metadata => incoming.data.len() as u64,
            _ => 0,
        };
        if offset != expected {
            debug!(id = %self.id, from = %from, offset, expected, "snapshot chunk out of order");
            self.send(
                from,
                MessageBody::SnapshotResponse {
                    index,
                    next_offset: expected,
                    reject: false,
                },
            );
            return;
        }
        let end = offset.saturating_add(data.len() as u64);
        if end > total_bytes || done != (end == total_bytes) {
            self.incoming_snapshot = None;
            self.send(
                from,
                MessageBody::SnapshotResponse {
                    index,
                    next_offset: 0,
                    reject: true,
                },
            );
            return;
        }
        let Some(incoming) = self.incoming_snapshot.as_mut() else {
            unreachable!("chunk at offset {offset} with no snapshot being received");
        };
        incoming.data.extend_from_slice(&data);
        if !done {
            self.send(
                from,
                MessageBody::SnapshotResponse {
                    index,
                    next_offset: end,
                    reject: false,
                },
            );
            return;
        }
        let Some(incoming) = self.incoming_snapshot.take() else {
            unreachable!("completed snapshot vanished");
        };
        self.restore(Snapshot {
            metadata: incoming.metadata,
            data: incoming.data,
        });
        self.send(
            from,
            MessageBody::SnapshotResponse {
                index,
                next_offset: total_bytes,
                reject: false,
            },
        );
    }

    /// Installs a snapshot from the leader, unless this log already holds
    /// everything it covers.
    fn restore(&mut self, snapshot: Snapshot) {
        let index = snapshot.metadata.index;
        let term = snapshot.metadata.term;
        if self.log.has_base() {
            if index <= self.log.committed() {
                debug!(id = %self.id, index = index.0, "snapshot already covered by commit");
                return;
            }
            if self.log.matches(index, term) {
                debug!(id = %self.id, index = index.0, "snapshot matches the log: commit only");
                self.log.commit_to(index);
                return;
            }
        }
        info!(id = %self.id, term = self.term.0, index = index.0, snapshot_term = term.0, "restoring snapshot");
        self.log.restore(snapshot);
        self.refresh_configuration();
    }
}
