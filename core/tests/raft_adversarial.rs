//! Adversarial schedules for the Raft core: the states random faults
//! rarely build, built on purpose. Each new leader is isolated right after
//! it appends (so several terms of divergent uncommitted tails pile up on
//! the followers it reached), copies of old appends and answers are kept
//! and delivered long after (stale and duplicated appends that match, or
//! conflict with, what the follower now holds), single messages are
//! dropped, duplicated and reordered, and a follower whose next write
//! truncates its log crashes in the middle of that write, keeping a prefix
//! of the batch (the durability contract: nothing of a Ready counts until
//! its fsync, and a follower sends nothing before).
//!
//! After every step the cluster must keep election safety, log matching,
//! leader completeness and state-machine safety (`SafetyChecker`), and
//! three properties of durability:
//! - a node's commit index never decreases between restarts;
//! - every commit index is covered by a quorum of voters' durable logs
//!   (the entry at it, with its term, is on their disks);
//! - a leader's match index for a follower that has not moved past the
//!   leader's term is on that follower's disk, with the leader's term.
//!
//! The run also counts the rare states it built and requires each of them
//! to have happened, so that a change to the schedules cannot quietly stop
//! producing them: a follower holding an entry of another term at the
//! leader's prev index, a stale append whose entries all match a longer
//! log, three terms of divergent tails at one index, a leader whose quorum
//! index points at an older-term entry before its own entry commits, and a
//! crash in the middle of a truncating write.
//!
//! In the simulator build a planted Raft bug can be switched on by hand, to
//! check that these schedules catch it (each of `append-ignoring-prev-term`,
//! `vote-ignoring-log` and `commit-without-quorum` fails at seed 1):
//!
//! ```text
//! RUSTFLAGS="--cfg madsim" RAFT_ADVERSARIAL_BUG=append-ignoring-prev-term \
//!     cargo test --profile sim -p cairn-core --target-dir target-sim --test raft_adversarial
//! ```

mod raft_support;

use std::collections::{BTreeMap, BTreeSet};

use cairn_core::raft::{Config, Entry, Index, Message, MessageBody, NodeId, Role, Start, Term};
use raft_support::{SafetyChecker, TestNode};

/// Schedules run, one per seed.
const SEEDS: u64 = 128;
/// Steps in one schedule.
const STEPS: usize = 300;
/// Copies of delivered appends and answers kept for a late, stale delivery.
const ATTIC_MESSAGES_MAX: usize = 48;
/// Messages in flight, at most; the oldest beyond this are lost.
const NETWORK_MESSAGES_MAX: usize = 256;
/// Rounds an election is given to finish before the schedule moves on.
const ELECTION_ROUNDS_MAX: usize = 12;
/// Rounds of in-order delivery in one calm spell.
const CALM_ROUNDS: usize = 2;

/// SplitMix64: a small deterministic generator, so that every run of the
/// suite replays the same schedules and a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// How often each rare state was built, over all schedules.
#[derive(Debug, Default)]
struct Coverage {
    /// An append reached a follower holding an entry of another term at its prev index.
    prev_term_mismatch: u64,
    /// A stale or duplicated append whose entries all match reached a longer log.
    stale_matching_append: u64,
    /// At one uncommitted index the nodes held entries of three or more terms.
    three_divergent_terms: u64,
    /// A leader's quorum index pointed past its commit, at an entry of an older term.
    old_term_quorum_index: u64,
    /// A follower crashed in the middle of a write that truncated its log.
    crash_in_truncating_write: u64,
}

struct Cluster {
    nodes: BTreeMap<NodeId, TestNode>,
    ids: Vec<NodeId>,
    voters: BTreeSet<NodeId>,
    network: Vec<Message>,
    /// Copies of appends and answers already delivered, for stale delivery.
    attic: Vec<Message>,
    /// Nodes cut off from everyone else, until `heal`.
    isolated: BTreeSet<NodeId>,
    checker: SafetyChecker,
    /// Each node's commit index in its current incarnation.
    commits: BTreeMap<NodeId, Index>,
    proposals: u64,
    coverage: Coverage,
    rng: Rng,
}

