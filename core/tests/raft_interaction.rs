//! Script-driven tests of the Raft core, in the style of etcd-io/raft's
//! interaction tests: each file in core/testdata/*.txt is a sequence of
//! commands, each followed by `----` and the output it must produce. Any
//! change in behaviour changes the output and fails the test; after a
//! deliberate change, regenerate with `REWRITE=1 cargo test -p cairn-core
//! --test raft_interaction` and review the diff.
//!
//! Commands (ids are node ids; `all` means every node):
//! - `add-nodes <n> [pre-vote=b] [check-quorum=b] [election=t] [heartbeat=t]
//!   [inflight=n] [msg-bytes=n] [chunk-bytes=n] [uncommitted-bytes=n]`: founds
//!   a cluster of voters 1..n.
//! - `add-joiner <id> [options]`: a node started with `Start::Join`.
//! - `tick <ids> [n]`, `tick-election <id>` (tick until it campaigns),
//!   `tick-heartbeat <id>` (one heartbeat interval).
//! - `campaign <id>`, `propose <id> <data>`, `propose-conf-change <id>
//!   add-voter=<id>|add-learner=<id>|promote=<id>|remove=<id>`,
//!   `read-index <id> <context>`, `transfer-leader <id> <to>`,
//!   `compact <id> [index]`, `restart <id>`, `report-unreachable <id> <peer>`.
//! - `process-ready <ids>`: carry out each node's Ready and print it.
//! - `deliver-msgs [ids] [drop=(ids)] [reverse] [duplicate]`: deliver queued
//!   messages addressed to `ids`; `drop` discards those addressed to the
//!   listed nodes.
//! - `stabilize [ids]`: process-ready and deliver until nothing moves.
//! - `partition (a,b) (c)`, `heal`: messages across groups are dropped.
//! - `raft-log <id>`, `status <id>`, `state <id>`.
//!
//! After every command the cluster-wide safety checks run.

mod raft_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use cairn_core::raft::{
    ConfChange, Config, Index, Message, MessageBody, NodeId, ProposeError, Role, Start,
};
use raft_support::{format_entry, format_message, format_role, ids, SafetyChecker, TestNode};

/// A script that never settles is a bug; stop after this many rounds.
const STABILIZE_ROUNDS_MAX: usize = 1000;
/// The scenarios the issue asks for need at least this many scripts.
const SCRIPTS_MIN: usize = 30;
/// `tick-election` gives up after this many election timeouts.
const TICK_ELECTION_TIMEOUTS_MAX: u64 = 3;

struct Environment {
    nodes: BTreeMap<NodeId, TestNode>,
    /// Messages sent and not yet delivered, in send order.
    network: Vec<Message>,
    /// Partition groups; empty when healed.
    partition: Vec<BTreeSet<NodeId>>,
    checker: SafetyChecker,
}

struct Command {
    name: String,
    positional: Vec<String>,
    options: BTreeMap<String, String>,
}

impl Command {
    fn parse(line: &str) -> Command {
        let mut words = line.split_whitespace();
        let name = words.next().expect("command name").to_string();
        let mut positional = Vec::new();
        let mut options = BTreeMap::new();
        for word in words {
            match word.split_once('=') {
                Some((key, value)) => {
                    options.insert(key.to_string(), value.to_string());
                }
                None => positional.push(word.to_string()),
            }
        }
        Command {
            name,
            positional,
            options,
        }
    }

    fn id(&self, position: usize) -> NodeId {
        let word = self
            .positional
            .get(position)
            .unwrap_or_else(|| panic!("{}: missing id", self.name));
        NodeId(
            word.parse()
                .unwrap_or_else(|_| panic!("{}: bad id {word}", self.name)),
        )
    }

    fn number(&self, position: usize, default: u64) -> u64 {
        self.positional
            .get(position)
            .map_or(default, |w| w.parse().expect("number"))
    }
}

fn parse_ids(text: &str) -> BTreeSet<NodeId> {
    text.trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .filter(|w| !w.is_empty())
        .map(|w| NodeId(w.trim().parse().expect("id")))
        .collect()
}

impl Environment {
    fn new() -> Environment {
        Environment {
            nodes: BTreeMap::new(),
            network: Vec::new(),
            partition: Vec::new(),
            checker: SafetyChecker::default(),
        }
    }

