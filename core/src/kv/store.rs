//! [`KvStore`]: the MVCC key-value state machine that Raft replicates.
//!
//! It joins the key index ([`Mvcc`]) and the leases ([`Leases`]) and
//! applies [`Command`]s to them exactly as etcd's applier does: the same
//! command sequence gives the same state, responses, events and hash on
//! every member. Errors are part of that deterministic outcome: a failed
//! command changes nothing and does not bump the revision.
//!
//! Two kinds of check exist. [`KvStore::validate`] is etcd's gRPC-layer
//! check, run by the proposer (it depends on the configured limits).
//! [`KvStore::apply`] re-runs the limit-free part of it, so a command that
//! bypassed validation still cannot break the duplicate-key invariant, and
//! then runs etcd's apply-time checks against the current state.
//!
//! Only the lease deadlines are volatile: they live on the leader, are
//! driven by the driver's `now_ms`, and never enter a snapshot or hash.

use std::collections::{BTreeMap, BTreeSet};

use bincode::Options;
use serde::{Deserialize, Serialize};

use super::alarm::{AlarmAction, AlarmMember, AlarmRequest, AlarmType};
use super::command::{Command, CommandResponse, LeaseCheckpoint};
use super::error::KvError;
use super::lease::{Lease, Leases};
use super::mvcc::{KeyHistory, Mvcc};
use super::range;
use super::request::{
    CompactionRequest, Event, LeaseGrantRequest, LeaseGrantResponse, LeaseId,
    LeaseTimeToLiveResponse, PutRequest, RangeRequest, RangeResponse, RequestOp, Revision,
    TxnRequest, TxnResponse,
};
use super::txn::{self, TxnPath, Writer};

/// Debug builds run the O(n) invariant checks after every apply while the
/// state has at most this many keys, leases and retained revisions (beyond,
/// they would dominate the run time).
#[cfg(debug_assertions)]
const INVARIANT_CHECK_ENTRIES_MAX: usize = 2048;

/// The format number written at the front of every snapshot.
const SNAPSHOT_FORMAT: u32 = 2;

/// Limits of the state machine (etcd's defaults in [`KvConfig::default`]).
#[derive(Clone, Debug)]
pub struct KvConfig {
    /// At most this many of each of compares, success ops and failure ops
    /// in a txn; a nested txn gets what its parent leaves (etcd: 128).
    pub txn_ops_max: usize,
    /// At most this many bytes in one request (etcd: 1.5 MiB).
    pub request_bytes_max: usize,
    /// Granted TTLs are raised to at least this many seconds.
    pub lease_ttl_min_seconds: i64,
    /// A grant above this TTL fails with "too large lease TTL" (etcd: 9e9 s).
    pub lease_ttl_max_seconds: i64,
    /// A new leader adds this to every lease's remaining time when it takes
    /// over (etcd promotes its lessor with the election timeout, 1 s by default).
    pub lease_leader_extension_ms: u64,
    /// A deliberate bug the simulator switches on to prove its checkers
    /// catch it (simulator build only).
    #[cfg(madsim)]
    pub planted_bug: Option<PlantedKvBug>,
}

/// A deliberate state-machine bug (simulator build only).
#[cfg(madsim)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PlantedKvBug {
    /// A txn compare `LESS` on VERSION, CREATE or MOD holds for an equal
    /// number too (`<=`): a classic off-by-one that lets a
    /// "not yet modified since revision r" guard pass once too often.
    CompareLessInclusive,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            txn_ops_max: 128,
            request_bytes_max: 1024 * 1024 + 512 * 1024,
            lease_ttl_min_seconds: 2,
            lease_ttl_max_seconds: 9_000_000_000,
            lease_leader_extension_ms: 1000,
            #[cfg(madsim)]
            planted_bug: None,
        }
    }
}

/// The outcome of applying one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The response for the waiting client (errors are deterministic too).
    pub response: Result<CommandResponse, KvError>,
    /// The events of the new revision, in order (empty if nothing changed).
    /// Each carries its previous key-value when there was one (etcd reads it
    /// at `mod_revision - 1`); watches without prev_kv drop it.
    pub events: Vec<Event>,
    /// The store's revision after the command.
    pub revision: Revision,
}

