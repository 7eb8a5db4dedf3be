//! A test driver for the Raft core: in-memory "disks", a message queue, a
//! toy state machine, deterministic text forms of everything, and the
//! cluster-wide safety checks (election safety, log matching, leader
//! completeness, state-machine safety) that both the script runner and the
//! randomized delivery test run after every step.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use cairn_core::raft::{
    ConfChange, Config, Entry, EntryKind, HardState, Index, Message, MessageBody, NodeId,
    PersistedState, Raft, ReadState, Ready, Role, Snapshot, Start, Term,
};

/// One node: the core, what its driver persisted, and its state machine.
pub struct TestNode {
    pub raft: Raft,
    pub config: Config,
    /// What Ready duty 1 wrote. A crash keeps all of it except a hard state
    /// written without an fsync (only its commit index moved).
    pub disk: PersistedState,
    /// The hard state as of the last fsync: what a crash falls back to.
    pub synced_hard_state: HardState,
    /// The state machine: applied normal entries as (index, data).
    pub state: Vec<(Index, String)>,
    pub applied: Index,
    /// Every entry applied since the node was created, for state-machine safety.
    pub applied_log: BTreeMap<Index, Entry>,
    /// Read states waiting for the applied index to reach them.
    pub pending_reads: Vec<ReadState>,
    /// Read states answered (applied index reached).
    pub answered_reads: Vec<ReadState>,
}

impl TestNode {
    pub fn new(config: Config, start: Start) -> TestNode {
        let raft = Raft::new(config.clone(), start);
        TestNode {
            raft,
            config,
            disk: PersistedState::default(),
            synced_hard_state: HardState::default(),
            state: Vec::new(),
            applied: Index(0),
            applied_log: BTreeMap::new(),
            pending_reads: Vec::new(),
            answered_reads: Vec::new(),
        }
    }

    /// Crashes the node (losing everything not in Ready duty 1) and restarts it.
    pub fn restart(&mut self) {
        // The unsynced hard state write (commit index only) is lost.
        self.disk.hard_state = self.synced_hard_state;
        self.raft = Raft::new(self.config.clone(), Start::Restart(self.disk.clone()));
        match &self.disk.snapshot {
            Some(snapshot) => {
                self.state = decode_state(&snapshot.data);
                self.applied = snapshot.metadata.index;
            }
            None => {
                self.state.clear();
                self.applied = Index(0);
            }
        }
    }

    /// Takes a snapshot at the applied index and hands it to the core.
    pub fn compact(&mut self, index: Index) {
        let data = encode_state(&self.state, index);
        self.raft.compact(index, data);
        if let Some(snapshot) = self.raft.snapshot() {
            if snapshot.metadata.index == index {
                self.disk.snapshot = Some(snapshot.clone());
                self.disk.entries.retain(|e| e.index > index);
                // Saving a snapshot syncs the log, and what was written before.
                self.synced_hard_state = self.disk.hard_state;
            }
        }
    }

    /// Carries out one Ready, in duty order; returns its text form, or
    /// None when the core had nothing to do.
    pub fn handle_ready(&mut self, outbox: &mut Vec<Message>) -> Option<Vec<String>> {
        let ready = self.raft.ready()?;
        let id = self.raft.id();
        let lines = format_ready(id, &ready);
        // Duty 1: persist.
        if let Some(hard_state) = ready.hard_state {
            self.disk.hard_state = hard_state;
        }
        if let Some(snapshot) = &ready.snapshot {
            self.disk.snapshot = Some(snapshot.clone());
            self.disk.entries.clear();
        }
        if let Some(first) = ready.entries.first() {
            self.disk.entries.retain(|e| e.index < first.index);
            self.disk.entries.extend(ready.entries.iter().cloned());
        }
        if ready.must_sync() {
            self.synced_hard_state = self.disk.hard_state;
        }
        // Duty 2: send.
        outbox.extend(ready.messages.iter().cloned());
        // Duty 3: apply, restoring from the snapshot first.
        if let Some(snapshot) = &ready.snapshot {
            self.state = decode_state(&snapshot.data);
            self.applied = snapshot.metadata.index;
        }
        for entry in &ready.committed_entries {
            assert_eq!(
                entry.index.0,
                self.applied.0 + 1,
                "node {id} applies {} after {}",
                entry.index,
                self.applied
            );
            self.applied = entry.index;
            if entry.kind == EntryKind::Normal && !entry.data.is_empty() {
                self.state.push((
                    entry.index,
                    String::from_utf8_lossy(&entry.data).into_owned(),
                ));
            }
            self.applied_log.insert(entry.index, entry.clone());
        }
        // Duty 4: a read is answered once the applied index reaches it.
        self.pending_reads.extend(ready.read_states.iter().cloned());
        let applied = self.applied;
        let (answered, waiting): (Vec<ReadState>, Vec<ReadState>) =
            std::mem::take(&mut self.pending_reads)
                .into_iter()
                .partition(|r| r.index <= applied);
        self.answered_reads.extend(answered);
        self.pending_reads = waiting;
        self.raft.advance(ready);
        Some(lines)
    }
}

