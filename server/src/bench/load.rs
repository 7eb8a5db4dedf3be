//! The closed-loop load of `put`, `range` and `txn-put`: `--clients` tasks,
//! each with its own KV stub on a channel of the pool, take request tickets
//! from one shared counter until `--total` is handed out, so the split among
//! clients adapts to their speed exactly as etcd's benchmark's request
//! channel does. With `--rate`, ticket n is not served before
//! `start + n / rate`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::Channel;

use super::config::{GlobalArgs, KeyValueShape};
use super::connection::ConnectionPool;
use super::error::BenchError;
use super::key::{random_value, validate_shape, KeyGenerator};
use super::report::{Measurement, Report, RunShape};
use crate::api::proto::etcdserverpb::kv_client::KvClient;
use crate::api::proto::etcdserverpb::{
    request_op, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

/// Most clients one run may start (each is a tokio task).
pub const CLIENTS_MAX: usize = 100_000;
/// Most connections one run may dial.
pub const CONNECTIONS_MAX: usize = 10_000;
/// Clients share this many measurements (client i records into shard
/// i % MEASUREMENT_SHARDS): one HDR histogram per client would cost
/// hundreds of kilobytes each and, at 1000 clients, slow the generator
/// itself through cache misses.
pub const MEASUREMENT_SHARDS: usize = 32;

/// What every request of a run does.
#[derive(Debug, Clone)]
pub enum Operation {
    /// Put a generated key.
    Put {
        /// Key and value shape.
        shape: KeyValueShape,
        /// The value every put writes.
        value: Vec<u8>,
    },
    /// Range the same key or key range.
    Range {
        /// The request sent every time.
        request: RangeRequest,
    },
    /// A transaction of `txn_ops` puts of generated keys.
    TxnPut {
        /// Key and value shape.
        shape: KeyValueShape,
        /// The value every put writes.
        value: Vec<u8>,
        /// Puts per transaction.
        txn_ops: usize,
    },
}

impl Operation {
    /// A put operation; checks the shape.
    pub fn put(shape: KeyValueShape, seed: u64) -> Result<Operation, BenchError> {
        validate_shape(&shape)?;
        let value = random_value(shape.val_size, seed);
        Ok(Operation::Put { shape, value })
    }

    /// A txn-put operation; checks the shape.
    pub fn txn_put(
        shape: KeyValueShape,
        txn_ops: usize,
        seed: u64,
    ) -> Result<Operation, BenchError> {
        validate_shape(&shape)?;
        if txn_ops == 0 || txn_ops as u64 > shape.key_space_size {
            return Err(BenchError::InvalidFlags {
                reason: format!(
                    "--txn-ops {txn_ops} must be in 1..=--key-space-size {} (etcd rejects a \
                     transaction that puts one key twice)",
                    shape.key_space_size
                ),
            });
        }
        let value = random_value(shape.val_size, seed);
        Ok(Operation::TxnPut {
            shape,
            value,
            txn_ops,
        })
    }

    fn shape(&self) -> Option<&KeyValueShape> {
        match self {
            Operation::Put { shape, .. } | Operation::TxnPut { shape, .. } => Some(shape),
            Operation::Range { .. } => None,
        }
    }
}

/// Hands out request numbers until the total is reached, paced by the rate.
#[derive(Debug)]
pub struct RequestTickets {
    next: AtomicU64,
    total: u64,
    // Zero: unpaced.
    rate_per_second: u64,
    start: Instant,
}

impl RequestTickets {
    /// Tickets `0..total`, paced at `rate_per_second` (0: unpaced) from
    /// `start`.
    pub fn new(total: u64, rate_per_second: u64, start: Instant) -> RequestTickets {
        RequestTickets {
            next: AtomicU64::new(0),
            total,
            rate_per_second,
            start,
        }
    }

    /// The next request number, after waiting for its slot; `None` once
    /// all are handed out.
    pub async fn take(&self) -> Option<u64> {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        if ticket >= self.total {
            return None;
        }
        if self.rate_per_second > 0 {
            let offset_nanos =
                u128::from(ticket) * 1_000_000_000 / u128::from(self.rate_per_second);
            let offset = Duration::from_nanos(u64::try_from(offset_nanos).unwrap_or(u64::MAX));
            tokio::time::sleep_until(self.start + offset).await;
        }
        Some(ticket)
    }
}

/// Awaits `call` for at most `deadline`; a late answer is `DeadlineExceeded`.
pub async fn within<T>(
    deadline: Duration,
    call: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Code> {
    match tokio::time::timeout(deadline, call).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(status)) => Err(status.code()),
        Err(_elapsed) => Err(tonic::Code::DeadlineExceeded),
    }
}

/// Checks the load-shape flags.
pub fn validate_global(global: &GlobalArgs) -> Result<(), BenchError> {
    if global.clients == 0 || global.clients > CLIENTS_MAX {
        return Err(BenchError::InvalidFlags {
            reason: format!("--clients {} is not in 1..={CLIENTS_MAX}", global.clients),
        });
    }
    if global.conns == 0 || global.conns > CONNECTIONS_MAX {
        return Err(BenchError::InvalidFlags {
            reason: format!("--conns {} is not in 1..={CONNECTIONS_MAX}", global.conns),
        });
    }
    Ok(())
}

