//! The watch fan-out workload: `--streams` watch streams (spread over the
//! connections) each carry `--watchers-per-stream` watchers on one key
//! prefix; one putter writes `--put-total` keys under it at `--put-rate`.
//! Every put's value starts with its send time (nanoseconds since the run's
//! start, big-endian), so each watcher's event latency is the time from the
//! put being sent to the event arriving, with no shared state between the
//! putter and the watchers. The report's latencies are these fan-out
//! latencies, its rate the events received per second.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch as signal;
use tokio::time::Instant;
use tonic::transport::Channel;

use super::config::{GlobalArgs, WatchArgs};
use super::connection::ConnectionPool;
use super::error::BenchError;
use super::key::random_value;
use super::load::{within, RequestTickets};
use super::report::{Measurement, Report, RunShape};
use crate::api::proto::etcdserverpb::kv_client::KvClient;
use crate::api::proto::etcdserverpb::watch_client::WatchClient;
use crate::api::proto::etcdserverpb::{
    watch_request, PutRequest, WatchCreateRequest, WatchRequest,
};

/// Bytes of the send timestamp at the start of every value.
pub const TIMESTAMP_BYTES: usize = 8;
/// Bound on creating every watcher of a stream.
pub const WATCH_SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Most watchers one run may create.
pub const WATCHERS_MAX: usize = 1_000_000;

/// The end of the range of keys starting with `prefix` (etcd's
/// `GetPrefixRangeEnd`).
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): every key from the prefix on.
    vec![0]
}

/// A value of `size` bytes starting with `sent_nanos`.
pub fn stamped_value(sent_nanos: u64, padding: &[u8]) -> Vec<u8> {
    let mut value = sent_nanos.to_be_bytes().to_vec();
    value.extend_from_slice(padding);
    value
}

/// The send time stamped into `value`, if it has one.
pub fn sent_nanos(value: &[u8]) -> Option<u64> {
    let stamp: [u8; TIMESTAMP_BYTES] = value.get(..TIMESTAMP_BYTES)?.try_into().ok()?;
    Some(u64::from_be_bytes(stamp))
}

/// Sent to every stream when the putter is done.
#[derive(Debug, Clone, Copy)]
struct DrainSignal {
    /// Stop waiting for events then.
    deadline: Instant,
    /// Events each stream should receive (successful puts x its watchers).
    events_expected: u64,
}

/// What one stream saw.
#[derive(Debug, Default)]
struct StreamOutcome {
    measurement: Measurement,
    last_event: Option<Instant>,
}

