//! Scenario files: what a simulation run does, in a form someone who has
//! never seen the code can read and write.
//!
//! A scenario is a text file of `setting = value` lines, then either a
//! scripted `timeline:` or a random `nemesis:` section (or `nemesis = swarm`
//! to let the seed pick faults too). `#` starts a comment. Anything the file
//! leaves out, or gives as a range `low..high`, is drawn from the seed by
//! [`crate::swarm`].
//!
//! ```text
//! # The leader is cut off with a minority; the majority must carry on.
//! name = leader-isolated-minority
//! description = The leader and one follower are partitioned away.
//! cluster_size = 5
//! duration = 30s
//! workload = put 40, get 30, cas 20, range 10
//! checks = linearizable, revisions, raft, durability, liveness
//!
//! timeline:
//!   at 5s partition isolate-leader
//!   at 15s heal
//!   at 20s kill leader for 3s
//! ```
//!
//! A timeline line is `at <time> <fault> [<target>] [<option>=<value>...]
//! [for <duration>]`; a nemesis line is `<fault> [<target>] [options]
//! every <interval> [for <duration>]`. With `for`, the fault is undone after
//! that long (restart after kill, resume after pause, heal after a network
//! fault, normal clock after a clock fault).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

/// Most members a scenario may ask for.
pub const CLUSTER_SIZE_MAX: u32 = 9;
/// Most simulated clients.
pub const CLIENTS_MAX: u32 = 256;
/// Most keys in the workload's key space.
pub const KEYS_MAX: u32 = 10_000;
/// Most watchers.
pub const WATCHERS_MAX: u32 = 64;
/// Longest safety phase.
pub const DURATION_MAX: Duration = Duration::from_secs(3_600);
/// Default liveness timeout: after healing, progress must resume within it.
pub const LIVENESS_TIMEOUT_DEFAULT: Duration = Duration::from_secs(20);
/// Most timeline steps or nemesis lines in one file.
pub const STEPS_MAX: usize = 1_000;

/// What a scenario error is about.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioErrorKind {
    /// A line that is neither a setting, a section header nor a section line.
    #[error("cannot read {text:?}: expected `setting = value`, `timeline:` or `nemesis:`")]
    Malformed {
        /// The line.
        text: String,
    },
    /// An unknown setting name.
    #[error("unknown setting {name:?}; known settings: {known}")]
    UnknownSetting {
        /// The name.
        name: String,
        /// The known ones.
        known: String,
    },
    /// A setting given twice.
    #[error("setting {name:?} given twice (first on line {first_line})")]
    DuplicateSetting {
        /// The name.
        name: String,
        /// Where it was first given.
        first_line: usize,
    },
    /// A required setting is missing.
    #[error("missing required setting {name:?}")]
    MissingSetting {
        /// The name.
        name: &'static str,
    },
    /// A value that does not parse or is out of bounds.
    #[error("{what}: bad value {value:?}, expected {expected}")]
    BadValue {
        /// The setting or word it is for.
        what: String,
        /// The value.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// An unknown fault or action.
    #[error("unknown fault {name:?}; known faults: {known}")]
    UnknownFault {
        /// The name.
        name: String,
        /// The known ones.
        known: String,
    },
    /// A fault used with something it does not take.
    #[error("fault {fault}: {problem}")]
    BadFault {
        /// The fault.
        fault: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// A section problem.
    #[error("{problem}")]
    BadSection {
        /// What is wrong.
        problem: String,
    },
}

/// A scenario file that does not parse, with the line to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {kind}")]
pub struct ScenarioError {
    /// The file (or scenario) name.
    pub file: String,
    /// 1-based line number; 0 for the file as a whole.
    pub line: usize,
    /// What is wrong.
    pub kind: ScenarioErrorKind,
}

/// Either one value or a range the seed draws from (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span<T> {
    /// The smallest value.
    pub low: T,
    /// The largest value.
    pub high: T,
}

impl<T: Copy + PartialOrd> Span<T> {
    /// A single value.
    pub fn fixed(value: T) -> Span<T> {
        Span {
            low: value,
            high: value,
        }
    }

    /// Whether the span holds one value only.
    pub fn is_fixed(&self) -> bool {
        self.low == self.high
    }
}

impl<T: fmt::Display + PartialEq> fmt::Display for Span<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}..{}", self.low, self.high)
        }
    }
}

/// How a network partition splits the members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PartitionKind {
    /// Two halves chosen by the seed.
    RandomHalves,
    /// The leader alone on one side.
    IsolateLeader,
    /// The leader with a minority on one side.
    Minority,
    /// The leader with a bare majority; the rest cut off.
    Majority,
    /// Two halves joined by one member that sees both (the "bridge").
    Bridge,
    /// Messages flow one way only between two groups.
    OneWay,
}

impl PartitionKind {
    /// Every kind, in the order the run summary lists them.
    pub const ALL: [PartitionKind; 6] = [
        PartitionKind::RandomHalves,
        PartitionKind::IsolateLeader,
        PartitionKind::Minority,
        PartitionKind::Majority,
        PartitionKind::Bridge,
        PartitionKind::OneWay,
    ];

    /// The kind's name in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            PartitionKind::RandomHalves => "random-halves",
            PartitionKind::IsolateLeader => "isolate-leader",
            PartitionKind::Minority => "minority",
            PartitionKind::Majority => "majority",
            PartitionKind::Bridge => "bridge",
            PartitionKind::OneWay => "one-way",
        }
    }
}