/// The snapshot encoding, borrowed for writing.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    format: u32,
    revision: Revision,
    compact_revision: Revision,
    keys: &'a BTreeMap<Vec<u8>, KeyHistory>,
    compacted_events: &'a [Event],
    leases: &'a BTreeMap<LeaseId, Lease>,
    alarms: &'a BTreeSet<AlarmMember>,
}

/// The snapshot encoding, owned for reading.
#[derive(Deserialize)]
struct SnapshotOwned {
    format: u32,
    revision: Revision,
    compact_revision: Revision,
    keys: BTreeMap<Vec<u8>, KeyHistory>,
    compacted_events: Vec<Event>,
    leases: BTreeMap<LeaseId, Lease>,
    alarms: BTreeSet<AlarmMember>,
}

/// The MVCC state machine.
#[derive(Debug, Clone)]
pub struct KvStore {
    config: KvConfig,
    mvcc: Mvcc,
    leases: Leases,
    /// Active alarms; replicated (applied from the log, kept in snapshots).
    alarms: BTreeSet<AlarmMember>,
}

impl KvStore {
    /// An empty store at revision 1 (as etcd starts).
    pub fn new(config: KvConfig) -> KvStore {
        KvStore {
            config,
            mvcc: Mvcc::new(),
            leases: Leases::default(),
            alarms: BTreeSet::new(),
        }
    }

    /// The limits this store was built with.
    pub fn config(&self) -> &KvConfig {
        &self.config
    }

    /// Checks a command before it is proposed (empty key, too many ops,
    /// duplicate keys, ignore_* misuse, size), in etcd's order: the fields,
    /// then duplicates, then the encoded size.
    pub fn validate(&self, command: &Command) -> Result<(), KvError> {
        check_command(command, self.config.txn_ops_max)?;
        let size = bincode::serialized_size(command).map_err(|_| KvError::RequestTooLarge)?;
        if size > self.config.request_bytes_max as u64 {
            return Err(KvError::RequestTooLarge);
        }
        Ok(())
    }

    /// Applies a committed command. `now_ms` is the driver's monotonic clock,
    /// used only for the leader's volatile lease deadlines, never for
    /// replicated state.
    pub fn apply(&mut self, command: &Command, now_ms: u64) -> Applied {
        let (response, events) = match check_command(command, usize::MAX) {
            Err(error) => (Err(error), Vec::new()),
            Ok(()) if self.is_out_of_space() && KvStore::grows_state(command) => {
                (Err(KvError::NoSpace), Vec::new())
            }
            Ok(()) => self.apply_checked(command, now_ms),
        };
        tracing::trace!(
            revision = self.mvcc.revision(),
            events = events.len(),
            ok = response.is_ok(),
            "applied kv command"
        );
        #[cfg(debug_assertions)]
        if self.invariant_check_size() <= INVARIANT_CHECK_ENTRIES_MAX {
            self.check_invariants();
        }
        Applied {
            response,
            events,
            revision: self.mvcc.revision(),
        }
    }

