//! [`serve`]: the client-facing server of one member. Every
//! `--listen-client-urls` address serves etcd's gRPC services and, like
//! etcd, HTTP `/health` and `/metrics` on the same port; every
//! `--listen-metrics-urls` address serves only the HTTP endpoints. Under
//! madsim the gRPC services run on the simulated network and the HTTP
//! endpoints are left out.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
#[cfg(not(madsim))]
use std::time::Duration;

use tracing::info;

use super::auth::AuthService;
use super::cluster::ClusterService;
use super::election::ElectionService;
use super::health::HealthService;
use super::kv::KvService;
use super::lease::LeaseService;
use super::limits::RequestLimits;
use super::lock::LockService;
use super::maintenance::MaintenanceService;
use super::metrics::Metrics;
use super::proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use super::proto::grpc::health::v1::health_server::HealthServer;
use super::proto::v3electionpb::election_server::ElectionServer;
use super::proto::v3lockpb::lock_server::LockServer;
use super::watch::WatchService;
use crate::config::ApiConfig;
use crate::node::NodeHandle;

/// How long open streams (watches, keep-alives) may keep a listener alive
/// after shutdown was requested before their connections are dropped.
#[cfg(not(madsim))]
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// HTTP/2 streams one client connection may have open at once: etcd sets
/// gRPC's limit to the maximum (math.MaxUint32), since clientv3 multiplexes
/// all of a client's watches and keep-alives over one connection.
#[cfg(not(madsim))]
pub const CONCURRENT_STREAMS_MAX: u32 = u32::MAX;

/// Why the client server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A listener failed while serving.
    #[error("serving {address} failed: {source}")]
    Transport {
        /// The address.
        address: SocketAddr,
        /// The transport error.
        source: tonic::transport::Error,
    },
}

/// Serves the client API of `node` on every address of `config` until
/// `shutdown` completes. Binds every address before serving any, so a port
/// in use fails fast.
pub async fn serve(
    config: &ApiConfig,
    node: NodeHandle,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (shutdown_sender, shutdown_receiver) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = shutdown_sender.send(true);
    });
    imp::serve(config, node, metrics, shutdown_receiver).await
}

/// Completes once shutdown is requested (or its sender is gone).
async fn shutdown_requested(mut receiver: tokio::sync::watch::Receiver<bool>) {
    let _ = receiver.wait_for(|requested| *requested).await;
}

/// One gRPC service of each kind over `node`, with etcd's message size limit.
macro_rules! with_services {
    ($builder:expr, $node:expr, $limits:expr) => {{
        let node: &NodeHandle = $node;
        let limits: RequestLimits = $limits;
        let message_bytes_max = limits.grpc_message_bytes_max();
        $builder
            .add_service(
                KvServer::new(KvService::new(node.clone(), limits))
                    .max_decoding_message_size(message_bytes_max),
            )
            .add_service(
                WatchServer::new(WatchService::new(node.clone()))
                    .max_decoding_message_size(message_bytes_max),
            )
            .add_service(
                LeaseServer::new(LeaseService::new(node.clone()))
                    .max_decoding_message_size(message_bytes_max),
            )
            .add_service(
                ClusterServer::new(ClusterService::new(node.clone()))
                    .max_decoding_message_size(message_bytes_max),
            )
            .add_service(
                MaintenanceServer::new(MaintenanceService::new(node.clone()))
                    .max_decoding_message_size(message_bytes_max),
            )
            .add_service(
                AuthServer::new(AuthService::new(node.clone()))
                    .max_decoding_message_size(message_bytes_max),
            )
            .add_service(
                LockServer::new(LockService::new(node.clone()))
                    .max_decoding_message_size(message_bytes_max),
            )
            .add_service(
                ElectionServer::new(ElectionService::new(node.clone()))
                    .max_decoding_message_size(message_bytes_max),
            )
            .add_service(HealthServer::new(HealthService))
    }};
}

#[cfg(not(madsim))]
mod imp {
    use std::sync::Arc;