/// A fault or a scripted cluster action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Kill the process (unsynced data is lost).
    Kill,
    /// Start a killed member again.
    Restart,
    /// Stop a member's process without killing it.
    Pause,
    /// Continue a paused member.
    Resume,
    /// Kill a member and erase its data directory; it rejoins empty.
    Wipe,
    /// Ask the leader to hand leadership to the target.
    TransferLeader,
    /// Split the network.
    Partition(PartitionKind),
    /// Drop messages with a probability.
    Loss,
    /// Deliver messages twice with a probability.
    Duplicate,
    /// Deliver messages out of order with a probability.
    Reorder,
    /// Delay every message by a latency.
    DelaySpike,
    /// Undo every network fault.
    Heal,
    /// Run the target's clock (tick rate) fast or slow.
    ClockDrift,
    /// Stop the target's clock.
    ClockPause,
    /// On the next crash, lose every write not yet fsynced.
    LoseUnsynced,
    /// On the next crash, tear the last write in half.
    TornWrite,
    /// Flip one bit in a file on disk.
    BitFlip,
    /// Make the next fsync fail.
    FsyncError,
    /// Make fsync slow by a latency.
    SlowFsync,
    /// Crash the target inside its next fsync of entries or a hard state:
    /// the batch is written, not yet durable, and lost, torn or kept.
    CrashInFsync,
    /// Make every fsync of the target take a latency before its data is
    /// durable (a crash meanwhile loses it).
    FsyncStall,
    /// Make writes fail with "no space".
    DiskFull,
    /// Add a new member as a learner.
    AddLearner,
    /// Promote a caught-up learner to voter.
    PromoteLearner,
    /// Remove the target from the cluster.
    RemoveMember,
    /// Compact the KV history up to the current revision.
    Compact,
}

/// The parameters a fault may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultOption {
    /// Chance per message, in percent.
    Probability,
    /// Added latency.
    Latency,
    /// Clock rate in percent of real time (100 is no drift).
    Rate,
    /// For `bit-flip`: the chance, in percent, that the flip lands near the
    /// end of the live (last) WAL segment rather than anywhere on disk.
    /// Absent means 0%, so older scenarios draw as before.
    LiveWal,
}

impl FaultOption {
    /// The option's name in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            FaultOption::Probability => "probability",
            FaultOption::Latency => "latency",
            FaultOption::Rate => "rate",
            FaultOption::LiveWal => "live-wal",
        }
    }

    /// Whether the option is a percentage (else a duration).
    pub fn is_percent(self) -> bool {
        matches!(
            self,
            FaultOption::Probability | FaultOption::Rate | FaultOption::LiveWal
        )
    }
}

/// An option's value: a percentage or a duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Quantity {
    /// Percent.
    Percent(u32),
    /// A duration.
    Duration(Duration),
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quantity::Percent(percent) => write!(f, "{percent}%"),
            Quantity::Duration(duration) => write!(f, "{}", DisplayDuration(*duration)),
        }
    }
}

/// Prints a duration the way scenario files write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DisplayDuration(pub Duration);

impl fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if millis.is_multiple_of(1000) {
            write!(f, "{}s", millis / 1000)
        } else {
            write!(f, "{millis}ms")
        }
    }
}

/// Whom a fault hits. Resolved when the fault fires, except `Random`,
/// which the seed resolves up front.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// The current leader.
    Leader,
    /// One follower.
    Follower,
    /// A member chosen by the seed.
    Random,
    /// Every member.
    All,
    /// A minority of members (never the whole cluster).
    Minority,
    /// A majority of members.
    Majority,
    /// Member number `n` (1-based).
    Node(u32),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Leader => write!(f, "leader"),
            Target::Follower => write!(f, "follower"),
            Target::Random => write!(f, "random"),
            Target::All => write!(f, "all"),
            Target::Minority => write!(f, "minority"),
            Target::Majority => write!(f, "majority"),
            Target::Node(node) => write!(f, "node {node}"),
        }
    }
}

/// What a fault needs besides its name.
struct FaultShape {
    /// Whether it takes a target, and the default when omitted.
    target: TargetRule,
    /// The options it accepts.
    options: &'static [FaultOption],
    /// Whether `for <duration>` (auto-undo) makes sense.
    undoable: bool,
}

enum TargetRule {
    /// No target.
    None,
    /// A target, defaulting to this one.
    Default(Target),
}

impl Fault {
    /// Every fault, for help texts and swarm drawing.
    pub fn all() -> Vec<Fault> {
        let mut all = vec![
            Fault::Kill,
            Fault::Restart,
            Fault::Pause,
            Fault::Resume,
            Fault::Wipe,
            Fault::TransferLeader,
        ];
        all.extend(
            PartitionKind::ALL
                .iter()
                .map(|kind| Fault::Partition(*kind)),
        );
        all.extend([
            Fault::Loss,
            Fault::Duplicate,
            Fault::Reorder,
            Fault::DelaySpike,
            Fault::Heal,
            Fault::ClockDrift,
            Fault::ClockPause,
            Fault::LoseUnsynced,
            Fault::TornWrite,
            Fault::BitFlip,
            Fault::FsyncError,
            Fault::SlowFsync,
            Fault::CrashInFsync,
            Fault::FsyncStall,
            Fault::DiskFull,
            Fault::AddLearner,
            Fault::PromoteLearner,
            Fault::RemoveMember,
            Fault::Compact,
        ]);
        all
    }