    fn config(&self, id: NodeId, options: &BTreeMap<String, String>) -> Config {
        let mut config = Config::new(id, 7);
        for (key, value) in options {
            let number = || {
                value
                    .parse::<u64>()
                    .unwrap_or_else(|_| panic!("{key}={value}"))
            };
            let flag = || {
                value
                    .parse::<bool>()
                    .unwrap_or_else(|_| panic!("{key}={value}"))
            };
            match key.as_str() {
                "pre-vote" => config.pre_vote = flag(),
                "check-quorum" => config.check_quorum = flag(),
                "election" => config.election_timeout_ticks = number(),
                "heartbeat" => config.heartbeat_interval_ticks = number(),
                "inflight" => config.inflight_messages_max = number() as usize,
                "msg-bytes" => config.message_bytes_max = number(),
                "chunk-bytes" => config.snapshot_chunk_bytes_max = number(),
                "uncommitted-bytes" => config.uncommitted_bytes_max = number(),
                "seed" => config.seed = number(),
                other => panic!("unknown option {other}"),
            }
        }
        config
    }

    fn selected(&self, command: &Command) -> Vec<NodeId> {
        let words: Vec<&String> = command.positional.iter().collect();
        if words.is_empty() || words[0] == "all" {
            return self.nodes.keys().copied().collect();
        }
        words.iter().flat_map(|w| parse_ids(w)).collect()
    }

    fn node(&mut self, id: NodeId) -> &mut TestNode {
        self.nodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no node {}", id.0))
    }

    fn blocked(&self, message: &Message) -> bool {
        if self.partition.is_empty() {
            return false;
        }
        let group = |id: NodeId| self.partition.iter().position(|g| g.contains(&id));
        group(message.from) != group(message.to) || group(message.from).is_none()
    }

    fn process_ready(&mut self, ids: &[NodeId], out: &mut Vec<String>) -> bool {
        let mut any = false;
        for id in ids {
            let mut outbox = Vec::new();
            if let Some(lines) = self.node(*id).handle_ready(&mut outbox) {
                out.extend(lines);
                any = true;
            }
            self.network.extend(outbox);
        }
        any
    }

    /// Delivers queued messages addressed to `to`; returns whether any moved.
    fn deliver(
        &mut self,
        to: &BTreeSet<NodeId>,
        drop: &BTreeSet<NodeId>,
        reverse: bool,
        duplicate: bool,
        print_delivered: bool,
        out: &mut Vec<String>,
    ) -> bool {
        let (mut selected, rest): (Vec<Message>, Vec<Message>) = std::mem::take(&mut self.network)
            .into_iter()
            .partition(|m| to.contains(&m.to));
        self.network = rest;
        if reverse {
            selected.reverse();
        }
        let any = !selected.is_empty();
        for message in selected {
            let text = format_message(&message);
            if drop.contains(&message.to)
                || self.blocked(&message)
                || !self.nodes.contains_key(&message.to)
            {
                out.push(format!("dropped {text}"));
                continue;
            }
            if print_delivered {
                out.push(text);
            }
            let copies = if duplicate { 2 } else { 1 };
            for _ in 0..copies {
                self.node(message.to).raft.step(message.clone());
            }
        }
        any
    }