/// Runs `operation` `--total` times over the pool and reports.
pub async fn run_load(
    global: &GlobalArgs,
    workload: &str,
    operation: Operation,
) -> Result<Report, BenchError> {
    validate_global(global)?;
    let pool =
        ConnectionPool::connect(&global.endpoints, global.conns, global.dial_timeout()).await?;
    let start = Instant::now();
    let tickets = Arc::new(RequestTickets::new(global.total, global.rate, start));
    let operation = Arc::new(operation);
    let shard_count = global.clients.min(MEASUREMENT_SHARDS);
    let shards: Arc<Vec<Mutex<Measurement>>> = Arc::new(
        (0..shard_count)
            .map(|_| Mutex::new(Measurement::default()))
            .collect(),
    );
    let mut tasks = Vec::with_capacity(global.clients);
    for client in 0..global.clients {
        let channel = pool.channel_for_client(client);
        let tickets = Arc::clone(&tickets);
        let operation = Arc::clone(&operation);
        let seed = global
            .seed
            .wrapping_mul(1_000_003)
            .wrapping_add(client as u64);
        let deadline = global.request_timeout();
        let shard = Arc::clone(&shards);
        tasks.push(tokio::spawn(run_client(
            channel,
            tickets,
            operation,
            seed,
            deadline,
            shard,
            client % shard_count,
        )));
    }
    for task in tasks {
        task.await.map_err(|error| BenchError::Task {
            reason: error.to_string(),
        })?;
    }
    let elapsed = start.elapsed();
    let mut measurement = Measurement::default();
    for shard in shards.iter() {
        measurement.merge(&shard.lock().expect("no client panicked holding a shard"));
    }
    let shape = RunShape {
        workload: workload.to_string(),
        endpoints: global.endpoints.clone(),
        conns: pool.len(),
        clients: global.clients,
        total_requested: global.total,
    };
    Ok(Report::new(shape, &measurement, elapsed))
}

/// One client: takes tickets and sends requests until none are left,
/// recording each outcome into its shard of the measurements.
async fn run_client(
    channel: Channel,
    tickets: Arc<RequestTickets>,
    operation: Arc<Operation>,
    seed: u64,
    deadline: Duration,
    shards: Arc<Vec<Mutex<Measurement>>>,
    shard: usize,
) {
    let mut kv = KvClient::new(channel);
    let mut keys = operation
        .shape()
        .map(|shape| KeyGenerator::new(shape, seed));
    while let Some(ticket) = tickets.take().await {
        let started = Instant::now();
        let outcome = match (&*operation, keys.as_mut()) {
            (Operation::Put { value, .. }, Some(keys)) => {
                let request = PutRequest {
                    key: keys.key(ticket),
                    value: value.clone(),
                    ..Default::default()
                };
                within(deadline, kv.put(request)).await.map(drop)
            }
            (Operation::TxnPut { value, txn_ops, .. }, Some(keys)) => {
                let success = (0..*txn_ops)
                    .map(|op| RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key: keys.key_at(ticket * (*txn_ops as u64) + op as u64),
                            value: value.clone(),
                            ..Default::default()
                        })),
                    })
                    .collect();
                let request = TxnRequest {
                    success,
                    ..Default::default()
                };
                within(deadline, kv.txn(request)).await.map(drop)
            }
            (Operation::Range { request }, _) => {
                within(deadline, kv.range(request.clone())).await.map(drop)
            }
            (Operation::Put { .. } | Operation::TxnPut { .. }, None) => {
                unreachable!("put operations always have a key generator")
            }
        };
        let latency = started.elapsed();
        let mut measurement = shards[shard]
            .lock()
            .expect("no client panicked holding a shard");
        match outcome {
            Ok(()) => measurement.latencies.record(latency),
            Err(code) => measurement.record_error(code),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Guards the ticket counter: exactly `total` tickets, each once, even
    //! with many concurrent takers, and pacing that spreads them in time.
    use super::*;

    #[tokio::test]
    async fn tickets_are_handed_out_once_and_paced() {
        let start = Instant::now();
        let tickets = Arc::new(RequestTickets::new(50, 1_000, start));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let tickets = Arc::clone(&tickets);
            tasks.push(tokio::spawn(async move {
                let mut taken = Vec::new();
                while let Some(ticket) = tickets.take().await {
                    taken.push(ticket);
                }
                taken
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("task"));
        }
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<u64>>());
        // Ticket 49 at 1000/s is due at 49 ms.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(49), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    }

    #[tokio::test]
    async fn late_answers_are_deadline_exceeded() {
        let late = within(Duration::from_millis(5), async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<(), tonic::Status>(())
        })
        .await;
        assert_eq!(late, Err(tonic::Code::DeadlineExceeded));
        let failed = within(Duration::from_secs(1), async {
            Err::<(), _>(tonic::Status::unavailable("down"))
        })
        .await;
        assert_eq!(failed, Err(tonic::Code::Unavailable));
    }
}