impl TestNode {
    /// Takes a Ready and crashes while its duty 1 is being made durable:
    /// a leader's messages, which may go out before its own write, are
    /// sent; nothing of the Ready is persisted. Returns false when the core
    /// had nothing to do.
    pub fn crash_during_persist(&mut self, outbox: &mut Vec<Message>) -> bool {
        let Some(ready) = self.raft.ready() else {
            return false;
        };
        if ready.from_leader {
            outbox.extend(ready.messages.iter().cloned());
        }
        self.restart();
        true
    }
}

/// Serializes the state machine up to `index` as `index=data` pairs.
pub fn encode_state(state: &[(Index, String)], index: Index) -> Vec<u8> {
    state
        .iter()
        .filter(|(i, _)| *i <= index)
        .map(|(i, data)| format!("{}={data}", i.0))
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes()
}

pub fn decode_state(data: &[u8]) -> Vec<(Index, String)> {
    let text = String::from_utf8_lossy(data);
    if text.is_empty() {
        return Vec::new();
    }
    text.split(',')
        .map(|pair| {
            let (index, data) = pair.split_once('=').expect("state pair");
            (Index(index.parse().expect("state index")), data.to_string())
        })
        .collect()
}

pub fn ids(set: &BTreeSet<NodeId>) -> String {
    let parts: Vec<String> = set.iter().map(|id| id.0.to_string()).collect();
    format!("({})", parts.join(","))
}

pub fn format_entry_id(entry: &Entry) -> String {
    format!("{}/{}", entry.term.0, entry.index.0)
}

pub fn format_entry(entry: &Entry) -> String {
    let body = match entry.kind {
        EntryKind::Normal if entry.data.is_empty() => "noop".to_string(),
        EntryKind::Normal => format!("{:?}", String::from_utf8_lossy(&entry.data)),
        EntryKind::ConfChange => match ConfChange::decode(&entry.data) {
            Ok(change) => format!("conf({change})"),
            Err(_) => "conf(?)".to_string(),
        },
    };
    format!("{} {body}", format_entry_id(entry))
}

fn format_context(context: &[u8]) -> String {
    match <[u8; 8]>::try_from(context) {
        Ok(bytes) => format!(" round={}", u64::from_be_bytes(bytes)),
        Err(_) if context.is_empty() => String::new(),
        Err(_) => format!(" context={:?}", String::from_utf8_lossy(context)),
    }
}

