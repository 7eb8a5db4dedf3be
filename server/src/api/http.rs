//! The HTTP endpoints etcd serves beside gRPC on its client port (and alone
//! on `--listen-metrics-urls`): `GET /health`, answered like etcd 3.4
//! (`{"health":"true"}` with 200, `{"health":"false"}` with 503), and
//! `GET /metrics` in the Prometheus text format.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use cairn_core::kv::RangeRequest;

use super::metrics::{self, Metrics};
use crate::node::NodeHandle;

/// The path of the health endpoint.
pub const HEALTH_PATH: &str = "/health";
/// The path of the metrics endpoint.
pub const METRICS_PATH: &str = "/metrics";
/// How long the health probe's read may take (etcd 3.4: one second).
pub const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The key etcd's health probe reads (its value does not matter).
pub const HEALTH_PROBE_KEY: &[u8] = b"health";
/// The body etcd 3.4 answers for a healthy member.
pub const HEALTHY_BODY: &str = "{\"health\":\"true\"}";
/// The body etcd 3.4 answers for an unhealthy member.
pub const UNHEALTHY_BODY: &str = "{\"health\":\"false\"}";
/// The Prometheus text format's content type.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Decides whether the member is healthy.
pub type HealthProbe = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// etcd's probe: a linearizable read of [`HEALTH_PROBE_KEY`] completes in
/// time (which needs a leader and a quorum).
pub fn node_health_probe(node: NodeHandle) -> HealthProbe {
    Arc::new(move || {
        let node = node.clone();
        Box::pin(async move {
            let request = RangeRequest {
                key: HEALTH_PROBE_KEY.to_vec(),
                ..Default::default()
            };
            matches!(
                tokio::time::timeout(HEALTH_PROBE_TIMEOUT, node.range(request)).await,
                Ok(Ok(_))
            )
        })
    })
}

/// The router answering `/health` and `/metrics`.
pub fn http_router(probe: HealthProbe, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            HEALTH_PATH,
            get(move || {
                let probe = probe.clone();
                async move {
                    let (status, body) = if probe().await {
                        (StatusCode::OK, HEALTHY_BODY)
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, UNHEALTHY_BODY)
                    };
                    (
                        status,
                        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                        body,
                    )
                }
            }),
        )
        .route(
            METRICS_PATH,
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
                        metrics::render(&metrics),
                    )
                }
            }),
        )
}