    fn run(&mut self, command: &Command) -> Vec<String> {
        let mut out = Vec::new();
        match command.name.as_str() {
            "add-nodes" => {
                let count = command.number(0, 0);
                let voters: BTreeSet<NodeId> = (1..=count).map(NodeId).collect();
                for id in &voters {
                    let config = self.config(*id, &command.options);
                    let mut node = TestNode::new(
                        config,
                        Start::New {
                            voters: voters.clone(),
                        },
                    );
                    // The driver persists the bootstrap configuration.
                    let mut outbox = Vec::new();
                    node.handle_ready(&mut outbox);
                    assert!(outbox.is_empty(), "a new node sends nothing");
                    self.nodes.insert(*id, node);
                }
            }
            "add-joiner" => {
                let id = command.id(0);
                let config = self.config(id, &command.options);
                self.nodes.insert(id, TestNode::new(config, Start::Join));
            }
            "tick" => {
                let count = command
                    .positional
                    .get(1)
                    .map_or(1, |w| w.parse().expect("count"));
                let selected: Vec<NodeId> = match command.positional.first() {
                    Some(word) if word != "all" => parse_ids(word).into_iter().collect(),
                    _ => self.nodes.keys().copied().collect(),
                };
                for _ in 0..count {
                    for id in &selected {
                        self.node(*id).raft.tick();
                    }
                }
            }
            "tick-election" => {
                // Tick until the node asks for (pre-)votes, carrying out its
                // Readies on the way.
                let id = command.id(0);
                let limit =
                    TICK_ELECTION_TIMEOUTS_MAX * 2 * self.node(id).config.election_timeout_ticks;
                let mut ticks = 0;
                let mut lines = Vec::new();
                loop {
                    assert!(
                        ticks < limit,
                        "node {} did not campaign in {limit} ticks",
                        id.0
                    );
                    self.node(id).raft.tick();
                    ticks += 1;
                    let mut outbox = Vec::new();
                    if let Some(ready_lines) = self.node(id).handle_ready(&mut outbox) {
                        lines.extend(ready_lines);
                    }
                    let campaigned = outbox.iter().any(|m| {
                        matches!(
                            m.body,
                            MessageBody::PreVote { .. } | MessageBody::Vote { .. }
                        )
                    });
                    self.network.extend(outbox);
                    if campaigned || matches!(self.node(id).raft.role(), Role::Leader) {
                        break;
                    }
                }
                out.push(format!("ticks={ticks}"));
                out.extend(lines);
            }
            "tick-heartbeat" => {
                let id = command.id(0);
                let node = self.node(id);
                for _ in 0..node.config.heartbeat_interval_ticks {
                    node.raft.tick();
                }
            }
            "campaign" => self.node(command.id(0)).raft.campaign(),
            "propose" => {
                let id = command.id(0);
                let data = command
                    .positional
                    .get(1)
                    .expect("data")
                    .clone()
                    .into_bytes();
                if let Err(error) = self.node(id).raft.propose(data) {
                    out.push(format!("error: {}", format_error(&error)));
                }
            }
            "propose-conf-change" => {
                let id = command.id(0);
                let (key, value) = command.options.iter().next().expect("change");
                let target = NodeId(value.parse().expect("id"));
                let change = match key.as_str() {
                    "add-voter" => ConfChange::AddVoter {
                        id: target,
                        context: Vec::new(),
                    },
                    "add-learner" => ConfChange::AddLearner {
                        id: target,
                        context: Vec::new(),
                    },
                    "promote" => ConfChange::PromoteLearner { id: target },
                    "remove" => ConfChange::RemoveNode { id: target },
                    other => panic!("unknown change {other}"),
                };
                if let Err(error) = self.node(id).raft.propose_conf_change(change) {
                    out.push(format!("error: {}", format_error(&error)));
                }
            }
            "read-index" => {
                let id = command.id(0);
                let context = command
                    .positional
                    .get(1)
                    .expect("context")
                    .clone()
                    .into_bytes();
                if let Err(error) = self.node(id).raft.read_index(context) {
                    out.push(format!("error: {}", format_error(&error)));
                }
            }
            "transfer-leader" => {
                let (id, to) = (command.id(0), command.id(1));
                self.node(id).raft.transfer_leader(to);
            }
            "compact" => {
                let id = command.id(0);
                let node = self.node(id);
                let index = Index(command.number(1, node.applied.0));
                node.compact(index);
                out.push(format!("first_index={}", node.raft.first_index().0));
            }
            "restart" => {
                let id = command.id(0);
                self.node(id).restart();
                let node = self.node(id);
                out.push(format!(
                    "term={} commit={} last={} voters={}",
                    node.raft.term().0,
                    node.raft.commit_index().0,
                    node.raft.last_index().0,
                    ids(&node.raft.conf_state().voters)
                ));
            }
            "report-unreachable" => {
                let (id, peer) = (command.id(0), command.id(1));
                self.node(id).raft.report_unreachable(peer);
            }
            "report-leader-down" => {
                let (id, peer) = (command.id(0), command.id(1));
                self.node(id).raft.report_leader_down(peer);
            }
            "process-ready" => {
                let selected = self.selected(command);
                self.process_ready(&selected, &mut out);
            }
            "deliver-msgs" => {
                let reverse = command.positional.iter().any(|w| w == "reverse");
                let duplicate = command.positional.iter().any(|w| w == "duplicate");
                let words: Vec<&String> = command
                    .positional
                    .iter()
                    .filter(|w| *w != "reverse" && *w != "duplicate" && *w != "all")
                    .collect();
                let to: BTreeSet<NodeId> = if words.is_empty() {
                    self.nodes.keys().copied().collect()
                } else {
                    words.iter().flat_map(|w| parse_ids(w)).collect()
                };
                let drop = command
                    .options
                    .get("drop")
                    .map(|w| parse_ids(w))
                    .unwrap_or_default();
                self.deliver(&to, &drop, reverse, duplicate, true, &mut out);
            }
            "stabilize" => {
                let selected = self.selected(command);
                let to: BTreeSet<NodeId> = selected.iter().copied().collect();
                let mut rounds = 0;
                loop {
                    let readied = self.process_ready(&selected, &mut out);
                    let delivered =
                        self.deliver(&to, &BTreeSet::new(), false, false, false, &mut out);
                    self.checker.check(&self.nodes);
                    if !readied && !delivered {
                        break;
                    }
                    rounds += 1;
                    assert!(rounds < STABILIZE_ROUNDS_MAX, "stabilize did not settle");
                }
            }
            "partition" => {
                self.partition = command.positional.iter().map(|w| parse_ids(w)).collect();
            }
            "heal" => self.partition.clear(),
            "raft-log" => {
                let node = self.node(command.id(0));
                let raft = &node.raft;
                out.push(format!(
                    "first={} last={} commit={} applied={}",
                    raft.first_index().0,
                    raft.last_index().0,
                    raft.commit_index().0,
                    raft.applied_index().0
                ));
                for entry in raft.entries(raft.first_index(), Index(raft.last_index().0 + 1)) {
                    out.push(format_entry(&entry));
                }
            }
            "status" => {
                let status = self.node(command.id(0)).raft.status();
                let leader = status
                    .leader
                    .map_or("none".to_string(), |l| l.0.to_string());
                let vote = status.vote.map_or("none".to_string(), |v| v.0.to_string());
                out.push(format!(
                    "role={} term={} vote={vote} leader={leader} commit={} applied={} last={}",
                    format_role(status.role),
                    status.term.0,
                    status.commit.0,
                    status.applied.0,
                    status.last_index.0
                ));
                out.push(format!(
                    "voters={} learners={}",
                    ids(&status.conf_state.voters),
                    ids(&status.conf_state.learners)
                ));
                if !status.match_index.is_empty() {
                    let matches: Vec<String> = status
                        .match_index
                        .iter()
                        .map(|(id, m)| format!("{}:{}", id.0, m.0))
                        .collect();
                    out.push(format!("match {}", matches.join(" ")));
                }
            }
            "state" => {
                let node = self.node(command.id(0));
                let items: Vec<String> = node
                    .state
                    .iter()
                    .map(|(i, d)| format!("{}={d}", i.0))
                    .collect();
                out.push(format!("applied={} [{}]", node.applied.0, items.join(" ")));
            }
            other => panic!("unknown command {other}"),
        }
        self.checker.check(&self.nodes);
        out
    }
}

