//! `cairn`: one member of a Cairn cluster. Parses etcd's flags (or an
//! etcd-style YAML `--config-file`), starts the node, serves the client API
//! until SIGINT or SIGTERM, and exits non-zero with a one-line error on any
//! failure.

use std::process::ExitCode;

use cairn_server::config::{ConfigError, ServerConfig};

/// Exit status for an unusable configuration or a failed start.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let loaded = match ServerConfig::load(std::env::args_os()) {
        Ok(loaded) => loaded,
        Err(ConfigError::Flags {
            message,
            is_help: true,
        }) => {
            print!("{message}");
            return ExitCode::SUCCESS;
        }
        Err(ConfigError::Flags {
            message,
            is_help: false,
        }) => {
            // clap's own message: the error line, usage, and a --help hint.
            eprint!("{message}");
            return ExitCode::from(EXIT_FAILURE);
        }
        Err(error) => {
            eprintln!("cairn: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match run::run(loaded) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cairn: {error:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

#[cfg(not(madsim))]
mod run {
    use std::io::IsTerminal;
    use std::sync::Arc;

    use anyhow::Context;
    use cairn_server::api::serve;
    use cairn_server::config::{ClusterState, LoadedConfig, NodeConfig};
    use cairn_server::node::{start_on_disk, InitialMember, NodeHandle, NodeTask, StartMode};
    use cairn_server::storage::{Disk, OsDisk};
    use tracing::{info, warn};

    /// Runs the member until a shutdown signal.
    pub fn run(loaded: LoadedConfig) -> anyhow::Result<()> {
        let LoadedConfig {
            config,
            ignored_flags,
        } = loaded;
        tracing_subscriber::fmt()
            .with_max_level(config.log_level)
            .with_target(false)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init();
        if !ignored_flags.is_empty() {
            warn!(
                ignored = %ignored_flags.join(" "),
                "loaded the configuration file; other command line flags are ignored"
            );
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(async move {
            let (node, task) = start_node(&config.node).await?;
            let metrics = node.metrics().clone();
            let (stop_sender, stop) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = stop_sender.send(true);
            });
            let stop_requested = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
                let _ = stop.wait_for(|stop| *stop).await;
            };
            let ended = task.wait();
            tokio::pin!(ended);
            // As etcd: serve clients only once this member has published its
            // name and client URLs to the cluster (which needs a quorum).
            info!(name = %config.node.name, "waiting to publish member attributes");
            let serve_clients = tokio::select! {
                published = node.wait_published() => { published?; true }
                () = stop_requested(stop.clone()) => false,
                result = &mut ended => {
                    result.context("member stopped")?;
                    anyhow::bail!("member stopped before publishing its attributes");
                }
            };
            if serve_clients {
                info!(name = %config.node.name, "ready to serve client requests");
                let serving = serve(&config.api, node.clone(), metrics, stop_requested(stop));
                tokio::pin!(serving);
                tokio::select! {
                    served = &mut serving => served?,
                    result = &mut ended => {
                        result.context("member stopped")?;
                        anyhow::bail!("member stopped unexpectedly");
                    }
                }
                info!("client API stopped");
            }
            info!("shutting the member down");
            if let Err(error) = node.shutdown().await {
                warn!(%error, "graceful shutdown did not complete");
            }
            (&mut ended).await.context("member stopped with an error")?;
            Ok(())
        })
    }

    /// Starts the member described by `config` on the real disk and returns
    /// its handle and the driver task (which ends with the node).
    async fn start_node(config: &NodeConfig) -> anyhow::Result<(NodeHandle, NodeTask)> {
        let initial_cluster = config
            .initial_cluster
            .iter()
            .map(|(name, peer_urls)| InitialMember {
                name: name.clone(),
                peer_urls: peer_urls.clone(),
            })
            .collect();
        let start_mode = match config.initial_cluster_state {
            ClusterState::New => StartMode::New,
            ClusterState::Existing => StartMode::Existing,
        };
        let listen_peer_url = match config.listen_peer_addresses.first() {
            Some(address) => format!("http://{address}"),
            None => anyhow::bail!("no --listen-peer-urls address"),
        };
        let mut node_config = cairn_server::node::NodeConfig::new(
            config.name.clone(),
            config.initial_cluster_token.clone(),
            initial_cluster,
            start_mode,
            listen_peer_url,
            config.advertise_client_urls.clone(),
            config.data_dir.clone(),
        )?;
        node_config.tick_interval = config.heartbeat_interval;
        let tick_ms = config.heartbeat_interval.as_millis().max(1);
        node_config.election_timeout_ticks =
            u64::try_from(config.election_timeout.as_millis().div_ceil(tick_ms))?.max(2);
        node_config.snapshot_count = config.snapshot_count;
        node_config.request_bytes_max = config.request_bytes_max;
        node_config.txn_ops_max = config.txn_ops_max;
        node_config.auto_compaction = config.auto_compaction.map(|mode| match mode {
            cairn_server::config::AutoCompaction::Periodic(retention) => {
                cairn_server::node::AutoCompaction::Periodic(retention)
            }
            cairn_server::config::AutoCompaction::Revision(retention) => {
                cairn_server::node::AutoCompaction::Revision(retention)
            }
        });
        // 0 keeps etcd's default (2 GiB).
        if config.quota_backend_bytes != 0 {
            node_config.quota_backend_bytes = config.quota_backend_bytes;
        }
        // Outside the simulator the seed only has to differ between members
        // and runs (election timeouts, lease IDs).
        node_config.seed = rand::random();
        let disk: Arc<dyn Disk> = Arc::new(OsDisk);
        let (node, task) = start_on_disk(node_config, disk)
            .await
            .with_context(|| format!("cannot start member {:?}", config.name))?;
        Ok((node, task))
    }

    /// Completes on SIGINT or SIGTERM.
    async fn shutdown_signal() {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut terminate) => {
                    tokio::select! {
                        _ = interrupt => info!("SIGINT received, shutting down"),
                        _ = terminate.recv() => info!("SIGTERM received, shutting down"),
                    }
                }
                Err(error) => {
                    warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the member");
                    let _ = interrupt.await;
                    info!("SIGINT received, shutting down");
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = interrupt.await;
            info!("interrupt received, shutting down");
        }
    }
}

#[cfg(madsim)]
mod run {
    use cairn_server::config::LoadedConfig;

    /// The simulator drives nodes through the library; the binary has no
    /// simulated counterpart.
    pub fn run(_loaded: LoadedConfig) -> anyhow::Result<()> {
        anyhow::bail!("the cairn binary does not run under madsim; use cairn-sim")
    }
}
