//! Membership: MemberAdd/Remove/Update/Promote checked against the member
//! table and proposed as ConfChange entries (one at a time, retried while
//! another is pending), applied to the member table and the transport, and
//! this member's publication of its name and client URLs.

use super::*;

impl Driver {
    // ----- membership -----

    pub(super) fn change_members(
        &mut self,
        change: MemberChange,
        reply: Reply<(ResponseHeader, Member, Vec<Member>)>,
    ) {
        if self.pending_requests() >= PENDING_REQUESTS_MAX {
            let _ = reply.send(Err(NodeError::TooManyRequests));
            return;
        }
        let prepared = self.prepare_conf_change(change);
        let (conf_change, member) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        };
        let deadline = self.deadline();
        self.pending_conf_changes.push(ConfChangeWaiter {
            change: conf_change,
            member,
            reply,
            deadline,
            proposed: false,
        });
        self.update_pending_metric();
        self.propose_waiting_conf_changes();
    }

    /// Proposes the membership changes not yet accepted by Raft. One change
    /// at a time is allowed (and none before the leader commits in its
    /// term), so a change refused as pending waits for the next tick, as
    /// etcd's client would wait, until its deadline.
    pub(super) fn propose_waiting_conf_changes(&mut self) {
        let mut index = 0;
        while index < self.pending_conf_changes.len() {
            if self.pending_conf_changes[index].proposed {
                index += 1;
                continue;
            }
            let change = self.pending_conf_changes[index].change.clone();
            let error = match self.raft.propose_conf_change(change.clone()) {
                Ok(()) => {
                    info!(change = ?conf_change_summary(&change), "proposed membership change");
                    self.pending_conf_changes[index].proposed = true;
                    index += 1;
                    continue;
                }
                Err(ProposeError::ConfChangePending) => {
                    index += 1;
                    continue;
                }
                Err(ProposeError::ConfChangeRefused { reason }) => {
                    info!(%reason, "membership change refused by raft");
                    match change {
                        ConfChange::AddVoter { .. } | ConfChange::AddLearner { .. } => {
                            NodeError::MemberIdExists
                        }
                        ConfChange::RemoveNode { .. } => NodeError::NotEnoughStartedMembers,
                        ConfChange::PromoteLearner { .. } => NodeError::MemberNotLearner,
                        ConfChange::UpdateNode { .. } => NodeError::MemberNotFound,
                    }
                }
                Err(error) => propose_error(error),
            };
            let waiter = self.pending_conf_changes.remove(index);
            let _ = waiter.reply.send(Err(error));
            self.update_pending_metric();
        }
    }

    /// Checks a membership change against the table and builds its entry.
    pub(super) fn prepare_conf_change(
        &mut self,
        change: MemberChange,
    ) -> Result<(ConfChange, Member), NodeError> {
        match change {
            MemberChange::Add {
                peer_urls,
                is_learner,
            } => {
                if member_using_peer_url(&self.members, &peer_urls, None).is_some() {
                    return Err(NodeError::PeerUrlExists);
                }
                let id = member_id_for(&peer_urls, &self.config.cluster_token);
                // A removed ID stays refused (etcd: "ID removed"); the same
                // URLs would derive it again.
                if self.members.contains_key(&id.0) || self.removed_members.contains(&id.0) {
                    return Err(NodeError::MemberIdExists);
                }
                let member = Member {
                    id: id.0,
                    name: String::new(),
                    peer_urls,
                    client_urls: Vec::new(),
                    is_learner,
                };
                let context = encode_member(&member);
                // The leader will start sending to it before the entry applies.
                self.transport.add_peer(id, member.peer_urls.clone());
                let change = if is_learner {
                    ConfChange::AddLearner { id, context }
                } else {
                    ConfChange::AddVoter { id, context }
                };
                Ok((change, member))
            }
            MemberChange::Remove { id } => {
                let member = self
                    .members
                    .get(&id)
                    .ok_or(NodeError::MemberNotFound)?
                    .clone();
                Ok((ConfChange::RemoveNode { id: NodeId(id) }, member))
            }
            MemberChange::Update { id, peer_urls } => {
                let mut member = self
                    .members
                    .get(&id)
                    .ok_or(NodeError::MemberNotFound)?
                    .clone();
                if member_using_peer_url(&self.members, &peer_urls, Some(id)).is_some() {
                    return Err(NodeError::PeerUrlExists);
                }
                member.peer_urls = peer_urls;
                let context = encode_member(&member);
                Ok((
                    ConfChange::UpdateNode {
                        id: NodeId(id),
                        context,
                    },
                    member,
                ))
            }
            MemberChange::Promote { id } => {
                let member = self
                    .members
                    .get(&id)
                    .ok_or(NodeError::MemberNotFound)?
                    .clone();
                if !member.is_learner {
                    return Err(NodeError::MemberNotLearner);
                }
                if self.is_leader() && !self.learner_is_ready(NodeId(id)) {
                    return Err(NodeError::LearnerNotReady);
                }
                Ok((ConfChange::PromoteLearner { id: NodeId(id) }, member))
            }
        }
    }

    /// etcd's rule: a learner may be promoted once its match index is at
    /// least 90% of the leader's.
    pub(super) fn learner_is_ready(&self, id: NodeId) -> bool {
        let status = self.raft.status();
        let leader_match = status
            .match_index
            .get(&self.config.member_id)
            .copied()
            .unwrap_or(status.last_index);
        let learner_match = status.match_index.get(&id).copied().unwrap_or(Index(0));
        learner_match.0 * 10 >= leader_match.0 * 9
    }

    /// Publishes this member's name and client URLs into the replicated
    /// member table (etcd's "publish"), retrying until they are there.
    pub(super) fn publish_member_attributes(&mut self) {
        if self.leader.is_none() || self.ticks < self.next_publish_tick || self.removed {
            return;
        }
        let id = self.config.member_id;
        let Some(current) = self.members.get(&id.0) else {
            return;
        };
        if current.name == self.config.name
            && current.client_urls == self.config.advertise_client_urls
        {
            self.published.send_if_modified(|published| {
                let changed = !*published;
                *published = true;
                changed
            });
            return;
        }
        let member = Member {
            name: self.config.name.clone(),
            client_urls: self.config.advertise_client_urls.clone(),
            ..current.clone()
        };
        let change = ConfChange::UpdateNode {
            id,
            context: encode_member(&member),
        };
        let result = self.raft.propose_conf_change(change);
        debug!(?result, "publishing member attributes");
        // Retry after about an election timeout, jittered so members that
        // start together do not collide on the one-change-at-a-time rule.
        let jitter = self.rng.gen_range(0..=self.config.election_timeout_ticks);
        self.next_publish_tick = self.ticks + self.config.election_timeout_ticks + jitter;
    }

    pub(super) fn apply_conf_change(&mut self, index: Index, change: ConfChange) {
        info!(index = index.0, change = ?conf_change_summary(&change), "membership change applied");
        match &change {
            ConfChange::AddVoter { id, context } | ConfChange::AddLearner { id, context } => {
                let mut member = decode_member(*id, context);
                member.is_learner = matches!(change, ConfChange::AddLearner { .. });
                self.transport.add_peer(*id, member.peer_urls.clone());
                self.members.insert(id.0, member);
            }
            ConfChange::PromoteLearner { id } => {
                if let Some(member) = self.members.get_mut(&id.0) {
                    member.is_learner = false;
                }
            }
            ConfChange::RemoveNode { id } => {
                self.members.remove(&id.0);
                self.removed_members.insert(id.0);
                self.transport.mark_removed(*id);
                if *id == self.config.member_id {
                    warn!("this member was removed from the cluster; stopping");
                    self.removed = true;
                }
            }
            ConfChange::UpdateNode { id, context } => {
                let mut member = decode_member(*id, context);
                if let Some(current) = self.members.get(&id.0) {
                    member.is_learner = current.is_learner;
                }
                self.transport.add_peer(*id, member.peer_urls.clone());
                self.members.insert(id.0, member);
            }
        }
        let is_learner = self
            .members
            .get(&self.config.member_id.0)
            .is_some_and(|member| member.is_learner);
        self.metrics.is_learner.store(is_learner, Ordering::Relaxed);
        if let Some(position) = self
            .pending_conf_changes
            .iter()
            .position(|w| w.change == change)
        {
            let waiter = self.pending_conf_changes.remove(position);
            let member = match &change {
                ConfChange::RemoveNode { .. } => waiter.member,
                _ => self
                    .members
                    .get(&waiter.member.id)
                    .cloned()
                    .unwrap_or(waiter.member),
            };
            let members = self.members.values().cloned().collect();
            let _ = waiter.reply.send(Ok((self.header(), member, members)));
            self.update_pending_metric();
        }
    }
}