    fn apply_checked(
        &mut self,
        command: &Command,
        now_ms: u64,
    ) -> (Result<CommandResponse, KvError>, Vec<Event>) {
        match command {
            Command::Put(put) => self.apply_put(put),
            Command::DeleteRange(delete) => {
                let mut writer = Writer::begin(&mut self.mvcc, &mut self.leases);
                let response = txn::apply_delete(&mut writer, delete);
                (Ok(CommandResponse::DeleteRange(response)), writer.commit())
            }
            Command::Txn(request) => match self.apply_txn(request) {
                Ok((response, events)) => (Ok(CommandResponse::Txn(response)), events),
                Err(error) => (Err(error), Vec::new()),
            },
            Command::Compact(CompactionRequest { revision, .. }) => {
                let result = self
                    .mvcc
                    .compact(*revision)
                    .map(|()| CommandResponse::Compact);
                if result.is_ok() {
                    tracing::debug!(compact_revision = revision, "compacted kv history");
                }
                (result, Vec::new())
            }
            Command::LeaseGrant(LeaseGrantRequest { ttl, id }) => {
                let granted = self.leases.grant(
                    *id,
                    *ttl,
                    self.config.lease_ttl_min_seconds,
                    self.config.lease_ttl_max_seconds,
                    now_ms,
                );
                let response = granted
                    .map(|ttl| CommandResponse::LeaseGrant(LeaseGrantResponse { id: *id, ttl }));
                (response, Vec::new())
            }
            Command::LeaseRevoke { id } => match self.leases.revoke(*id) {
                Err(error) => (Err(error), Vec::new()),
                Ok(keys) => {
                    let mut writer = Writer::begin(&mut self.mvcc, &mut self.leases);
                    for key in &keys {
                        writer.delete(key);
                    }
                    (Ok(CommandResponse::LeaseRevoke), writer.commit())
                }
            },
            Command::LeaseCheckpoint { checkpoints } => {
                tracing::debug!(leases = checkpoints.len(), "lease checkpoint applied");
                for checkpoint in checkpoints {
                    self.leases
                        .checkpoint(checkpoint.id, checkpoint.remaining_ttl_ms);
                }
                (Ok(CommandResponse::LeaseCheckpoint), Vec::new())
            }
            Command::Alarm(request) => (Ok(self.apply_alarm(request)), Vec::new()),
        }
    }

    fn apply_alarm(&mut self, request: &AlarmRequest) -> CommandResponse {
        let alarms = match request.action {
            AlarmAction::Get => self.alarms.iter().copied().collect(),
            AlarmAction::Activate => {
                if self.alarms.insert(request.member) {
                    tracing::warn!(
                        member = request.member.member_id,
                        alarm = ?request.member.alarm,
                        "alarm raised"
                    );
                }
                vec![request.member]
            }
            AlarmAction::Deactivate => {
                if self.alarms.remove(&request.member) {
                    tracing::warn!(
                        member = request.member.member_id,
                        alarm = ?request.member.alarm,
                        "alarm cleared"
                    );
                    vec![request.member]
                } else {
                    Vec::new()
                }
            }
        };
        CommandResponse::Alarm { alarms }
    }

    /// The active alarms, by member.
    pub fn alarms(&self) -> Vec<AlarmMember> {
        self.alarms.iter().copied().collect()
    }

    /// Whether a NOSPACE alarm is active: writes that grow the state are
    /// refused with [`KvError::NoSpace`] (etcd's capped applier).
    pub fn is_out_of_space(&self) -> bool {
        self.alarms
            .iter()
            .any(|alarm| alarm.alarm == AlarmType::NoSpace)
    }

    /// Whether `command` grows the state, and so is refused while a NOSPACE
    /// alarm is active: Put, a Txn with a write, LeaseGrant (as etcd).
    pub fn grows_state(command: &Command) -> bool {
        match command {
            Command::Put(_) | Command::LeaseGrant(_) => true,
            Command::Txn(request) => txn_has_writes(request),
            Command::DeleteRange(_)
            | Command::Compact(_)
            | Command::LeaseRevoke { .. }
            | Command::LeaseCheckpoint { .. }
            | Command::Alarm(_) => false,
        }
    }

    /// etcd's standalone Put: the lease is checked before the key.
    fn apply_put(&mut self, put: &PutRequest) -> (Result<CommandResponse, KvError>, Vec<Event>) {
        if put.lease != 0 && self.leases.get(put.lease).is_none() {
            return (Err(KvError::LeaseNotFound), Vec::new());
        }
        let mut writer = Writer::begin(&mut self.mvcc, &mut self.leases);
        match txn::apply_put(&mut writer, put) {
            Ok(response) => (Ok(CommandResponse::Put(response)), writer.commit()),
            Err(error) => {
                writer.abort();
                (Err(error), Vec::new())
            }
        }
    }

