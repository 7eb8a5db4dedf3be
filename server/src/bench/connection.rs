//! The gRPC connections of a run: `--conns` HTTP/2 channels dialed
//! round-robin over `--endpoints`, shared round-robin by the clients (as
//! etcd's benchmark does), so "256 clients over 100 connections" means each
//! channel multiplexes two or three clients' streams.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::error::BenchError;

/// HTTP/2 flow-control windows (connection and stream); larger than the
/// protocol's 64 KiB default so that hundreds of in-flight responses never
/// wait for a window update.
pub const HTTP2_WINDOW_BYTES: u32 = 4 << 20;

/// Open channels, indexed by connection number.
#[derive(Debug, Clone)]
pub struct ConnectionPool {
    // Invariant: never empty.
    channels: Vec<Channel>,
}

/// Turns `host:port` into `http://host:port`; keeps an explicit scheme.
pub fn endpoint_uri(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

/// Builds (without dialing) the tonic endpoint for `endpoint`.
pub fn endpoint(endpoint: &str, dial_timeout: Duration) -> Result<Endpoint, BenchError> {
    let uri = endpoint_uri(endpoint);
    Endpoint::from_shared(uri)
        .map(|built| {
            built
                .connect_timeout(dial_timeout)
                .tcp_nodelay(true)
                .initial_connection_window_size(HTTP2_WINDOW_BYTES)
                .initial_stream_window_size(HTTP2_WINDOW_BYTES)
        })
        .map_err(|error| BenchError::InvalidEndpoint {
            endpoint: endpoint.to_string(),
            reason: error.to_string(),
        })
}

impl ConnectionPool {
    /// Dials `connection_count` channels, the i-th to
    /// `endpoints[i % endpoints.len()]`.
    pub async fn connect(
        endpoints: &[String],
        connection_count: usize,
        dial_timeout: Duration,
    ) -> Result<ConnectionPool, BenchError> {
        if endpoints.is_empty() {
            return Err(BenchError::InvalidFlags {
                reason: "--endpoints is empty".to_string(),
            });
        }
        if connection_count == 0 {
            return Err(BenchError::InvalidFlags {
                reason: "--conns must be at least 1".to_string(),
            });
        }
        let mut channels = Vec::with_capacity(connection_count);
        for index in 0..connection_count {
            let address = &endpoints[index % endpoints.len()];
            let channel = endpoint(address, dial_timeout)?
                .connect()
                .await
                .map_err(|error| BenchError::Connect {
                    endpoint: address.clone(),
                    reason: format!("{error:?}"),
                })?;
            channels.push(channel);
        }
        Ok(ConnectionPool { channels })
    }

    /// The channel client number `client` uses.
    pub fn channel_for_client(&self, client: usize) -> Channel {
        self.channels[client % self.channels.len()].clone()
    }

    /// Number of channels.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Always false: a pool has at least one channel.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}