/// Runs the watch workload and reports fan-out latency and events/s.
pub async fn run_watch(global: &GlobalArgs, args: &WatchArgs) -> Result<Report, BenchError> {
    let watcher_total = args.streams.saturating_mul(args.watchers_per_stream);
    if args.streams == 0 || args.watchers_per_stream == 0 || watcher_total > WATCHERS_MAX {
        return Err(BenchError::InvalidFlags {
            reason: format!(
                "--streams {} x --watchers-per-stream {} must be in 1..={WATCHERS_MAX}",
                args.streams, args.watchers_per_stream
            ),
        });
    }
    if args.val_size < TIMESTAMP_BYTES {
        return Err(BenchError::InvalidFlags {
            reason: format!(
                "--val-size {} < {TIMESTAMP_BYTES} timestamp bytes",
                args.val_size
            ),
        });
    }
    let pool =
        ConnectionPool::connect(&global.endpoints, global.conns, global.dial_timeout()).await?;
    let prefix = args.prefix.as_bytes().to_vec();
    let start = Instant::now();
    let (drain_sender, drain_receiver) = signal::channel::<Option<DrainSignal>>(None);
    let mut ready = Vec::with_capacity(args.streams);
    let mut streams = Vec::with_capacity(args.streams);
    for stream in 0..args.streams {
        let (ready_sender, ready_receiver) = tokio::sync::oneshot::channel();
        ready.push(ready_receiver);
        streams.push(tokio::spawn(run_stream(
            stream,
            pool.channel_for_client(stream),
            prefix.clone(),
            args.watchers_per_stream,
            start,
            ready_sender,
            drain_receiver.clone(),
        )));
    }
    for (stream, ready_receiver) in ready.into_iter().enumerate() {
        match ready_receiver.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error),
            Err(_dropped) => {
                return Err(BenchError::WatchSetup {
                    stream,
                    reason: "stream task ended before its watchers were created".to_string(),
                })
            }
        }
    }
    let put_start = Instant::now();
    let put_measurement = run_putter(
        pool.channel_for_client(0),
        args,
        &prefix,
        start,
        global.request_timeout(),
        global.seed,
    )
    .await;
    let drain_deadline = Instant::now() + Duration::from_millis(args.drain_timeout_ms);
    let puts_ok = put_measurement.latencies.count();
    // Receivers only fail to get this if they already ended, which is fine.
    let _ = drain_sender.send(Some(DrainSignal {
        deadline: drain_deadline,
        events_expected: puts_ok * args.watchers_per_stream as u64,
    }));
    let mut events = Measurement::default();
    let mut last_event = put_start;
    for stream in streams {
        let outcome = stream.await.map_err(|error| BenchError::Task {
            reason: error.to_string(),
        })?;
        events.merge(&outcome.measurement);
        last_event = last_event.max(outcome.last_event.unwrap_or(put_start));
    }
    let events_expected = puts_ok * watcher_total as u64;
    let events_received = events.latencies.count();
    let missing = events_expected.saturating_sub(events_received);
    if missing > 0 {
        *events
            .errors
            .entry("MissingEvents".to_string())
            .or_insert(0) += missing;
    }
    for (code, count) in &put_measurement.errors {
        *events.errors.entry(format!("Put{code}")).or_insert(0) += count;
    }
    let shape = RunShape {
        workload: "watch".to_string(),
        endpoints: global.endpoints.clone(),
        conns: pool.len(),
        clients: watcher_total,
        total_requested: args.put_total,
    };
    let mut report = Report::new(shape, &events, last_event.duration_since(put_start));
    let put_summary = put_measurement.latencies.summary();
    report
        .extra
        .insert("watchers".to_string(), watcher_total as f64);
    report.extra.insert("puts_ok".to_string(), puts_ok as f64);
    report
        .extra
        .insert("put_p99_ms".to_string(), put_summary.p99_ms);
    report
        .extra
        .insert("events_expected".to_string(), events_expected as f64);
    report
        .extra
        .insert("events_received".to_string(), events_received as f64);
    report
        .extra
        .insert("events_per_sec".to_string(), report.requests_per_sec);
    Ok(report)
}

/// Puts `--put-total` stamped keys under the prefix, paced.
async fn run_putter(
    channel: Channel,
    args: &WatchArgs,
    prefix: &[u8],
    start: Instant,
    deadline: Duration,
    seed: u64,
) -> Measurement {
    let mut kv = KvClient::new(channel);
    let padding = random_value(args.val_size - TIMESTAMP_BYTES, seed);
    let tickets = RequestTickets::new(args.put_total, args.put_rate, Instant::now());
    let mut measurement = Measurement::default();
    while let Some(ticket) = tickets.take().await {
        let sent = Instant::now();
        let sent_nanos = u64::try_from(sent.duration_since(start).as_nanos()).unwrap_or(u64::MAX);
        let mut key = prefix.to_vec();
        key.extend_from_slice(format!("{ticket:010}").as_bytes());
        let request = PutRequest {
            key,
            value: stamped_value(sent_nanos, &padding),
            ..Default::default()
        };
        match within(deadline, kv.put(request)).await {
            Ok(_) => measurement.latencies.record(sent.elapsed()),
            Err(code) => measurement.record_error(code),
        }
    }
    measurement
}