    /// The fault's name in scenario files and in the run summary's counts
    /// (partitions count under `partition <kind>`).
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Restart => "restart",
            Fault::Pause => "pause",
            Fault::Resume => "resume",
            Fault::Wipe => "wipe",
            Fault::TransferLeader => "transfer-leader",
            Fault::Partition(PartitionKind::RandomHalves) => "partition random-halves",
            Fault::Partition(PartitionKind::IsolateLeader) => "partition isolate-leader",
            Fault::Partition(PartitionKind::Minority) => "partition minority",
            Fault::Partition(PartitionKind::Majority) => "partition majority",
            Fault::Partition(PartitionKind::Bridge) => "partition bridge",
            Fault::Partition(PartitionKind::OneWay) => "partition one-way",
            Fault::Loss => "loss",
            Fault::Duplicate => "duplicate",
            Fault::Reorder => "reorder",
            Fault::DelaySpike => "delay-spike",
            Fault::Heal => "heal",
            Fault::ClockDrift => "clock-drift",
            Fault::ClockPause => "clock-pause",
            Fault::LoseUnsynced => "lose-unsynced",
            Fault::TornWrite => "torn-write",
            Fault::BitFlip => "bit-flip",
            Fault::FsyncError => "fsync-error",
            Fault::SlowFsync => "slow-fsync",
            Fault::CrashInFsync => "crash-in-fsync",
            Fault::FsyncStall => "fsync-stall",
            Fault::DiskFull => "disk-full",
            Fault::AddLearner => "add-learner",
            Fault::PromoteLearner => "promote-learner",
            Fault::RemoveMember => "remove-member",
            Fault::Compact => "compact",
        }
    }

    fn shape(self) -> FaultShape {
        use FaultOption::{Latency, LiveWal, Probability, Rate};
        let node = |default: Target, undoable: bool| FaultShape {
            target: TargetRule::Default(default),
            options: &[],
            undoable,
        };
        let network = |options: &'static [FaultOption]| FaultShape {
            target: TargetRule::Default(Target::All),
            options,
            undoable: true,
        };
        let bare = |undoable: bool| FaultShape {
            target: TargetRule::None,
            options: &[],
            undoable,
        };
        match self {
            Fault::Kill | Fault::Pause | Fault::Wipe => node(Target::Random, true),
            Fault::Restart | Fault::Resume => node(Target::All, false),
            Fault::TransferLeader => node(Target::Follower, false),
            Fault::Partition(_) => bare(true),
            Fault::Loss | Fault::Duplicate | Fault::Reorder => network(&[Probability]),
            Fault::DelaySpike => network(&[Latency]),
            Fault::Heal => bare(false),
            Fault::ClockDrift => FaultShape {
                target: TargetRule::Default(Target::Random),
                options: &[Rate],
                undoable: true,
            },
            Fault::ClockPause => node(Target::Random, true),
            Fault::LoseUnsynced | Fault::TornWrite => node(Target::Random, false),
            Fault::BitFlip => FaultShape {
                target: TargetRule::Default(Target::Random),
                options: &[LiveWal],
                undoable: false,
            },
            Fault::FsyncError | Fault::DiskFull => node(Target::Random, true),
            Fault::CrashInFsync => node(Target::Random, true),
            Fault::SlowFsync | Fault::FsyncStall => FaultShape {
                target: TargetRule::Default(Target::Random),
                options: &[Latency],
                undoable: true,
            },
            Fault::AddLearner | Fault::PromoteLearner | Fault::Compact => bare(false),
            Fault::RemoveMember => node(Target::Follower, false),
        }
    }

    /// The options this fault accepts.
    pub fn options(self) -> &'static [FaultOption] {
        self.shape().options
    }

    /// Whether the fault takes a target.
    pub fn takes_target(self) -> bool {
        matches!(self.shape().target, TargetRule::Default(_))
    }

    /// Whether `for <duration>` may undo it.
    pub fn undoable(self) -> bool {
        self.shape().undoable
    }

    /// The target used when the file names none.
    pub fn default_target(self) -> Option<Target> {
        match self.shape().target {
            TargetRule::None => None,
            TargetRule::Default(target) => Some(target),
        }
    }
}

/// A fault with its target and options, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultSpec {
    /// The fault.
    pub fault: Fault,
    /// Whom it hits (the fault's default when the file names none).
    pub target: Option<Target>,
    /// Its options (defaults filled in).
    pub options: BTreeMap<FaultOption, Span<Quantity>>,
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.fault.name())?;
        if let Some(target) = self.target {
            write!(f, " {target}")?;
        }
        for (option, value) in &self.options {
            write!(f, " {}={value}", option.name())?;
        }
        Ok(())
    }
}

/// One scripted step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineStep {
    /// Its line in the file.
    pub line: usize,
    /// When it fires, from the start of the run.
    pub at: Duration,
    /// What it does.
    pub fault: FaultSpec,
    /// Undo it after this long.
    pub lasting: Option<Duration>,
    /// The members a partition's own random choice picked, pinned with
    /// `members=2,4` (one side of `random-halves`, the from/to pair of
    /// `one-way`, the middle of `bridge`): what `cairn-sim shrink` writes
    /// so a pinned scenario replays the drawn schedule exactly.
    pub members: Option<Vec<u32>>,
}

/// One recurring random fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RandomFault {
    /// Its line in the file.
    pub line: usize,
    /// What it does.
    pub fault: FaultSpec,
    /// Time between two occurrences.
    pub every: Span<Duration>,
    /// Undo each occurrence after this long.
    pub lasting: Option<Span<Duration>>,
}

/// Where the faults come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Nemesis {
    /// No faults: a baseline.
    None,
    /// The `timeline:` section.
    Scripted(Vec<TimelineStep>),
    /// The `nemesis:` section.
    Random(Vec<RandomFault>),
    /// Everything, drawn from the seed.
    Swarm,
}