fn format_error(error: &ProposeError) -> String {
    error.to_string()
}

/// One script block: comment lines, a command, and its expected output.
struct Block {
    comments: Vec<String>,
    command: String,
    expected: Vec<String>,
}

fn parse_script(text: &str, path: &Path) -> (Vec<String>, Vec<Block>) {
    let mut lines = text.lines().peekable();
    let mut header = Vec::new();
    let mut blocks = Vec::new();
    let mut comments = Vec::new();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() {
            if blocks.is_empty() && !comments.is_empty() && header.is_empty() {
                header = std::mem::take(&mut comments);
            }
            continue;
        }
        if line.starts_with('#') {
            comments.push(line.to_string());
            continue;
        }
        let command = line.to_string();
        let separator = lines.next();
        assert_eq!(
            separator,
            Some("----"),
            "{}: `{command}` lacks ----",
            path.display()
        );
        let mut expected = Vec::new();
        while let Some(next) = lines.peek() {
            if next.is_empty() {
                break;
            }
            expected.push(next.to_string());
            lines.next();
        }
        blocks.push(Block {
            comments: std::mem::take(&mut comments),
            command,
            expected,
        });
    }
    if header.is_empty() && blocks.is_empty() {
        header = comments;
    }
    (header, blocks)
}

fn run_script(path: &Path, rewrite: bool) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let first = text.lines().next().unwrap_or_default();
    if !first.starts_with('#') {
        return Err(format!(
            "{}: must open with a `#` line saying what it guards",
            path.display()
        ));
    }
    let (header, blocks) = parse_script(&text, path);
    let mut environment = Environment::new();
    let mut rewritten = String::new();
    for line in &header {
        writeln!(rewritten, "{line}").expect("write");
    }
    let mut failures = String::new();
    for block in &blocks {
        let mut actual = environment.run(&Command::parse(&block.command));
        if actual.is_empty() {
            actual.push("ok".to_string());
        }
        if !rewritten.is_empty() {
            rewritten.push('\n');
        }
        for comment in &block.comments {
            writeln!(rewritten, "{comment}").expect("write");
        }
        writeln!(rewritten, "{}\n----", block.command).expect("write");
        for line in &actual {
            writeln!(rewritten, "{line}").expect("write");
        }
        if actual != block.expected && failures.is_empty() {
            writeln!(
                failures,
                "{}: `{}` produced:\n{}\nexpected:\n{}",
                path.display(),
                block.command,
                actual.join("\n"),
                block.expected.join("\n")
            )
            .expect("write");
        }
    }
    if rewrite {
        std::fs::write(path, rewritten).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(());
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

fn scripts() -> Vec<PathBuf> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&directory)
        .expect("core/testdata exists")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    paths
}

#[test]
fn interaction_scripts() {
    let rewrite = std::env::var_os("REWRITE").is_some();
    let paths = scripts();
    let mut failures = Vec::new();
    for path in &paths {
        let outcome = std::panic::catch_unwind(|| run_script(path, rewrite));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => failures.push(failure),
            Err(_) => failures.push(format!("{}: panicked", path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} script(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn enough_scripts() {
    let count = scripts().len();
    assert!(
        count >= SCRIPTS_MIN,
        "expected at least {SCRIPTS_MIN} scripts, found {count}"
    );
}