impl Cluster {
    fn new(seed: u64) -> Cluster {
        let mut rng = Rng(seed);
        let size = if rng.chance(50) { 3 } else { 5 };
        let ids: Vec<NodeId> = (1..=size as u64).map(NodeId).collect();
        let voters: BTreeSet<NodeId> = ids.iter().copied().collect();
        let mut template = Config::new(NodeId(1), seed);
        template.election_timeout_ticks = 6;
        template.heartbeat_interval_ticks = 1;
        template.pre_vote = rng.chance(50);
        template.check_quorum = rng.chance(50);
        template.inflight_messages_max = 4;
        // Two entries per append at most, so probes answer below the
        // leader's last index (and its no-op).
        template.message_bytes_max = 8;
        #[cfg(madsim)]
        {
            template.planted_bug = planted_bug();
        }
        let mut nodes = BTreeMap::new();
        for id in &ids {
            let config = Config {
                id: *id,
                ..template.clone()
            };
            let mut node = TestNode::new(
                config,
                Start::New {
                    voters: voters.clone(),
                },
            );
            node.handle_ready(&mut Vec::new());
            nodes.insert(*id, node);
        }
        Cluster {
            nodes,
            ids,
            voters,
            network: Vec::new(),
            attic: Vec::new(),
            isolated: BTreeSet::new(),
            checker: SafetyChecker::default(),
            commits: BTreeMap::new(),
            proposals: 0,
            coverage: Coverage::default(),
            rng,
        }
    }

    fn node(&mut self, id: NodeId) -> &mut TestNode {
        self.nodes.get_mut(&id).expect("node exists")
    }

    fn random_node(&mut self) -> NodeId {
        self.ids[self.rng.below(self.ids.len())]
    }

    /// The leader of the highest term, if any.
    fn leader(&self) -> Option<NodeId> {
        self.ids
            .iter()
            .copied()
            .filter(|id| self.nodes[id].raft.role() == Role::Leader)
            .max_by_key(|id| self.nodes[id].raft.term())
    }

    fn connected(&self, a: NodeId, b: NodeId) -> bool {
        self.isolated.contains(&a) == self.isolated.contains(&b)
    }

    fn enqueue(&mut self, messages: Vec<Message>) {
        self.network.extend(messages);
        if self.network.len() > NETWORK_MESSAGES_MAX {
            let excess = self.network.len() - NETWORK_MESSAGES_MAX;
            self.network.drain(..excess);
        }
    }

    fn keep_in_attic(&mut self, message: &Message) {
        let keep = matches!(
            message.body,
            MessageBody::Append { .. } | MessageBody::AppendResponse { .. }
        );
        if !keep {
            return;
        }
        if self.attic.len() < ATTIC_MESSAGES_MAX {
            self.attic.push(message.clone());
        } else {
            let slot = self.rng.below(ATTIC_MESSAGES_MAX);
            self.attic[slot] = message.clone();
        }
    }

    /// Delivers one message (unless the partition cuts it), counting the
    /// rare states it meets on arrival.
    fn deliver(&mut self, message: Message) {
        if !self.connected(message.from, message.to) {
            return;
        }
        self.keep_in_attic(&message);
        self.observe_arrival(&message);
        let to = message.to;
        self.node(to).raft.step(message);
    }

    fn observe_arrival(&mut self, message: &Message) {
        let MessageBody::Append {
            prev_log_index,
            prev_log_term,
            entries,
            ..
        } = &message.body
        else {
            return;
        };
        let raft = &self.nodes[&message.to].raft;
        if message.term < raft.term() {
            return;
        }
        if let Some(held) = raft.term_of(*prev_log_index) {
            if held != *prev_log_term && *prev_log_index > raft.commit_index() {
                self.coverage.prev_term_mismatch += 1;
            }
        }
        let all_match = !entries.is_empty()
            && raft.term_of(*prev_log_index) == Some(*prev_log_term)
            && entries
                .iter()
                .all(|e| raft.term_of(e.index) == Some(e.term));
        if all_match && entries.last().is_some_and(|e| e.index < raft.last_index()) {
            self.coverage.stale_matching_append += 1;
        }
    }