/// A kind of operation the workload issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OperationKind {
    /// Put.
    Put,
    /// Linearizable get.
    Get,
    /// Serializable get.
    SerializableGet,
    /// Delete.
    Delete,
    /// Compare-and-swap transaction.
    CompareAndSwap,
    /// Prefix range.
    Range,
    /// Lease grant, attach keys, keepalive, revoke.
    Lease,
    /// Lock acquire/release with a lease (contention).
    Lock,
    /// General transaction on the txn keys: compares on every target with
    /// every operator, several keys, nested txns.
    Txn,
}

impl OperationKind {
    /// Every kind.
    pub const ALL: [OperationKind; 9] = [
        OperationKind::Put,
        OperationKind::Get,
        OperationKind::SerializableGet,
        OperationKind::Delete,
        OperationKind::CompareAndSwap,
        OperationKind::Range,
        OperationKind::Lease,
        OperationKind::Lock,
        OperationKind::Txn,
    ];

    /// The kind's name in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            OperationKind::Put => "put",
            OperationKind::Get => "get",
            OperationKind::SerializableGet => "serializable-get",
            OperationKind::Delete => "delete",
            OperationKind::CompareAndSwap => "cas",
            OperationKind::Range => "range",
            OperationKind::Lease => "lease",
            OperationKind::Lock => "lock",
            OperationKind::Txn => "txn",
        }
    }
}

/// Relative weights of operation kinds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadMix {
    /// Weight per kind; kinds absent have weight 0.
    pub weights: BTreeMap<OperationKind, u32>,
}

impl fmt::Display for WorkloadMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .weights
            .iter()
            .map(|(kind, weight)| format!("{} {weight}", kind.name()))
            .collect();
        write!(f, "{}", parts.join(", "))
    }
}

/// A property the run must satisfy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    /// The per-key linearizability search.
    Linearizable,
    /// The revision-order checker.
    Revisions,
    /// Raft invariants after every step.
    Raft,
    /// Watch guarantees.
    Watch,
    /// No acknowledged write lost.
    Durability,
    /// Lease safety.
    Lease,
    /// Progress after healing.
    Liveness,
    /// Leaders' match indexes are durable; replicas converge after healing.
    Convergence,
}

impl Check {
    /// Every check.
    pub const ALL: [Check; 8] = [
        Check::Linearizable,
        Check::Revisions,
        Check::Raft,
        Check::Watch,
        Check::Durability,
        Check::Lease,
        Check::Liveness,
        Check::Convergence,
    ];

    /// The check's name in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Check::Linearizable => "linearizable",
            Check::Revisions => "revisions",
            Check::Raft => "raft",
            Check::Watch => "watch",
            Check::Durability => "durability",
            Check::Lease => "lease",
            Check::Liveness => "liveness",
            Check::Convergence => "convergence",
        }
    }
}

/// A parsed scenario. `None` and ranges are drawn from the seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Short name (the file's stem).
    pub name: String,
    /// What the scenario exercises, in a sentence or two.
    pub description: String,
    /// Members at start.
    pub cluster_size: Option<Span<u32>>,
    /// Length of the safety phase (faults on).
    pub duration: Duration,
    /// After healing, progress must resume within this.
    pub liveness_timeout: Duration,
    /// Concurrent clients.
    pub clients: Option<Span<u32>>,
    /// Size of the key space.
    pub keys: Option<Span<u32>>,
    /// Operation mix.
    pub workload: Option<WorkloadMix>,
    /// Concurrent watchers.
    pub watchers: Option<Span<u32>>,
    /// TTL of granted leases.
    pub lease_ttl: Option<Span<Duration>>,
    /// Interval between compactions; `None` lets the seed decide.
    pub compact_every: Option<Span<Duration>>,
    /// How often the leader checkpoints every lease's remaining TTL
    /// (etcd's `--experimental-lease-checkpoint-interval`); `None` lets the
    /// seed decide.
    pub lease_checkpoint_interval: Option<Span<Duration>>,
    /// What must hold.
    pub checks: BTreeSet<Check>,
    /// Where faults come from.
    pub nemesis: Nemesis,
}

const SETTINGS: [&str; 14] = [
    "name",
    "description",
    "cluster_size",
    "duration",
    "liveness_timeout",
    "clients",
    "keys",
    "workload",
    "watchers",
    "lease_ttl",
    "compact_every",
    "lease_checkpoint_interval",
    "checks",
    "nemesis",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Settings,
    Timeline,
    Nemesis,
}

impl Scenario {
    /// Parses scenario text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
        Parser {
            file,
            settings: BTreeMap::new(),
            timeline: None,
            nemesis: None,
        }
        .parse(text)
    }
}

struct Parser<'a> {
    file: &'a str,
    /// Setting name to (line, value).
    settings: BTreeMap<String, (usize, String)>,
    timeline: Option<(usize, Vec<TimelineStep>)>,
    nemesis: Option<(usize, Vec<RandomFault>)>,
}