pub fn format_message(message: &Message) -> String {
    let mut out = format!("{}->{} ", message.from.0, message.to.0);
    let term = message.term.0;
    match &message.body {
        MessageBody::PreVote {
            last_log_index,
            last_log_term,
        } => {
            write!(
                out,
                "PreVote term={term} last={}/{}",
                last_log_term.0, last_log_index.0
            )
        }
        MessageBody::PreVoteResponse { reject } => {
            write!(
                out,
                "PreVoteResponse term={term} {}",
                if *reject { "rejected" } else { "granted" }
            )
        }
        MessageBody::Vote {
            last_log_index,
            last_log_term,
            transfer,
        } => write!(
            out,
            "Vote term={term} last={}/{}{}",
            last_log_term.0,
            last_log_index.0,
            if *transfer { " transfer" } else { "" }
        ),
        MessageBody::VoteResponse { reject } => {
            write!(
                out,
                "VoteResponse term={term} {}",
                if *reject { "rejected" } else { "granted" }
            )
        }
        MessageBody::Append {
            prev_log_index,
            prev_log_term,
            entries,
            commit,
        } => {
            let entries: Vec<String> = entries.iter().map(format_entry_id).collect();
            write!(
                out,
                "Append term={term} prev={}/{} entries=[{}] commit={}",
                prev_log_term.0,
                prev_log_index.0,
                entries.join(" "),
                commit.0
            )
        }
        MessageBody::AppendResponse {
            reject: false,
            index,
            ..
        } => {
            write!(out, "AppendResponse term={term} index={}", index.0)
        }
        MessageBody::AppendResponse {
            reject: true,
            index,
            reject_hint,
            reject_hint_term,
        } => {
            write!(
                out,
                "AppendResponse term={term} reject index={} hint={}/{}",
                index.0, reject_hint_term.0, reject_hint.0
            )
        }
        MessageBody::Heartbeat { commit, context } => {
            write!(
                out,
                "Heartbeat term={term} commit={}{}",
                commit.0,
                format_context(context)
            )
        }
        MessageBody::HeartbeatResponse { context } => {
            write!(
                out,
                "HeartbeatResponse term={term}{}",
                format_context(context)
            )
        }
        MessageBody::Snapshot {
            metadata,
            offset,
            total_bytes,
            data,
            done,
        } => write!(
            out,
            "Snapshot term={term} index={}/{} voters={} learners={} bytes={}..{}/{}{}",
            metadata.term.0,
            metadata.index.0,
            ids(&metadata.conf_state.voters),
            ids(&metadata.conf_state.learners),
            offset,
            offset + data.len() as u64,
            total_bytes,
            if *done { " done" } else { "" }
        ),
        MessageBody::SnapshotResponse {
            index,
            next_offset,
            reject,
        } => write!(
            out,
            "SnapshotResponse term={term} index={} next_offset={}{}",
            index.0,
            next_offset,
            if *reject { " reject" } else { "" }
        ),
        MessageBody::Propose { entries } => {
            let entries: Vec<String> = entries
                .iter()
                .map(|e| {
                    format_entry(e)
                        .split_once(' ')
                        .map(|(_, b)| b.to_string())
                        .unwrap_or_default()
                })
                .collect();
            write!(out, "Propose term={term} entries=[{}]", entries.join(" "))
        }
        MessageBody::ReadIndex { context } => {
            write!(
                out,
                "ReadIndex term={term} context={:?}",
                String::from_utf8_lossy(context)
            )
        }
        MessageBody::ReadIndexResponse { index, context } => write!(
            out,
            "ReadIndexResponse term={term} index={} context={:?}",
            index.0,
            String::from_utf8_lossy(context)
        ),
        MessageBody::TimeoutNow => write!(out, "TimeoutNow term={term}"),
        MessageBody::TransferLeader => write!(out, "TransferLeader term={term}"),
    }
    .expect("write to string");
    out
}

pub fn format_role(role: Role) -> &'static str {
    match role {
        Role::Follower => "Follower",
        Role::PreCandidate => "PreCandidate",
        Role::Candidate => "Candidate",
        Role::Leader => "Leader",
    }
}

fn format_snapshot(snapshot: &Snapshot) -> String {
    format!(
        "{}/{} voters={} learners={} data={:?}",
        snapshot.metadata.term.0,
        snapshot.metadata.index.0,
        ids(&snapshot.metadata.conf_state.voters),
        ids(&snapshot.metadata.conf_state.learners),
        String::from_utf8_lossy(&snapshot.data)
    )
}

pub fn format_ready(id: NodeId, ready: &Ready) -> Vec<String> {
    let mut lines = Vec::new();
    let id = id.0;
    if let Some(soft) = ready.soft_state {
        let leader = soft.leader.map_or("none".to_string(), |l| l.0.to_string());
        lines.push(format!(
            "{id}: role={} leader={leader}",
            format_role(soft.role)
        ));
    }
    if let Some(hard) = ready.hard_state {
        let vote = hard.vote.map_or("none".to_string(), |v| v.0.to_string());
        lines.push(format!(
            "{id}: hard_state term={} vote={vote} commit={}",
            hard.term.0, hard.commit.0
        ));
    }
    if let Some(snapshot) = &ready.snapshot {
        lines.push(format!("{id}: snapshot {}", format_snapshot(snapshot)));
    }
    for entry in &ready.entries {
        lines.push(format!("{id}: persist {}", format_entry(entry)));
    }
    for message in &ready.messages {
        lines.push(format!("{id}: send {}", format_message(message)));
    }
    for entry in &ready.committed_entries {
        lines.push(format!("{id}: apply {}", format_entry(entry)));
    }
    for read in &ready.read_states {
        lines.push(format!(
            "{id}: read_state index={} context={:?}",
            read.index.0,
            String::from_utf8_lossy(&read.context)
        ));
    }
    lines
}

