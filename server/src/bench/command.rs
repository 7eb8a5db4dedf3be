//! Dispatches a parsed command line to its workload.

use super::config::{BenchArgs, Command, Consistency};
use super::error::BenchError;
use super::failover::run_failover;
use super::health::run_health;
use super::load::{run_load, Operation};
use super::report::Report;
use super::watch::run_watch;
use crate::api::proto::etcdserverpb::RangeRequest;

/// Runs the workload `args` describes and returns its report.
pub async fn run(args: &BenchArgs) -> Result<Report, BenchError> {
    let global = &args.global;
    match &args.command {
        Command::Put(put) => {
            let operation = Operation::put(put.shape.clone(), global.seed)?;
            run_load(global, "put", operation).await
        }
        Command::TxnPut(txn_put) => {
            let operation =
                Operation::txn_put(txn_put.shape.clone(), txn_put.txn_ops, global.seed)?;
            run_load(global, "txn-put", operation).await
        }
        Command::Range(range) => {
            let request = RangeRequest {
                key: range.key.as_bytes().to_vec(),
                range_end: range
                    .end_key
                    .as_ref()
                    .map(|end| end.as_bytes().to_vec())
                    .unwrap_or_default(),
                limit: range.limit,
                serializable: range.consistency == Consistency::Serializable,
                ..Default::default()
            };
            let workload = match range.consistency {
                Consistency::Linearizable => "range-l",
                Consistency::Serializable => "range-s",
            };
            run_load(global, workload, Operation::Range { request }).await
        }
        Command::Watch(watch) => run_watch(global, watch).await,
        Command::Health(health) => run_health(global, health).await,
        Command::Failover(failover) => run_failover(global, failover).await,
    }
}