    fn apply_txn(&mut self, request: &TxnRequest) -> Result<(TxnResponse, Vec<Event>), KvError> {
        #[cfg(madsim)]
        let planted;
        #[cfg(madsim)]
        let request = if self.config.planted_bug == Some(PlantedKvBug::CompareLessInclusive) {
            planted = txn::less_inclusive(request);
            &planted
        } else {
            request
        };
        let path = TxnPath::choose(&self.mvcc, request);
        txn::precheck(&self.mvcc, &self.leases, request, &path)?;
        let mut writer = Writer::begin(&mut self.mvcc, &mut self.leases);
        match txn::apply_txn(&mut writer, request, &path) {
            Ok(response) => Ok((response, writer.commit())),
            Err(error) => {
                tracing::warn!(%error, "txn op failed after its checks passed; rolled back");
                writer.abort();
                Err(error)
            }
        }
    }

    /// Serves a read at the current or a past revision.
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, KvError> {
        range::range(&self.mvcc, request)
    }

    /// The current revision.
    pub fn revision(&self) -> Revision {
        self.mvcc.revision()
    }

    /// The revision before which history is gone.
    pub fn compact_revision(&self) -> Revision {
        self.mvcc.compact_revision()
    }

    /// The events of revisions in [from, to], for watch catch-up. `from` may
    /// be the compact revision itself; below it fails with Compacted, and
    /// `to` above the current revision with FutureRevision.
    pub fn events_between(&self, from: Revision, to: Revision) -> Result<Vec<Event>, KvError> {
        let mut events = Vec::new();
        self.mvcc
            .visit_events(from, to, |_| true, |event| events.push(event))?;
        Ok(events)
    }

    /// Visits the events of revisions in [from, to] whose key passes
    /// `wanted`, without materializing the others (watch catch-up).
    pub fn visit_events(
        &self,
        from: Revision,
        to: Revision,
        wanted: impl FnMut(&[u8]) -> bool,
        visit: impl FnMut(Event),
    ) -> Result<(), KvError> {
        self.mvcc.visit_events(from, to, wanted, visit)
    }

    /// The whole replicated state, deterministic bytes (bincode; maps in key order).
    pub fn snapshot(&self) -> Vec<u8> {
        let snapshot = SnapshotRef {
            format: SNAPSHOT_FORMAT,
            revision: self.mvcc.revision(),
            compact_revision: self.mvcc.compact_revision(),
            keys: self.mvcc.keys(),
            compacted_events: self.mvcc.compacted_events(),
            leases: self.leases.leases(),
            alarms: &self.alarms,
        };
        bincode::serialize(&snapshot).expect("in-memory bincode encoding cannot fail")
    }

    /// Rebuilds a store from `snapshot` bytes; a corrupt or inconsistent
    /// snapshot is an error naming the problem. The store is not promoted.
    pub fn restore(config: KvConfig, data: &[u8]) -> Result<KvStore, KvError> {
        let corrupt = |reason: String| KvError::Corrupt { reason };
        // The same fixed-width encoding as `bincode::serialize`, but no length
        // prefix may claim more bytes than the snapshot holds, so a damaged
        // length cannot make the decoder allocate without bound.
        let options = bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .with_limit(data.len() as u64);
        let snapshot: SnapshotOwned = options
            .deserialize(data)
            .map_err(|error| corrupt(format!("decoding: {error}")))?;
        if snapshot.format != SNAPSHOT_FORMAT {
            return Err(corrupt(format!(
                "snapshot format {} unknown",
                snapshot.format
            )));
        }
        let mvcc = Mvcc::from_parts(
            snapshot.keys,
            snapshot.revision,
            snapshot.compact_revision,
            snapshot.compacted_events,
        )
        .map_err(corrupt)?;
        check_lease_attachments(&mvcc, &snapshot.leases).map_err(corrupt)?;
        let store = KvStore {
            config,
            mvcc,
            leases: Leases::from_leases(snapshot.leases),
            alarms: snapshot.alarms,
        };
        Ok(store)
    }

