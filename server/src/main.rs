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
    use cairn_server::api::{serve, Metrics};
    use cairn_server::config::{LoadedConfig, NodeConfig};
    use cairn_server::node::NodeHandle;
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
            let metrics = Arc::new(Metrics::default());
            let node = start_node(&config.node, metrics.clone()).await?;
            info!(name = %config.node.name, "member started");
            serve(&config.api, node, metrics, shutdown_signal()).await?;
            info!("client API stopped");
            Ok(())
        })
    }

    /// The integration point with the node driver: starts the node described
    /// by `config`, which updates `metrics`, and returns its handle.
    ///
    /// NB: the node driver (`cairn_server::node::start`) lands with its own
    /// change; until it is wired in here the binary refuses to start with
    /// this error rather than serving a node that does not exist.
    async fn start_node(config: &NodeConfig, metrics: Arc<Metrics>) -> anyhow::Result<NodeHandle> {
        let _ = (config, metrics);
        anyhow::bail!("cannot start member: the node driver is not wired into this build yet")
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