    fn ready(&mut self, id: NodeId) {
        let mut outbox = Vec::new();
        self.node(id).handle_ready(&mut outbox);
        self.enqueue(outbox);
    }

    /// Runs `rounds` rounds of Readies and in-order delivery.
    fn calm(&mut self, rounds: usize) {
        for _ in 0..rounds {
            for id in self.ids.clone() {
                self.ready(id);
            }
            for message in std::mem::take(&mut self.network) {
                self.deliver(message);
            }
        }
    }

    /// Makes `id` campaign and lets the election play out for a while.
    fn elect(&mut self, id: NodeId) {
        self.node(id).raft.campaign();
        for _ in 0..ELECTION_ROUNDS_MAX {
            self.calm(1);
            if self.nodes[&id].raft.role() == Role::Leader {
                return;
            }
            for other in self.ids.clone() {
                self.node(other).raft.tick();
            }
        }
    }

    /// The leader appends, sends its appends to a random few followers,
    /// and is cut off before anyone answers: its tail stays uncommitted
    /// on whoever it reached. Then another node is elected.
    fn churn(&mut self) {
        let Some(leader) = self.leader() else {
            let id = self.random_node();
            self.elect(id);
            return;
        };
        self.isolated.clear();
        for _ in 0..=self.rng.below(3) {
            self.proposals += 1;
            let data = format!("p{}", self.proposals).into_bytes();
            let _ = self.node(leader).raft.propose(data);
        }
        let mut outbox = Vec::new();
        self.node(leader).handle_ready(&mut outbox);
        for message in outbox {
            let is_append = matches!(message.body, MessageBody::Append { .. });
            if is_append && self.rng.chance(40) {
                self.deliver(message);
            } else if is_append {
                self.keep_in_attic(&message);
            }
        }
        // The followers persist what they got; their answers are lost.
        for id in self.ids.clone() {
            if id != leader {
                let mut answers = Vec::new();
                self.node(id).handle_ready(&mut answers);
                for answer in &answers {
                    self.keep_in_attic(answer);
                }
            }
        }
        self.isolated.insert(leader);
        let others: Vec<NodeId> = self
            .ids
            .iter()
            .copied()
            .filter(|&id| id != leader)
            .collect();
        let next = others[self.rng.below(others.len())];
        self.elect(next);
    }

    /// True when `id`'s next write replaces entries on its disk.
    fn truncation_pending(&self, id: NodeId) -> bool {
        let node = &self.nodes[&id];
        node.disk.entries.iter().any(|stored| {
            node.raft.term_of(stored.index) != Some(stored.term)
                && stored.index >= node.raft.first_index()
        })
    }

    /// Crashes `id` while its next Ready is being written: a prefix of the
    /// batch (some of the entries, then the hard state) reaches the disk,
    /// nothing is sent, and the node restarts from what is there.
    fn crash_in_write(&mut self, id: NodeId) {
        let truncating = self.truncation_pending(id);
        let keep = self.rng.next();
        let node = self.node(id);
        let Some(ready) = node.raft.ready() else {
            return;
        };
        let messages = if ready.from_leader {
            ready.messages.clone()
        } else {
            Vec::new()
        };
        // Cairn's WAL writes a batch as the entries, then the hard state.
        let kept = (keep % (ready.entries.len() as u64 + 2)) as usize;
        let written: Vec<Entry> = ready.entries.iter().take(kept).cloned().collect();
        if let Some(first) = written.first() {
            node.disk.entries.retain(|e| e.index < first.index);
            node.disk.entries.extend(written);
        }
        if kept > ready.entries.len() {
            if let Some(hard_state) = ready.hard_state {
                node.disk.hard_state = hard_state;
                node.synced_hard_state = hard_state;
            }
        }
        drop(ready);
        node.restart();
        if truncating {
            self.coverage.crash_in_truncating_write += 1;
        }
        self.commits.remove(&id);
        self.enqueue(messages);
    }