pub(super) fn encode_member(member: &Member) -> Vec<u8> {
    match bincode::serialize(member) {
        Ok(bytes) => bytes,
        Err(error) => panic!("member {:x} does not encode: {error}", member.id),
    }
}

/// The member a ConfChange context describes; a context that does not
/// decode (e.g. written by a tool) still yields a member with that ID.
pub(super) fn decode_member(id: NodeId, context: &[u8]) -> Member {
    match bincode::deserialize::<Member>(context) {
        Ok(mut member) => {
            member.id = id.0;
            member
        }
        Err(error) => {
            warn!(member = %id, %error, "membership change context does not decode");
            Member {
                id: id.0,
                ..Member::default()
            }
        }
    }
}

/// A short form of a change for logs (contexts can be long).
pub(super) fn conf_change_summary(change: &ConfChange) -> (&'static str, String) {
    match change {
        ConfChange::AddVoter { id, .. } => ("add-voter", id.to_string()),
        ConfChange::AddLearner { id, .. } => ("add-learner", id.to_string()),
        ConfChange::PromoteLearner { id } => ("promote", id.to_string()),
        ConfChange::RemoveNode { id } => ("remove", id.to_string()),
        ConfChange::UpdateNode { id, .. } => ("update", id.to_string()),
    }
}
