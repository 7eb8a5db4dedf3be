//! `failover`: the client-visible cost of losing a member (the leader, when
//! the orchestrator points it there). A put is sent every `--interval-ms`
//! to the given endpoints in turn, each on its own task with its own
//! deadline, so a put stuck on a dead leader does not delay the next one;
//! after `--kill-after-ms` (and at least one success) the member is sent
//! SIGKILL, and the measurement is the time from the kill to the first
//! successful put that was sent after it.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::config::{FailoverArgs, GlobalArgs};
use super::connection::endpoint;
use super::error::BenchError;
use super::key::random_value;
use super::load::within;
use super::report::{Measurement, Report, RunShape};
use crate::api::proto::etcdserverpb::kv_client::KvClient;
use crate::api::proto::etcdserverpb::PutRequest;

/// The answer to one put.
#[derive(Debug)]
struct PutOutcome {
    sent: Instant,
    answered: Instant,
    result: Result<(), tonic::Code>,
}

/// Sends SIGKILL to `pid` with the system's `kill` (no unsafe, no libc).
fn kill_process(pid: u32) -> Result<(), BenchError> {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .map_err(|error| BenchError::Kill {
            pid,
            reason: error.to_string(),
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(BenchError::Kill {
            pid,
            reason: format!("kill exited with {status}"),
        })
    }
}

/// Runs the failover measurement.
pub async fn run_failover(global: &GlobalArgs, args: &FailoverArgs) -> Result<Report, BenchError> {
    if global.endpoints.is_empty() || args.interval_ms == 0 {
        return Err(BenchError::InvalidFlags {
            reason: "failover needs --endpoints and a positive --interval-ms".to_string(),
        });
    }
    let mut clients = Vec::with_capacity(global.endpoints.len());
    for address in &global.endpoints {
        let channel = endpoint(address, global.dial_timeout())?.connect_lazy();
        clients.push(KvClient::new(channel));
    }
    let value = random_value(args.val_size, global.seed);
    let put_timeout = Duration::from_millis(args.put_timeout_ms);
    let recover_timeout = Duration::from_millis(args.recover_timeout_ms);
    let kill_after = Duration::from_millis(args.kill_after_ms);
    // Every put is answered (or times out) within put_timeout, so this
    // bounds the in-flight puts and the channel.
    let in_flight_max = (args.put_timeout_ms / args.interval_ms + 2) as usize;
    let (outcome_sender, mut outcome_receiver) = mpsc::channel::<PutOutcome>(in_flight_max);
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(args.interval_ms));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut measurement = Measurement::default();
    let mut successes_before_kill = 0u64;
    let mut failures_after_kill = 0u64;
    let mut kill_at: Option<Instant> = None;
    let mut last_success_before_kill: Option<Instant> = None;
    let mut puts_sent = 0u64;
    let mut in_flight = 0usize;
    let first_success_after_kill = loop {
        let now = Instant::now();
        match kill_at {
            None if now.duration_since(start) > kill_after + recover_timeout => {
                return Err(BenchError::NotHealthy {
                    waited: now.duration_since(start),
                    unhealthy_endpoints: global.endpoints.clone(),
                    last_error: format!(
                        "no successful put before the kill: {:?}",
                        measurement.errors
                    ),
                });
            }
            Some(killed) if now.duration_since(killed) > recover_timeout => {
                return Err(BenchError::NeverRecovered {
                    pid: args.kill_pid,
                    waited: now.duration_since(killed),
                });
            }
            _ => {}
        }
        tokio::select! {
            _ = ticker.tick(), if in_flight < in_flight_max => {
                if kill_at.is_none() && successes_before_kill > 0 && now.duration_since(start) >= kill_after {
                    kill_process(args.kill_pid)?;
                    kill_at = Some(Instant::now());
                    tracing::info!(pid = args.kill_pid, "member killed");
                }
                let client_index = (puts_sent as usize) % clients.len();
                let mut client = clients[client_index].clone();
                let request = PutRequest {
                    key: format!("failover/{puts_sent:06}").into_bytes(),
                    value: value.clone(),
                    ..Default::default()
                };
                let sender = outcome_sender.clone();
                puts_sent += 1;
                in_flight += 1;
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let result = within(put_timeout, client.put(request)).await.map(drop);
                    // The receiver outlives every put unless the run ended.
                    let _ = sender
                        .send(PutOutcome { sent, answered: Instant::now(), result })
                        .await;
                });
            }
            Some(outcome) = outcome_receiver.recv() => {
                in_flight -= 1;
                match outcome.result {
                    Ok(()) => {
                        measurement.latencies.record(outcome.answered.duration_since(outcome.sent));
                        match kill_at {
                            Some(killed) if outcome.sent >= killed => break outcome.answered.duration_since(killed),
                            Some(_) => {}
                            None => {
                                successes_before_kill += 1;
                                last_success_before_kill = Some(outcome.answered);
                            }
                        }
                    }
                    Err(code) => {
                        measurement.record_error(code);
                        if kill_at.is_some() {
                            failures_after_kill += 1;
                        }
                    }
                }
            }
        }
    };
    let elapsed = start.elapsed();
    let killed = kill_at.expect("a success after the kill implies the kill happened");
    let shape = RunShape {
        workload: "failover".to_string(),
        endpoints: global.endpoints.clone(),
        conns: clients.len(),
        clients: 1,
        total_requested: puts_sent,
    };
    let mut report = Report::new(shape, &measurement, elapsed);
    let millis = |duration: Duration| duration.as_secs_f64() * 1_000.0;
    report.extra.insert(
        "kill_to_first_success_ms".to_string(),
        millis(first_success_after_kill),
    );
    if let Some(last_ok) = last_success_before_kill {
        report.extra.insert(
            "last_success_before_kill_to_first_success_after_ms".to_string(),
            millis((killed + first_success_after_kill).duration_since(last_ok)),
        );
    }
    report.extra.insert(
        "failed_puts_after_kill".to_string(),
        failures_after_kill as f64,
    );
    Ok(report)
}