    fn step(&mut self) {
        let roll = self.rng.below(100);
        match roll {
            0..=7 => self.churn(),
            8..=27 => {
                if !self.network.is_empty() {
                    let position = self.rng.below(self.network.len());
                    let message = self.network.remove(position);
                    self.deliver(message);
                }
            }
            28..=33 => {
                // Duplicate: deliver a copy now, the original later.
                if !self.network.is_empty() {
                    let position = self.rng.below(self.network.len());
                    let message = self.network[position].clone();
                    self.deliver(message);
                }
            }
            34..=37 => {
                if !self.network.is_empty() {
                    let position = self.rng.below(self.network.len());
                    self.network.remove(position);
                }
            }
            38..=49 => {
                if !self.attic.is_empty() {
                    let position = self.rng.below(self.attic.len());
                    let message = self.attic[position].clone();
                    self.deliver(message);
                }
            }
            50..=61 => {
                let id = self.random_node();
                if self.truncation_pending(id) && self.rng.chance(50) {
                    self.crash_in_write(id);
                } else {
                    self.ready(id);
                }
            }
            62..=67 => {
                let id = self.random_node();
                self.crash_in_write(id);
            }
            68..=75 => {
                let id = self.leader().unwrap_or_else(|| self.random_node());
                self.proposals += 1;
                let data = format!("p{}", self.proposals).into_bytes();
                let _ = self.node(id).raft.propose(data);
            }
            76..=83 => {
                let id = self.random_node();
                self.node(id).raft.tick();
            }
            84..=87 => {
                for id in self.ids.clone() {
                    self.node(id).raft.tick();
                }
            }
            88..=91 => self.calm(CALM_ROUNDS),
            92..=94 => {
                let id = self.random_node();
                self.elect(id);
            }
            95..=96 => {
                let id = self.random_node();
                self.node(id).restart();
                self.commits.remove(&id);
            }
            _ => self.isolated.clear(),
        }
    }

    /// The properties, after every step.
    fn check(&mut self) {
        self.checker.check(&self.nodes);
        self.check_commits_only_grow();
        self.check_commits_are_durable_on_a_quorum();
        self.check_match_indexes_are_durable();
        self.count_rare_states();
    }

    fn check_commits_only_grow(&mut self) {
        for (id, node) in &self.nodes {
            let commit = node.raft.commit_index();
            let previous = self.commits.insert(*id, commit).unwrap_or(Index(0));
            assert!(
                commit >= previous,
                "node {} commit went from {} to {} without a restart",
                id.0,
                previous.0,
                commit.0
            );
        }
    }

    fn check_commits_are_durable_on_a_quorum(&self) {
        let quorum = self.voters.len() / 2 + 1;
        for (id, node) in &self.nodes {
            let commit = node.raft.commit_index();
            if commit == Index(0) {
                continue;
            }
            let term = node
                .raft
                .term_of(commit)
                .expect("committed entry in the log");
            let holders = self
                .voters
                .iter()
                .filter(|voter| durably_holds(&self.nodes[voter], commit, term))
                .count();
            assert!(
                holders >= quorum,
                "node {} committed {}/{} but only {holders} voters hold it durably",
                id.0,
                term.0,
                commit.0
            );
        }
    }

    fn check_match_indexes_are_durable(&self) {
        for leader in self.nodes.values() {
            if leader.raft.role() != Role::Leader {
                continue;
            }
            let leader_term = leader.raft.term();
            for (follower, match_index) in leader.raft.status().match_index {
                if follower == leader.raft.id() || match_index == Index(0) {
                    continue;
                }
                let node = &self.nodes[&follower];
                if node.raft.term() > leader_term {
                    continue;
                }
                let term = leader
                    .raft
                    .term_of(match_index)
                    .expect("matched entry in the log");
                assert!(
                    durably_holds(node, match_index, term),
                    "leader {} of term {} has match {}/{} for {} which does not hold it durably",
                    leader.raft.id().0,
                    leader_term.0,
                    term.0,
                    match_index.0,
                    follower.0
                );
            }
        }
    }