impl Parser<'_> {
    fn error(&self, line: usize, kind: ScenarioErrorKind) -> ScenarioError {
        ScenarioError {
            file: self.file.to_string(),
            line,
            kind,
        }
    }

    fn parse(mut self, text: &str) -> Result<Scenario, ScenarioError> {
        let mut section = Section::Settings;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split('#').next().unwrap_or("");
            if content.trim().is_empty() {
                continue;
            }
            let indented = content.starts_with([' ', '\t']);
            let content = content.trim();
            if !indented {
                section = Section::Settings;
            }
            if !indented && content.ends_with(':') && !content.contains('=') {
                section = self.open_section(line, content.trim_end_matches(':').trim())?;
                continue;
            }
            match section {
                Section::Settings => self.setting(line, content)?,
                Section::Timeline => {
                    let step = self.timeline_step(line, content)?;
                    let steps = &mut self.timeline.as_mut().expect("section opened").1;
                    steps.push(step);
                    if steps.len() > STEPS_MAX {
                        return Err(self.error(line, too_many_steps()));
                    }
                }
                Section::Nemesis => {
                    let fault = self.random_fault(line, content)?;
                    let faults = &mut self.nemesis.as_mut().expect("section opened").1;
                    faults.push(fault);
                    if faults.len() > STEPS_MAX {
                        return Err(self.error(line, too_many_steps()));
                    }
                }
            }
        }
        self.finish()
    }

    fn open_section(&mut self, line: usize, name: &str) -> Result<Section, ScenarioError> {
        match name {
            "timeline" if self.timeline.is_none() => {
                self.timeline = Some((line, Vec::new()));
                Ok(Section::Timeline)
            }
            "nemesis" if self.nemesis.is_none() => {
                self.nemesis = Some((line, Vec::new()));
                Ok(Section::Nemesis)
            }
            "timeline" | "nemesis" => Err(self.error(
                line,
                ScenarioErrorKind::BadSection {
                    problem: format!("section {name:?} given twice"),
                },
            )),
            _ => Err(self.error(
                line,
                ScenarioErrorKind::BadSection {
                    problem: format!("unknown section {name:?}; known sections: timeline, nemesis"),
                },
            )),
        }
    }

    fn setting(&mut self, line: usize, content: &str) -> Result<(), ScenarioError> {
        let Some((name, value)) = content.split_once('=') else {
            return Err(self.error(
                line,
                ScenarioErrorKind::Malformed {
                    text: content.to_string(),
                },
            ));
        };
        let (name, value) = (name.trim(), value.trim());
        if !SETTINGS.contains(&name) {
            return Err(self.error(
                line,
                ScenarioErrorKind::UnknownSetting {
                    name: name.to_string(),
                    known: SETTINGS.join(", "),
                },
            ));
        }
        if let Some((first_line, _)) = self.settings.get(name) {
            return Err(self.error(
                line,
                ScenarioErrorKind::DuplicateSetting {
                    name: name.to_string(),
                    first_line: *first_line,
                },
            ));
        }
        self.settings
            .insert(name.to_string(), (line, value.to_string()));
        Ok(())
    }

    /// The value of a setting with its line, if given.
    fn get(&self, name: &str) -> Option<(usize, &str)> {
        self.settings
            .get(name)
            .map(|(line, value)| (*line, value.as_str()))
    }

    fn bad(&self, line: usize, what: &str, value: &str, expected: &str) -> ScenarioError {
        self.error(
            line,
            ScenarioErrorKind::BadValue {
                what: what.to_string(),
                value: value.to_string(),
                expected: expected.to_string(),
            },
        )
    }

    fn count_setting(
        &self,
        name: &str,
        min: u32,
        max: u32,
    ) -> Result<Option<Span<u32>>, ScenarioError> {
        let Some((line, value)) = self.get(name) else {
            return Ok(None);
        };
        let expected = format!("a number or range in {min}..{max}");
        let span = parse_span(value, |text| text.parse::<u32>().ok())
            .filter(|span| span.low >= min && span.high <= max)
            .ok_or_else(|| self.bad(line, name, value, &expected))?;
        Ok(Some(span))
    }

    fn duration_setting(&self, name: &str) -> Result<Option<Span<Duration>>, ScenarioError> {
        let Some((line, value)) = self.get(name) else {
            return Ok(None);
        };
        let span = parse_span(value, parse_duration)
            .filter(|span| !span.low.is_zero() && span.high <= DURATION_MAX)
            .ok_or_else(|| {
                self.bad(
                    line,
                    name,
                    value,
                    "a duration like 5s or 250ms, or a range 1s..5s",
                )
            })?;
        Ok(Some(span))
    }

    fn fixed_duration_setting(&self, name: &str) -> Result<Option<Duration>, ScenarioError> {
        let Some(span) = self.duration_setting(name)? else {
            return Ok(None);
        };
        if !span.is_fixed() {
            let (line, value) = self.get(name).expect("setting present");
            return Err(self.bad(line, name, value, "a single duration, not a range"));
        }
        Ok(Some(span.low))
    }

    fn finish(self) -> Result<Scenario, ScenarioError> {
        let required = |name: &'static str| {
            self.get(name)
                .map(|(_, value)| value.to_string())
                .ok_or_else(|| self.error(0, ScenarioErrorKind::MissingSetting { name }))
        };
        let name = required("name")?;
        let description = required("description")?;
        let duration = self
            .fixed_duration_setting("duration")?
            .ok_or_else(|| self.error(0, ScenarioErrorKind::MissingSetting { name: "duration" }))?;
        let liveness_timeout = self
            .fixed_duration_setting("liveness_timeout")?
            .unwrap_or(LIVENESS_TIMEOUT_DEFAULT);
        let cluster_size = self.count_setting("cluster_size", 1, CLUSTER_SIZE_MAX)?;
        let clients = self.count_setting("clients", 1, CLIENTS_MAX)?;
        let keys = self.count_setting("keys", 1, KEYS_MAX)?;
        let watchers = self.count_setting("watchers", 0, WATCHERS_MAX)?;
        let lease_ttl = self.duration_setting("lease_ttl")?;
        let compact_every = self.duration_setting("compact_every")?;
        let lease_checkpoint_interval = self.duration_setting("lease_checkpoint_interval")?;
        let workload = match self.get("workload") {
            None => None,
            Some((line, value)) => Some(self.workload(line, value)?),
        };
        let checks = match self.get("checks") {
            None => Check::ALL.into_iter().collect(),
            Some((line, value)) => self.checks(line, value)?,
        };
        let nemesis = self.nemesis_kind(duration)?;
        self.check_node_targets(cluster_size, &nemesis)?;
        Ok(Scenario {
            name,
            description,
            cluster_size,
            duration,
            liveness_timeout,
            clients,
            keys,
            workload,
            watchers,
            lease_ttl,
            compact_every,
            lease_checkpoint_interval,
            checks,
            nemesis,
        })
    }

    /// A `node <n>` target needs a fixed cluster size of at least `n`.
    fn check_node_targets(
        &self,
        cluster_size: Option<Span<u32>>,
        nemesis: &Nemesis,
    ) -> Result<(), ScenarioError> {
        let targets: Vec<(usize, Option<Target>)> = match nemesis {
            Nemesis::Scripted(steps) => steps
                .iter()
                .flat_map(|step| {
                    let pinned = step.members.iter().flatten();
                    std::iter::once((step.line, step.fault.target))
                        .chain(pinned.map(|node| (step.line, Some(Target::Node(*node)))))
                })
                .collect(),
            Nemesis::Random(faults) => faults
                .iter()
                .map(|fault| (fault.line, fault.fault.target))
                .collect(),
            Nemesis::None | Nemesis::Swarm => Vec::new(),
        };
        for (line, target) in targets {
            let Some(Target::Node(node)) = target else {
                continue;
            };
            let smallest = cluster_size.map(|span| span.low);
            if smallest.is_none_or(|smallest| node > smallest) {
                let expected = match smallest {
                    Some(smallest) => format!("a member number 1..{smallest} (cluster_size)"),
                    None => "a fixed cluster_size setting when naming members".to_string(),
                };
                return Err(self.bad(line, "node", &node.to_string(), &expected));
            }
        }
        Ok(())
    }

    fn workload(&self, line: usize, value: &str) -> Result<WorkloadMix, ScenarioError> {
        let known: Vec<&str> = OperationKind::ALL.iter().map(|kind| kind.name()).collect();
        let expected = format!(
            "comma-separated `<kind> <weight>` with kinds {}",
            known.join(", ")
        );
        let mut mix = WorkloadMix::default();
        for part in value.split(',') {
            let words: Vec<&str> = part.split_whitespace().collect();
            let [kind, weight] = words.as_slice() else {
                return Err(self.bad(line, "workload", part.trim(), &expected));
            };
            let kind = OperationKind::ALL
                .into_iter()
                .find(|candidate| candidate.name() == *kind)
                .ok_or_else(|| self.bad(line, "workload", part.trim(), &expected))?;
            let weight: u32 = weight
                .parse()
                .map_err(|_| self.bad(line, "workload weight", weight, "a whole number"))?;
            if mix.weights.insert(kind, weight).is_some() {
                return Err(self.bad(line, "workload", kind.name(), "each kind once"));
            }
        }
        if mix.weights.values().all(|weight| *weight == 0) {
            return Err(self.bad(line, "workload", value, "at least one positive weight"));
        }
        Ok(mix)
    }

    fn checks(&self, line: usize, value: &str) -> Result<BTreeSet<Check>, ScenarioError> {
        let known: Vec<&str> = Check::ALL.iter().map(|check| check.name()).collect();
        let expected = format!("comma-separated checks from {}", known.join(", "));
        let mut checks = BTreeSet::new();
        for part in value.split(',') {
            let part = part.trim();
            let check = Check::ALL
                .into_iter()
                .find(|check| check.name() == part)
                .ok_or_else(|| self.bad(line, "checks", part, &expected))?;
            checks.insert(check);
        }
        Ok(checks)
    }

    fn nemesis_kind(&self, duration: Duration) -> Result<Nemesis, ScenarioError> {
        let setting = self.get("nemesis");
        let conflict = |line: usize, problem: &str| {
            self.error(
                line,
                ScenarioErrorKind::BadSection {
                    problem: problem.to_string(),
                },
            )
        };
        match (setting, &self.timeline, &self.nemesis) {
            (_, Some((line, _)), Some(_)) => Err(conflict(
                *line,
                "a scenario has a timeline or a nemesis section, not both",
            )),
            (Some((line, _)), Some(_), _) | (Some((line, _)), _, Some(_)) => Err(conflict(
                line,
                "the `nemesis` setting and a timeline/nemesis section exclude each other",
            )),
            (Some((_, "swarm")), None, None) => Ok(Nemesis::Swarm),
            (Some((_, "none")), None, None) => Ok(Nemesis::None),
            (Some((line, value)), None, None) => Err(self.bad(
                line,
                "nemesis",
                value,
                "swarm or none (or a timeline:/nemesis: section)",
            )),
            (None, Some((line, steps)), None) => {
                if steps.is_empty() {
                    return Err(conflict(*line, "the timeline section is empty"));
                }
                if let Some(late) = steps.iter().find(|step| step.at > duration) {
                    return Err(self.bad(
                        late.line,
                        "at",
                        &DisplayDuration(late.at).to_string(),
                        &format!("a time within the duration {}", DisplayDuration(duration)),
                    ));
                }
                let mut steps = steps.clone();
                steps.sort_by_key(|step| (step.at, step.line));
                Ok(Nemesis::Scripted(steps))
            }
            (None, None, Some((line, faults))) => {
                if faults.is_empty() {
                    return Err(conflict(*line, "the nemesis section is empty"));
                }
                Ok(Nemesis::Random(faults.clone()))
            }
            (None, None, None) => {
                Err(self.error(0, ScenarioErrorKind::MissingSetting { name: "nemesis" }))
            }
        }
    }

    fn timeline_step(&self, line: usize, content: &str) -> Result<TimelineStep, ScenarioError> {
        let words: Vec<&str> = content.split_whitespace().collect();
        let ["at", at, rest @ ..] = words.as_slice() else {
            return Err(self.bad(line, "timeline", content, "`at <time> <fault> ...`"));
        };
        let at = parse_duration(at)
            .ok_or_else(|| self.bad(line, "at", at, "a time like 5s or 1500ms"))?;
        let (fault_words, lasting) = match rest {
            [head @ .., "for", lasting] => {
                let lasting = parse_duration(lasting)
                    .ok_or_else(|| self.bad(line, "for", lasting, "a duration like 3s"))?;
                (head, Some(lasting))
            }
            _ => (rest, None),
        };
        let (members, fault_words) = self.pinned_members(line, fault_words)?;
        let fault = self.fault_spec(line, &fault_words)?;
        if lasting.is_some() && !fault.fault.undoable() {
            return Err(self.error(
                line,
                ScenarioErrorKind::BadFault {
                    fault: fault.fault.name(),
                    problem: "cannot be undone with `for`".into(),
                },
            ));
        }
        let draws_members = matches!(
            fault.fault,
            Fault::Partition(
                PartitionKind::RandomHalves | PartitionKind::OneWay | PartitionKind::Bridge
            )
        );
        if members.is_some() && !draws_members {
            return Err(self.error(
                line,
                ScenarioErrorKind::BadFault {
                    fault: fault.fault.name(),
                    problem:
                        "takes no `members=` (only random-halves, one-way and bridge partitions do)"
                            .into(),
                },
            ));
        }
        Ok(TimelineStep {
            line,
            at,
            fault,
            lasting,
            members,
        })
    }

    /// Splits a `members=1,3` word off a timeline step's fault words.
    fn pinned_members<'w>(
        &self,
        line: usize,
        words: &[&'w str],
    ) -> Result<(Option<Vec<u32>>, Vec<&'w str>), ScenarioError> {
        let mut members = None;
        let mut rest = Vec::with_capacity(words.len());
        for word in words {
            let Some(list) = word.strip_prefix("members=") else {
                rest.push(*word);
                continue;
            };
            let parsed: Option<Vec<u32>> = list
                .split(',')
                .map(|number| {
                    number
                        .parse::<u32>()
                        .ok()
                        .filter(|node| (1..=CLUSTER_SIZE_MAX).contains(node))
                })
                .collect();
            let parsed = parsed.filter(|parsed| !parsed.is_empty()).ok_or_else(|| {
                self.bad(
                    line,
                    "members",
                    list,
                    &format!("comma-separated member numbers 1..{CLUSTER_SIZE_MAX}"),
                )
            })?;
            members = Some(parsed);
        }
        Ok((members, rest))
    }

    fn random_fault(&self, line: usize, content: &str) -> Result<RandomFault, ScenarioError> {
        let words: Vec<&str> = content.split_whitespace().collect();
        let Some(every_position) = words.iter().position(|word| *word == "every") else {
            return Err(self.bad(
                line,
                "nemesis",
                content,
                "`<fault> ... every <interval> [for <duration>]`",
            ));
        };
        let (fault_words, tail) = words.split_at(every_position);
        let (every, lasting) = match tail {
            ["every", every] => (every, None),
            ["every", every, "for", lasting] => (every, Some(lasting)),
            _ => {
                return Err(self.bad(
                    line,
                    "nemesis",
                    content,
                    "`every <interval> [for <duration>]` at the end",
                ))
            }
        };
        let every = parse_span(every, parse_duration)
            .filter(|span| !span.low.is_zero())
            .ok_or_else(|| {
                self.bad(
                    line,
                    "every",
                    every,
                    "a positive duration or range like 3s..8s",
                )
            })?;
        let lasting =
            match lasting {
                None => None,
                Some(text) => Some(parse_span(text, parse_duration).ok_or_else(|| {
                    self.bad(line, "for", text, "a duration or range like 1s..3s")
                })?),
            };
        let fault = self.fault_spec(line, fault_words)?;
        if lasting.is_some() && !fault.fault.undoable() {
            return Err(self.error(
                line,
                ScenarioErrorKind::BadFault {
                    fault: fault.fault.name(),
                    problem: "cannot be undone with `for`".into(),
                },
            ));
        }
        Ok(RandomFault {
            line,
            fault,
            every,
            lasting,
        })
    }

    fn fault_spec(&self, line: usize, words: &[&str]) -> Result<FaultSpec, ScenarioError> {
        let known = || {
            let mut names: Vec<&str> = Fault::all()
                .into_iter()
                .map(|fault| fault.name())
                .filter(|name| !name.starts_with("partition "))
                .collect();
            names.push("partition <random-halves|isolate-leader|minority|majority|bridge|one-way>");
            names.join(", ")
        };
        let Some((name, mut rest)) = words.split_first() else {
            return Err(self.error(
                line,
                ScenarioErrorKind::UnknownFault {
                    name: String::new(),
                    known: known(),
                },
            ));
        };
        let fault = if *name == "partition" {
            let Some((kind, tail)) = rest.split_first() else {
                return Err(self.error(
                    line,
                    ScenarioErrorKind::BadFault {
                        fault: "partition",
                        problem: "needs a kind".into(),
                    },
                ));
            };
            rest = tail;
            let kind = PartitionKind::ALL
                .into_iter()
                .find(|candidate| candidate.name() == *kind)
                .ok_or_else(|| {
                    let kinds: Vec<&str> =
                        PartitionKind::ALL.iter().map(|kind| kind.name()).collect();
                    self.bad(line, "partition", kind, &kinds.join(", "))
                })?;
            Fault::Partition(kind)
        } else {
            Fault::all()
                .into_iter()
                .find(|fault| fault.name() == *name)
                .ok_or_else(|| {
                    self.error(
                        line,
                        ScenarioErrorKind::UnknownFault {
                            name: name.to_string(),
                            known: known(),
                        },
                    )
                })?
        };
        let mut target = fault.default_target();
        let mut options: BTreeMap<FaultOption, Span<Quantity>> = BTreeMap::new();
        let mut index = 0;
        while index < rest.len() {
            let word = rest[index];
            index += 1;
            if let Some((option, value)) = word.split_once('=') {
                let option = fault
                    .options()
                    .iter()
                    .copied()
                    .find(|candidate| candidate.name() == option)
                    .ok_or_else(|| {
                        let accepted: Vec<&str> =
                            fault.options().iter().map(|option| option.name()).collect();
                        self.error(
                            line,
                            ScenarioErrorKind::BadFault {
                                fault: fault.name(),
                                problem: format!(
                                    "unknown option {option:?}; accepts: {}",
                                    accepted.join(", ")
                                ),
                            },
                        )
                    })?;
                let span = if option.is_percent() {
                    parse_span(value, |text| parse_percent(text).map(Quantity::Percent))
                } else {
                    parse_span(value, |text| parse_duration(text).map(Quantity::Duration))
                };
                let expected = if option.is_percent() {
                    "a percentage like 10% or 5%..20%"
                } else {
                    "a duration like 200ms or 50ms..500ms"
                };
                let span = span.ok_or_else(|| self.bad(line, option.name(), value, expected))?;
                if option == FaultOption::Probability {
                    if let Quantity::Percent(high) = span.high {
                        if high > 100 {
                            return Err(self.bad(line, option.name(), value, "at most 100%"));
                        }
                    }
                }
                options.insert(option, span);
                continue;
            }
            if !fault.takes_target() {
                return Err(self.error(
                    line,
                    ScenarioErrorKind::BadFault {
                        fault: fault.name(),
                        problem: format!("takes no target, got {word:?}"),
                    },
                ));
            }
            target = Some(match word {
                "leader" => Target::Leader,
                "follower" => Target::Follower,
                "random" => Target::Random,
                "all" => Target::All,
                "minority" => Target::Minority,
                "majority" => Target::Majority,
                "node" => {
                    let number = rest.get(index).copied().unwrap_or("");
                    index += 1;
                    let node = number
                        .parse::<u32>()
                        .ok()
                        .filter(|node| (1..=CLUSTER_SIZE_MAX).contains(node))
                        .ok_or_else(|| {
                            self.bad(
                                line,
                                "node",
                                number,
                                &format!("a member number 1..{CLUSTER_SIZE_MAX}"),
                            )
                        })?;
                    Target::Node(node)
                }
                other => return Err(self.bad(
                    line,
                    "target",
                    other,
                    "leader, follower, random, all, minority, majority, node <n>, or option=value",
                )),
            });
        }
        // `live-wal` has no default: left out, it draws nothing from the seed.
        for option in fault
            .options()
            .iter()
            .filter(|o| **o != FaultOption::LiveWal)
        {
            options
                .entry(*option)
                .or_insert_with(|| Span::fixed(default_option(*option)));
        }
        Ok(FaultSpec {
            fault,
            target,
            options,
        })
    }
}

