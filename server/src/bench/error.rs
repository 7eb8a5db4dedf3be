//! What can stop a benchmark run before it produces a report. Failed
//! requests during a run are not errors here: they are counted in the
//! report by gRPC code.

use std::time::Duration;

/// A benchmark that could not run or could not finish.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An endpoint is not a usable URI.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Dialing an endpoint failed.
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect {
        /// The endpoint dialed.
        endpoint: String,
        /// The transport error.
        reason: String,
    },
    /// A flag combination that cannot describe a run.
    #[error("invalid flags: {reason}")]
    InvalidFlags {
        /// What is wrong.
        reason: String,
    },
    /// The cluster did not become healthy within the bound.
    #[error("not healthy after {waited:?}: {unhealthy_endpoints:?} (last error: {last_error})")]
    NotHealthy {
        /// How long we waited.
        waited: Duration,
        /// The endpoints whose linearizable get had not succeeded.
        unhealthy_endpoints: Vec<String>,
        /// The last error seen.
        last_error: String,
    },
    /// Sending SIGKILL to the member failed.
    #[error("cannot kill pid {pid}: {reason}")]
    Kill {
        /// The process id.
        pid: u32,
        /// The error from `kill`.
        reason: String,
    },
    /// No put succeeded after the kill within the bound.
    #[error("no successful put within {waited:?} after killing pid {pid}")]
    NeverRecovered {
        /// The process killed.
        pid: u32,
        /// How long we waited after the kill.
        waited: Duration,
    },
    /// A watch stream could not be opened or its watchers not created.
    #[error("watch setup failed on stream {stream}: {reason}")]
    WatchSetup {
        /// The stream index.
        stream: usize,
        /// What failed.
        reason: String,
    },
    /// A client task panicked or was cancelled.
    #[error("client task failed: {reason}")]
    Task {
        /// The join error.
        reason: String,
    },
}
