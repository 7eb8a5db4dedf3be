//! cairn-sim: runs the production node driver under madsim with faults and
//! checks what happened.
//!
//! A run is a (scenario, seed) pair. [`scenario`] parses the human-readable
//! scenario file; [`swarm`] draws every parameter the scenario leaves open
//! from the seed and prints them first; the runner drives the cluster,
//! recording the client [`history`], the committed [`event_log`], watch
//! streams and per-step Raft observations; the [`checker`]s then judge them:
//!
//! ```text
//! let scenario = Scenario::parse(&path, &text)?;          // line-numbered errors
//! let parameters = SwarmParameters::draw(&scenario, seed);
//! println!("{parameters}");                               // logged first
//! // During the run:
//! //   history.invoke / complete / fail / indeterminate   per client attempt
//! //   event_log.record(node, revision, events, now)?     per applied revision
//! //   raft.observe(now, &NodeObservation { .. })?        per node, per step
//! //   sessions.push(WatchSession { .. })                 per watch
//! history.close();
//! check_linearizability(&history, Some(&event_log), &LinearizabilityConfig::default());
//! check_revisions(&history, Some(&event_log));
//! check_txns(&history, &event_log);
//! check_watches(&event_log, &compactions, &sessions);
//! check_durability(&history, Some(&event_log), &final_state);
//! check_leases(&history, &event_log, &revocations, &LeaseCheckConfig {
//!     tick_rate_percent_max: parameters.tick_rate_percent_max(),
//!     leader_promotions_max: raft_summary.terms_with_leader + 1,
//! });
//! ```
//!
//! The runner (`runner`, simulator build only) is the part that runs
//! the cluster; everything else in this crate is pure: it builds and
//! tests without `--cfg madsim`.

pub mod checker;
pub mod event_log;
pub mod history;
pub mod report;
#[cfg(madsim)]
pub mod runner;
pub mod scenario;
pub mod shrink;
pub mod swarm;
pub mod sweep;
pub mod time;