    use futures::future::try_join_all;
    use tokio::net::TcpListener;
    use tonic::service::Routes;
    use tonic::transport::server::TcpIncoming;

    use super::*;
    use crate::api::http::{http_router, node_health_probe};

    pub(super) async fn serve(
        config: &ApiConfig,
        node: NodeHandle,
        metrics: Arc<Metrics>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), ServeError> {
        let client_listeners = bind_all(&config.listen_client_addresses).await?;
        let metrics_listeners = bind_all(&config.listen_metrics_addresses).await?;
        let probe = node_health_probe(node.clone());
        let mut servers = Vec::new();
        for listener in client_listeners {
            let builder = Routes::builder();
            let mut builder = builder;
            with_services!(builder, &node, config.limits);
            let router = builder
                .routes()
                .into_axum_router()
                .merge(http_router(probe.clone(), metrics.clone()));
            servers.push(serve_routes(
                listener,
                Routes::from(router),
                shutdown.clone(),
            ));
        }
        for listener in metrics_listeners {
            let router = http_router(probe.clone(), metrics.clone());
            servers.push(serve_routes(
                listener,
                Routes::from(router),
                shutdown.clone(),
            ));
        }
        try_join_all(servers).await?;
        Ok(())
    }

    async fn bind_all(addresses: &[SocketAddr]) -> Result<Vec<TcpListener>, ServeError> {
        let mut listeners = Vec::with_capacity(addresses.len());
        for &address in addresses {
            let listener = TcpListener::bind(address)
                .await
                .map_err(|source| ServeError::Bind { address, source })?;
            listeners.push(listener);
        }
        Ok(listeners)
    }

    /// Serves `routes` (gRPC over HTTP/2, plain HTTP/1.1 for the HTTP
    /// endpoints) on `listener` until shutdown, then gives open streams
    /// [`SHUTDOWN_GRACE`] to finish.
    pub async fn serve_routes(
        listener: TcpListener,
        routes: Routes,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), ServeError> {
        let address = listener.local_addr().map_err(|source| ServeError::Bind {
            address: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        info!(%address, "serving client requests");
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let server = tonic::transport::Server::builder()
            .accept_http1(true)
            .max_concurrent_streams(Some(CONCURRENT_STREAMS_MAX))
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, shutdown_requested(shutdown.clone()));
        let grace_expired = async {
            shutdown_requested(shutdown).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            result = server => result.map_err(|source| ServeError::Transport { address, source }),
            () = grace_expired => {
                info!(%address, "open client streams dropped at shutdown");
                Ok(())
            }
        }
    }
}

#[cfg(madsim)]
mod imp {
    use std::sync::Arc;

    use futures::future::try_join_all;

    use super::*;

    pub(super) async fn serve(
        config: &ApiConfig,
        node: NodeHandle,
        _metrics: Arc<Metrics>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), ServeError> {
        let mut servers = Vec::new();
        for &address in &config.listen_client_addresses {
            let builder = tonic::transport::Server::builder();
            let mut builder = builder;
            let router = with_services!(&mut builder, &node, config.limits);
            let shutdown = shutdown.clone();
            servers.push(async move {
                info!(%address, "serving client requests (simulated)");
                router
                    .serve_with_shutdown(address, shutdown_requested(shutdown))
                    .await
                    .map_err(|source| ServeError::Transport { address, source })
            });
        }
        try_join_all(servers).await?;
        Ok(())
    }
}

#[cfg(not(madsim))]
pub use imp::serve_routes;

#[cfg(all(test, not(madsim)))]
mod tests {
    //! Guards the client port's transport: gRPC (HTTP/2) and plain HTTP/1.1
    //! share one listener, as on etcd's client port, and shutdown stops it.
    //! The KV services need a running node; the health service and the HTTP
    //! endpoints do not, so they are what this exercises.

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tonic::service::Routes;

    use super::*;
    use crate::api::http::{http_router, HealthProbe};
    use crate::api::proto::grpc::health::v1::health_client::HealthClient;
    use crate::api::proto::grpc::health::v1::{health_check_response, HealthCheckRequest};