/// Cluster-wide safety, checked after every step.
#[derive(Default)]
pub struct SafetyChecker {
    /// The leader seen in each term (election safety).
    leaders: BTreeMap<Term, NodeId>,
    /// Every entry ever known committed (leader completeness and
    /// state-machine safety): index -> (term, data).
    committed: BTreeMap<Index, (Term, EntryKind, Vec<u8>)>,
    /// For each committed index, the highest term any node had when it was
    /// first seen committed: every leader of a later term must hold it.
    committed_by_term: BTreeMap<Index, Term>,
}

impl SafetyChecker {
    pub fn check(&mut self, nodes: &BTreeMap<NodeId, TestNode>) {
        // Election safety: at most one leader per term, ever.
        for (id, node) in nodes {
            if node.raft.role() == Role::Leader {
                let term = node.raft.term();
                let previous = *self.leaders.entry(term).or_insert(*id);
                assert_eq!(
                    previous, *id,
                    "two leaders in term {}: {} and {}",
                    term.0, previous.0, id.0
                );
            }
        }
        // Log matching: if two logs hold an entry with the same index and
        // term, they agree on every entry up to it.
        let list: Vec<&TestNode> = nodes.values().collect();
        for (a_position, a) in list.iter().enumerate() {
            for b in &list[a_position + 1..] {
                check_log_matching(&a.raft, &b.raft);
            }
        }
        // State-machine safety and leader completeness: a committed entry
        // never changes, every node's committed prefix agrees with it, and
        // every leader's log holds it.
        let highest_term = nodes
            .values()
            .map(|n| n.raft.term())
            .max()
            .unwrap_or(Term(0));
        for node in nodes.values() {
            let raft = &node.raft;
            let low = raft.first_index();
            let high = Index(raft.commit_index().0 + 1);
            for entry in raft.entries(low, high) {
                let record = (entry.term, entry.kind, entry.data.clone());
                self.committed_by_term
                    .entry(entry.index)
                    .or_insert(highest_term);
                let known = self
                    .committed
                    .entry(entry.index)
                    .or_insert_with(|| record.clone());
                assert_eq!(
                    *known,
                    record,
                    "node {} committed a different entry at {}",
                    raft.id().0,
                    entry.index.0
                );
            }
            for (index, entry) in &node.applied_log {
                let record = (entry.term, entry.kind, entry.data.clone());
                self.committed_by_term.entry(*index).or_insert(highest_term);
                let known = self
                    .committed
                    .entry(*index)
                    .or_insert_with(|| record.clone());
                assert_eq!(
                    *known,
                    record,
                    "node {} applied a different entry at {}",
                    raft.id().0,
                    index.0
                );
            }
        }
        // A read index is a commit index some leader confirmed: it can be
        // no higher than the highest index ever seen committed.
        let highest_committed = self
            .committed
            .keys()
            .next_back()
            .copied()
            .unwrap_or(Index(0));
        for node in nodes.values() {
            for read in node.pending_reads.iter().chain(&node.answered_reads) {
                assert!(
                    read.index <= highest_committed,
                    "node {} read at {} beyond anything committed ({})",
                    node.raft.id().0,
                    read.index.0,
                    highest_committed.0
                );
            }
        }
        for node in nodes.values() {
            let raft = &node.raft;
            if raft.role() != Role::Leader {
                continue;
            }
            for (index, (term, _, _)) in self.committed.range(raft.first_index()..) {
                // Only leaders of terms after the commit was seen are bound.
                if self.committed_by_term[index] >= raft.term() {
                    continue;
                }
                assert_eq!(
                    raft.term_of(*index),
                    Some(*term),
                    "leader {} of term {} lacks committed entry {}/{}",
                    raft.id().0,
                    raft.term().0,
                    term.0,
                    index.0
                );
            }
        }
    }
}

fn check_log_matching(a: &Raft, b: &Raft) {
    let low = a.first_index().max(b.first_index());
    let high = a.last_index().min(b.last_index());
    if low > high {
        return;
    }
    // Find the highest common index with equal terms; everything below must match.
    let mut index = high;
    while index >= low {
        if a.term_of(index).is_some() && a.term_of(index) == b.term_of(index) {
            let a_entries = a.entries(low, Index(index.0 + 1));
            let b_entries = b.entries(low, Index(index.0 + 1));
            assert_eq!(
                a_entries,
                b_entries,
                "log matching violated between {} and {} below {}",
                a.id().0,
                b.id().0,
                index.0
            );
            return;
        }
        if index.0 == 0 {
            break;
        }
        index = Index(index.0 - 1);
    }
}