    /// A hash of the whole replicated state (CRC-32C of the snapshot).
    pub fn hash(&self) -> u32 {
        crc32c::crc32c(&self.snapshot())
    }

    /// etcd's HashKV: a CRC-32C of every retained key version with
    /// `mod_revision <= revision` (0 = current), in key then revision order,
    /// and the compact revision. As in etcd, `revision <= compact revision`
    /// fails with Compacted and one above the current with FutureRevision.
    pub fn hash_kv(&self, revision: Revision) -> Result<(u32, Revision), KvError> {
        let compact_revision = self.mvcc.compact_revision();
        if revision > 0 && revision <= compact_revision {
            return Err(KvError::Compacted { compact_revision });
        }
        if revision > self.mvcc.revision() {
            return Err(KvError::FutureRevision {
                current_revision: self.mvcc.revision(),
            });
        }
        let revision = if revision <= 0 {
            self.mvcc.revision()
        } else {
            revision
        };
        let mut hash = crc32c::crc32c(b"key");
        for (key, history) in self.mvcc.keys() {
            for change in history
                .changes()
                .iter()
                .take_while(|c| c.revision <= revision)
            {
                let mut record = Vec::with_capacity(64 + key.len() + change.value.len());
                record.extend_from_slice(&change.revision.to_be_bytes());
                record.extend_from_slice(&change.sub.to_be_bytes());
                record.push(u8::from(change.is_tombstone()));
                record.extend_from_slice(&(key.len() as u64).to_be_bytes());
                record.extend_from_slice(key);
                record.extend_from_slice(&change.create_revision.to_be_bytes());
                record.extend_from_slice(&change.version.to_be_bytes());
                record.extend_from_slice(&change.lease.to_be_bytes());
                record.extend_from_slice(&(change.value.len() as u64).to_be_bytes());
                record.extend_from_slice(&change.value);
                hash = crc32c::crc32c_append(hash, &record);
            }
        }
        Ok((hash, compact_revision))
    }

    /// Approximate bytes the state occupies.
    pub fn size_bytes(&self) -> u64 {
        let lease_bytes: u64 = self
            .leases
            .leases()
            .values()
            .map(|lease| {
                64 + lease
                    .keys
                    .iter()
                    .map(|key| key.len() as u64 + 32)
                    .sum::<u64>()
            })
            .sum();
        self.mvcc.size_bytes() + lease_bytes
    }

    /// Leader only: start tracking lease deadlines (from checkpointed
    /// remaining TTLs, plus [`KvConfig::lease_leader_extension_ms`]).
    pub fn lease_promote(&mut self, now_ms: u64) {
        tracing::info!(
            leases = self.leases.leases().len(),
            now_ms,
            "lease deadlines promoted"
        );
        self.leases
            .promote(now_ms, self.config.lease_leader_extension_ms);
    }

    /// Stop tracking lease deadlines (no longer leader).
    pub fn lease_demote(&mut self) {
        tracing::info!("lease deadlines demoted");
        self.leases.demote();
    }

    /// Whether lease deadlines are tracked here (promoted).
    pub fn lease_is_promoted(&self) -> bool {
        self.leases.is_promoted()
    }

    /// Leader only: renew a lease (etcd's keep-alive); its TTL in seconds.
    /// LeaseNotFound when it does not exist or has expired (its revoke is
    /// pending); NotLeader when not promoted.
    pub fn lease_renew(&mut self, id: LeaseId, now_ms: u64) -> Result<i64, KvError> {
        self.leases.renew(id, now_ms)
    }

    /// Leader only: checkpoints to propose soon after keep-alives. A lease
    /// renewed while it has a checkpointed remaining TTL needs that
    /// remainder cleared (a checkpoint of 0), or a new leader would start it
    /// from the stale remainder; etcd proposes this on renew. Drained by the call.
    pub fn lease_renewal_checkpoints(&mut self) -> Vec<LeaseCheckpoint> {
        self.leases.take_renewal_checkpoints()
    }