fn too_many_steps() -> ScenarioErrorKind {
    ScenarioErrorKind::BadSection {
        problem: format!("more than {STEPS_MAX} lines in a section"),
    }
}

/// An option's value when the file gives none.
fn default_option(option: FaultOption) -> Quantity {
    match option {
        FaultOption::Probability => Quantity::Percent(10),
        FaultOption::Latency => Quantity::Duration(Duration::from_millis(200)),
        FaultOption::Rate => Quantity::Percent(120),
        FaultOption::LiveWal => Quantity::Percent(0),
    }
}

/// Parses `value` or `low..high` with `parse`; `None` when malformed or low > high.
pub fn parse_span<T: Copy + PartialOrd>(
    text: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Option<Span<T>> {
    match text.split_once("..") {
        Some((low, high)) => {
            let span = Span {
                low: parse(low.trim())?,
                high: parse(high.trim())?,
            };
            (span.low <= span.high).then_some(span)
        }
        None => Some(Span::fixed(parse(text.trim())?)),
    }
}

/// Parses `250ms`, `5s`, `1.5s` or `2m`; exact to the millisecond.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit_millis) = if let Some(number) = text.strip_suffix("ms") {
        (number, 1u64)
    } else if let Some(number) = text.strip_suffix('s') {
        (number, 1_000)
    } else if let Some(number) = text.strip_suffix('m') {
        (number, 60_000)
    } else {
        return None;
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || !whole.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    if fraction.len() > 3 || !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let mut millis = whole.checked_mul(unit_millis)?;
    if !fraction.is_empty() {
        let scale = 10u64.pow(u32::try_from(fraction.len()).ok()?);
        let fraction: u64 = fraction.parse().ok()?;
        let extra = fraction.checked_mul(unit_millis)? / scale;
        if extra * scale != fraction * unit_millis {
            return None;
        }
        millis = millis.checked_add(extra)?;
    }
    Some(Duration::from_millis(millis))
}

/// Parses `15%`.
pub fn parse_percent(text: &str) -> Option<u32> {
    let number = text.strip_suffix('%')?;
    if number.is_empty() || !number.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    number.parse().ok().filter(|percent| *percent <= 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_exactly() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1_500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.0005s"), None);
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn spans_reject_inverted_ranges() {
        assert_eq!(
            parse_span("3..5", |text| text.parse::<u32>().ok()),
            Some(Span { low: 3, high: 5 })
        );
        assert_eq!(parse_span("5..3", |text| text.parse::<u32>().ok()), None);
        assert_eq!(parse_percent("15%"), Some(15));
        assert_eq!(parse_percent("15"), None);
    }
}