    /// Bound on every wait in these tests.
    const TEST_TIMEOUT: Duration = Duration::from_secs(10);

    async fn http_get(address: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: cairn\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        response
    }

    #[tokio::test]
    async fn grpc_health_and_http_endpoints_share_the_client_port() {
        let healthy = Arc::new(AtomicBool::new(true));
        let probe_state = healthy.clone();
        let probe: HealthProbe = Arc::new(move || {
            let healthy = probe_state.load(Ordering::SeqCst);
            Box::pin(async move { healthy })
        });
        let metrics = Arc::new(Metrics::default());
        metrics
            .has_leader
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let router = Routes::new(HealthServer::new(HealthService))
            .into_axum_router()
            .merge(http_router(probe, metrics));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (shutdown_sender, shutdown_receiver) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(serve_routes(
            listener,
            Routes::from(router),
            shutdown_receiver,
        ));

        let mut client = tokio::time::timeout(
            TEST_TIMEOUT,
            HealthClient::connect(format!("http://{address}")),
        )
        .await
        .expect("connect in time")
        .expect("connect");
        let response = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("check")
            .into_inner();
        assert_eq!(
            response.status,
            health_check_response::ServingStatus::Serving as i32
        );
        let unknown = client
            .check(HealthCheckRequest {
                service: "nope".to_string(),
            })
            .await
            .expect_err("unknown service");
        assert_eq!(unknown.code(), tonic::Code::NotFound);

        let response = http_get(address, "/health").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("{\"health\":\"true\"}"), "{response}");
        healthy.store(false, Ordering::SeqCst);
        let response = http_get(address, "/health").await;
        assert!(response.starts_with("HTTP/1.1 503"), "{response}");
        assert!(response.ends_with("{\"health\":\"false\"}"), "{response}");

        let response = http_get(address, "/metrics").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            response.contains("\netcd_server_has_leader 1\n"),
            "{response}"
        );
        assert!(
            response.contains("\nprocess_resident_memory_bytes "),
            "{response}"
        );

        drop(client);
        shutdown_sender.send(true).expect("server is running");
        let result = tokio::time::timeout(TEST_TIMEOUT, server)
            .await
            .expect("server stops after shutdown")
            .expect("server task");
        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn kv_over_grpc_with_etcds_request_limit() {
        use crate::api::model::ModelKv;
        use crate::api::proto::etcdserverpb::kv_client::KvClient;
        use crate::api::proto::etcdserverpb::{PutRequest, RangeRequest};

        let limits = RequestLimits {
            request_bytes_max: 1024,
            txn_ops_max: 8,
        };
        let kv = KvServer::new(KvService::new(ModelKv::default(), limits))
            .max_decoding_message_size(limits.grpc_message_bytes_max());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (shutdown_sender, shutdown_receiver) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(serve_routes(listener, Routes::new(kv), shutdown_receiver));

        let mut client =
            tokio::time::timeout(TEST_TIMEOUT, KvClient::connect(format!("http://{address}")))
                .await
                .expect("connect in time")
                .expect("connect");
        let put = PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        let revision = client
            .put(put)
            .await
            .expect("put")
            .into_inner()
            .header
            .expect("header");
        let range = RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        };
        let response = client.range(range).await.expect("range").into_inner();
        assert_eq!(response.kvs.len(), 1);
        assert_eq!(response.kvs[0].value, b"v".to_vec());
        assert_eq!(response.header.expect("header").revision, revision.revision);

        let large = PutRequest {
            key: b"big".to_vec(),
            value: vec![b'x'; 2000],
            ..Default::default()
        };
        let refused = client
            .put(large)
            .await
            .expect_err("over --max-request-bytes");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert_eq!(refused.message(), "etcdserver: request is too large");

        drop(client);
        shutdown_sender.send(true).expect("server is running");
        let result = tokio::time::timeout(TEST_TIMEOUT, server)
            .await
            .expect("server stops after shutdown")
            .expect("server task");
        assert!(result.is_ok(), "{result:?}");
    }
}
