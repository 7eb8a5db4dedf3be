//! `cairn-bench`: a load generator for etcd's v3 gRPC API (Cairn or etcd).
//! Flags follow etcd's `tools/benchmark`; `--json` prints one JSON line for
//! `make bench`. Exits non-zero with a one-line error when the run could
//! not happen; failed requests during a run are reported, not fatal.

use std::process::ExitCode;

/// Exit status for a run that could not happen.
const EXIT_FAILURE: u8 = 1;

#[cfg(not(madsim))]
fn main() -> ExitCode {
    use clap::Parser;

    let args = cairn_server::bench::BenchArgs::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    // One worker: the current-thread scheduler, which runs woken tasks in
    // order, so a connection's task wakes once for the requests of many
    // clients and writes them in one syscall (as grpc-go's writer does).
    let mut builder = if args.global.worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all();
    if args.global.worker_threads > 1 {
        builder.worker_threads(args.global.worker_threads);
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cairn-bench: cannot start the tokio runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let outcome = runtime.block_on(cairn_server::bench::run(&args));
    // Puts still in flight (failover) must not hold the exit.
    runtime.shutdown_background();
    match outcome {
        Ok(report) => {
            if args.global.json {
                println!("{}", report.to_json_line());
            } else {
                print!("{}", report.to_text());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cairn-bench: {error}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

#[cfg(madsim)]
fn main() -> ExitCode {
    eprintln!("cairn-bench does not run under madsim; build it without --cfg madsim");
    ExitCode::from(EXIT_FAILURE)
}