/// One watch stream: creates its watchers, signals ready, then records the
/// latency of every event until the drain deadline (or every expected event
/// arrived; the deadline then bounds the wait for stragglers).
async fn run_stream(
    stream: usize,
    channel: Channel,
    prefix: Vec<u8>,
    watchers: usize,
    start: Instant,
    ready: tokio::sync::oneshot::Sender<Result<(), BenchError>>,
    mut drain: signal::Receiver<Option<DrainSignal>>,
) -> StreamOutcome {
    let mut outcome = StreamOutcome::default();
    let setup_error = |reason: String| BenchError::WatchSetup { stream, reason };
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                range_end: prefix_range_end(&prefix),
                key: prefix,
                ..Default::default()
            },
        )),
    };
    // The request stream stays open (pending) after the creates: etcd ends
    // the whole watch stream when the client half-closes it.
    let requests = futures::stream::iter(vec![create; watchers]).chain(futures::stream::pending());
    let mut client = WatchClient::new(channel);
    let opened = tokio::time::timeout(WATCH_SETUP_TIMEOUT, client.watch(requests)).await;
    let mut responses = match opened {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => {
            let _ = ready.send(Err(setup_error(format!("{status:?}"))));
            return outcome;
        }
        Err(_elapsed) => {
            let _ = ready.send(Err(setup_error("timed out opening".to_string())));
            return outcome;
        }
    };
    let setup_deadline = Instant::now() + WATCH_SETUP_TIMEOUT;
    let mut created = 0;
    while created < watchers {
        match tokio::time::timeout_at(setup_deadline, responses.message()).await {
            Ok(Ok(Some(response))) if response.created => created += 1,
            Ok(Ok(Some(_other))) => {}
            Ok(Ok(None)) => {
                let reason = format!("stream closed after {created} of {watchers} creates");
                let _ = ready.send(Err(setup_error(reason)));
                return outcome;
            }
            Ok(Err(status)) => {
                let _ = ready.send(Err(setup_error(format!("{status:?}"))));
                return outcome;
            }
            Err(_elapsed) => {
                let reason = format!("only {created} of {watchers} watchers created in time");
                let _ = ready.send(Err(setup_error(reason)));
                return outcome;
            }
        }
    }
    let _ = ready.send(Ok(()));
    let mut drain_signal: Option<DrainSignal> = None;
    loop {
        if let Some(signal) = drain_signal {
            if outcome.measurement.latencies.count() >= signal.events_expected {
                break;
            }
        }
        let current_signal = drain_signal;
        let pending_responses = &mut responses;
        let next = async move {
            match current_signal {
                Some(signal) => {
                    tokio::time::timeout_at(signal.deadline, pending_responses.message()).await
                }
                None => Ok(pending_responses.message().await),
            }
        };
        tokio::select! {
            message = next => match message {
                Ok(Ok(Some(response))) => {
                    if response.canceled {
                        outcome.measurement.errors
                            .entry("WatchCanceled".to_string())
                            .and_modify(|count| *count += 1)
                            .or_insert(1);
                    }
                    let now = Instant::now();
                    for event in &response.events {
                        let value = event.kv.as_ref().map(|kv| kv.value.as_slice()).unwrap_or(&[]);
                        match sent_nanos(value) {
                            Some(nanos) => {
                                let sent = start + Duration::from_nanos(nanos);
                                outcome.measurement.latencies.record(now.saturating_duration_since(sent));
                                outcome.last_event = Some(now);
                            }
                            None => outcome.measurement.record_error(tonic::Code::DataLoss),
                        }
                    }
                }
                Ok(Ok(None)) => break,
                Ok(Err(status)) => {
                    outcome.measurement.record_error(status.code());
                    break;
                }
                // The drain deadline passed.
                Err(_elapsed) => break,
            },
            changed = drain.changed(), if drain_signal.is_none() => {
                if changed.is_err() {
                    break;
                }
                drain_signal = *drain.borrow();
            }
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    //! Guards the prefix arithmetic (a wrong range end silently watches
    //! nothing) and the timestamp round trip.
    use super::*;

    #[test]
    fn prefix_range_end_matches_etcd() {
        assert_eq!(prefix_range_end(b"abc"), b"abd".to_vec());
        assert_eq!(prefix_range_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_range_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_range_end(b""), vec![0]);
    }

    #[test]
    fn stamp_round_trips() {
        let value = stamped_value(123_456_789, &[7; 248]);
        assert_eq!(value.len(), 256);
        assert_eq!(sent_nanos(&value), Some(123_456_789));
        assert_eq!(sent_nanos(b"short"), None);
    }
}