    /// Leader only: leases whose deadline has passed (to propose revokes
    /// for), earliest deadline first. A lease stays listed until its revoke
    /// is applied; the driver must not re-propose it on every call.
    pub fn lease_expired(&self, now_ms: u64) -> Vec<LeaseId> {
        self.leases.expired(now_ms)
    }

    /// Leader only: remaining TTLs of every lease, to propose as a checkpoint.
    pub fn lease_checkpoints(&self, now_ms: u64) -> Vec<LeaseCheckpoint> {
        self.leases.checkpoints(now_ms)
    }

    /// Lease.TimeToLive: TTL -1 when the lease does not exist; otherwise
    /// the remaining whole seconds (truncated, as etcd) on the leader, the
    /// checkpointed remainder or full TTL elsewhere.
    pub fn lease_time_to_live(
        &self,
        id: LeaseId,
        keys: bool,
        now_ms: u64,
    ) -> LeaseTimeToLiveResponse {
        self.leases.time_to_live(id, keys, now_ms)
    }

    /// Lease.Leases: every lease ID, ascending.
    pub fn leases(&self) -> Vec<LeaseId> {
        self.leases.ids()
    }

    /// What the O(n) checks walk: keys, leases and retained revisions.
    #[cfg(debug_assertions)]
    fn invariant_check_size(&self) -> usize {
        let retained = self.mvcc.revision() - self.mvcc.compact_revision();
        let retained = usize::try_from(retained).unwrap_or(usize::MAX);
        (self.mvcc.keys().len() + self.leases.leases().len()).saturating_add(retained)
    }

    /// O(n) consistency checks over the whole state.
    pub fn check_invariants(&self) {
        self.mvcc.check_invariants();
        self.leases.check_invariants();
        if let Err(reason) = check_lease_attachments(&self.mvcc, self.leases.leases()) {
            panic!("lease attachments: {reason}");
        }
    }
}

/// Whether a txn may write: any op but a range (etcd's `isTxnReadonly`,
/// which counts deletes and nested txns as writes).
fn txn_has_writes(request: &TxnRequest) -> bool {
    request
        .success
        .iter()
        .chain(&request.failure)
        .any(|op| !matches!(op, RequestOp::Range(_)))
}

/// The limit-free request checks plus the ops limit (etcd's v3rpc checks).
fn check_command(command: &Command, txn_ops_max: usize) -> Result<(), KvError> {
    match command {
        Command::Put(put) => txn::check_put(put),
        Command::DeleteRange(delete) => txn::check_delete(delete),
        Command::Txn(request) => txn::check_txn(request, txn_ops_max),
        Command::Compact(_)
        | Command::LeaseGrant(_)
        | Command::LeaseRevoke { .. }
        | Command::LeaseCheckpoint { .. }
        | Command::Alarm(_) => Ok(()),
    }
}

/// Every live key with a lease is attached to it, and every attached key is
/// live with that lease.
fn check_lease_attachments(mvcc: &Mvcc, leases: &BTreeMap<LeaseId, Lease>) -> Result<(), String> {
    let revision = mvcc.revision();
    let mut attached = 0usize;
    for (id, lease) in leases {
        if *id == 0 || lease.id != *id {
            return Err(format!("lease stored under {id} has ID {}", lease.id));
        }
        for key in &lease.keys {
            match mvcc.get(key, revision) {
                Some(kv) if kv.lease == *id => attached += 1,
                _ => {
                    return Err(format!(
                        "lease {id} holds key {key:?} that is not live with it"
                    ))
                }
            }
        }
    }
    let mut leased = 0usize;
    for (key, history) in mvcc.keys() {
        let Some(change) = history.at(revision) else {
            continue;
        };
        if change.lease != 0 {
            leased += 1;
            if !leases
                .get(&change.lease)
                .is_some_and(|lease| lease.keys.contains(key))
            {
                return Err(format!(
                    "key {key:?} has lease {} that lacks it",
                    change.lease
                ));
            }
        }
    }
    if attached != leased {
        return Err(format!("{attached} attachments for {leased} leased keys"));
    }
    Ok(())
}