    fn count_rare_states(&mut self) {
        let highest_commit = self
            .nodes
            .values()
            .map(|n| n.raft.commit_index())
            .max()
            .unwrap_or(Index(0));
        let highest_last = self
            .nodes
            .values()
            .map(|n| n.raft.last_index())
            .max()
            .unwrap_or(Index(0));
        for index in highest_commit.0 + 1..=highest_last.0 {
            let terms: BTreeSet<Term> = self
                .nodes
                .values()
                .filter_map(|n| n.raft.term_of(Index(index)))
                .collect();
            if terms.len() >= 3 {
                self.coverage.three_divergent_terms += 1;
                break;
            }
        }
        for leader in self.nodes.values() {
            if leader.raft.role() != Role::Leader {
                continue;
            }
            let mut matches: Vec<Index> = leader.raft.status().match_index.into_values().collect();
            matches.sort_unstable_by(|a, b| b.cmp(a));
            let quorum_index = matches[self.voters.len() / 2];
            let commit = leader.raft.commit_index();
            if quorum_index > commit && leader.raft.term_of(quorum_index) < Some(leader.raft.term())
            {
                self.coverage.old_term_quorum_index += 1;
            }
        }
    }
}

/// True when `node`'s disk holds the entry at `index` with `term` (or a
/// snapshot covering it).
fn durably_holds(node: &TestNode, index: Index, term: Term) -> bool {
    if let Some(snapshot) = &node.disk.snapshot {
        if snapshot.metadata.index >= index {
            return snapshot.metadata.index > index || snapshot.metadata.term == term;
        }
    }
    node.disk
        .entries
        .iter()
        .any(|e| e.index == index && e.term == term)
}

/// In the simulator build, `RAFT_ADVERSARIAL_BUG=<name>` plants a Raft bug,
/// to check by hand that these schedules catch it.
#[cfg(madsim)]
fn planted_bug() -> Option<cairn_core::raft::PlantedRaftBug> {
    use cairn_core::raft::PlantedRaftBug;
    match std::env::var("RAFT_ADVERSARIAL_BUG").ok()?.as_str() {
        "append-ignoring-prev-term" => Some(PlantedRaftBug::AppendIgnoringPrevTerm),
        "vote-ignoring-log" => Some(PlantedRaftBug::VoteIgnoringLog),
        "commit-without-quorum" => Some(PlantedRaftBug::CommitWithoutQuorum),
        other => panic!("no planted Raft bug named {other}"),
    }
}

fn run_schedule(seed: u64, coverage: &mut Coverage) {
    let mut cluster = Cluster::new(seed);
    for step in 0..STEPS {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cluster.step();
            cluster.check();
        }));
        if let Err(panic) = outcome {
            eprintln!("raft_adversarial: seed {seed} failed at step {step}");
            std::panic::resume_unwind(panic);
        }
    }
    let found = &cluster.coverage;
    coverage.prev_term_mismatch += found.prev_term_mismatch;
    coverage.stale_matching_append += found.stale_matching_append;
    coverage.three_divergent_terms += found.three_divergent_terms;
    coverage.old_term_quorum_index += found.old_term_quorum_index;
    coverage.crash_in_truncating_write += found.crash_in_truncating_write;
}

#[test]
fn adversarial_schedules_keep_raft_safety_and_durability() {
    let first_seed = std::env::var("RAFT_ADVERSARIAL_FIRST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut coverage = Coverage::default();
    for seed in first_seed..first_seed + SEEDS {
        run_schedule(seed, &mut coverage);
    }
    println!("{coverage:?}");
    assert!(coverage.prev_term_mismatch > 0, "{coverage:?}");
    assert!(coverage.stale_matching_append > 0, "{coverage:?}");
    assert!(coverage.three_divergent_terms > 0, "{coverage:?}");
    assert!(coverage.old_term_quorum_index > 0, "{coverage:?}");
    assert!(coverage.crash_in_truncating_write > 0, "{coverage:?}");
}
