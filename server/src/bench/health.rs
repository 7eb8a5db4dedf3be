//! `health`: the time from now until a linearizable get has succeeded on
//! every endpoint, which is what "the cluster is up" means to a client (a
//! leader exists and each member can reach it). The orchestrator starts it
//! right after spawning the members to time start → healthy.

use std::time::Duration;

use tokio::time::Instant;

use super::config::{GlobalArgs, HealthArgs};
use super::connection::endpoint;
use super::error::BenchError;
use super::load::within;
use super::report::{Measurement, Report, RunShape};
use crate::api::proto::etcdserverpb::kv_client::KvClient;
use crate::api::proto::etcdserverpb::RangeRequest;

/// Bound on one probe (a get against a member still electing can hang).
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Probes every endpoint until each has answered a linearizable get once.
pub async fn run_health(global: &GlobalArgs, args: &HealthArgs) -> Result<Report, BenchError> {
    let start = Instant::now();
    let deadline = start + Duration::from_millis(args.timeout_ms);
    let mut clients = Vec::with_capacity(global.endpoints.len());
    for address in &global.endpoints {
        let channel = endpoint(address, global.dial_timeout())?.connect_lazy();
        clients.push((address.clone(), KvClient::new(channel)));
    }
    let mut measurement = Measurement::default();
    let mut healthy = vec![false; clients.len()];
    let mut last_error = String::from("none");
    while healthy.iter().any(|is_healthy| !is_healthy) {
        if Instant::now() >= deadline {
            let unhealthy_endpoints = clients
                .iter()
                .zip(&healthy)
                .filter(|(_, is_healthy)| !**is_healthy)
                .map(|((address, _), _)| address.clone())
                .collect();
            return Err(BenchError::NotHealthy {
                waited: start.elapsed(),
                unhealthy_endpoints,
                last_error,
            });
        }
        for ((address, client), is_healthy) in clients.iter_mut().zip(healthy.iter_mut()) {
            if *is_healthy {
                continue;
            }
            let request = RangeRequest {
                key: args.key.as_bytes().to_vec(),
                ..Default::default()
            };
            let probe_start = Instant::now();
            match within(PROBE_TIMEOUT, client.range(request)).await {
                Ok(_) => {
                    measurement.latencies.record(probe_start.elapsed());
                    *is_healthy = true;
                }
                Err(code) => {
                    measurement.record_error(code);
                    last_error = format!("{address}: {code:?}");
                }
            }
        }
        if healthy.iter().any(|is_healthy| !is_healthy) {
            tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
        }
    }
    let elapsed = start.elapsed();
    let shape = RunShape {
        workload: "health".to_string(),
        endpoints: global.endpoints.clone(),
        conns: clients.len(),
        clients: 1,
        total_requested: clients.len() as u64,
    };
    let mut report = Report::new(shape, &measurement, elapsed);
    report.extra.insert(
        "healthy_after_ms".to_string(),
        elapsed.as_secs_f64() * 1_000.0,
    );
    Ok(report)
}
