//! The real etcdctl (API v3) as a subprocess, pointed at chosen endpoints.
//!
//! etcdctl is the client users will run against cairn, so the tests speak
//! through it rather than through a hand-written client: its exact output
//! and error strings are part of what cairn must reproduce.

use std::env;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::base64::decode_base64;
use crate::command::{run_with_timeout, BackgroundCommand, CommandOutput};
use crate::server_binary::find_on_path;

/// Environment variable naming the etcdctl binary explicitly.
pub const ETCDCTL_BINARY_VARIABLE: &str = "CAIRN_E2E_ETCDCTL";
/// Hard limit on one etcdctl invocation. etcdctl's own command timeout is
/// 5 s and its dial timeout 2 s; this only catches a hung client.
pub const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(30);

/// An etcdctl invocation template: binary plus `--endpoints`.
#[derive(Clone, Debug)]
pub struct Etcdctl {
    path: PathBuf,
    endpoints: String,
}

impl Etcdctl {
    /// Finds etcdctl (`CAIRN_E2E_ETCDCTL`, else `PATH`) or panics saying how
    /// to install it. `endpoints` is etcdctl's comma-separated list.
    pub fn new(endpoints: &str) -> Etcdctl {
        let path = match env::var_os(ETCDCTL_BINARY_VARIABLE) {
            Some(explicit) => {
                let path = PathBuf::from(explicit);
                assert!(
                    path.is_file(),
                    "{ETCDCTL_BINARY_VARIABLE}={} does not name a file",
                    path.display()
                );
                path
            }
            None => find_on_path("etcdctl")
                .or_else(|| Some(PathBuf::from("/usr/bin/etcdctl")).filter(|path| path.is_file()))
                .unwrap_or_else(|| {
                    panic!(
                        "etcdctl not found on PATH; install the Debian package etcd-client or \
                         set {ETCDCTL_BINARY_VARIABLE}=<path>"
                    )
                }),
        };
        Etcdctl {
            path,
            endpoints: endpoints.to_owned(),
        }
    }

    /// The endpoints this etcdctl talks to.
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// A `Command` for `etcdctl --endpoints=… <arguments>` with a clean
    /// environment: `ETCDCTL_API=3` and no inherited `ETCDCTL_*` settings.
    pub fn command(&self, arguments: &[&str]) -> Command {
        let mut command = Command::new(&self.path);
        for (name, _) in env::vars_os() {
            if name.to_string_lossy().starts_with("ETCDCTL_") {
                command.env_remove(name);
            }
        }
        command.env("ETCDCTL_API", "3");
        command.arg(format!("--endpoints={}", self.endpoints));
        command.args(arguments);
        command
    }

    /// Runs etcdctl to completion (bounded by [`ETCDCTL_TIMEOUT`]).
    pub fn run(&self, arguments: &[&str]) -> CommandOutput {
        self.run_with_stdin(arguments, b"")
    }

    /// Runs etcdctl to completion with `stdin` as its standard input.
    pub fn run_with_stdin(&self, arguments: &[&str], stdin: &[u8]) -> CommandOutput {
        run_with_timeout(self.command(arguments), stdin, ETCDCTL_TIMEOUT)
    }

    /// Runs a long etcdctl command (such as `check perf`) under its own
    /// hard `timeout` instead of [`ETCDCTL_TIMEOUT`].
    pub fn run_for_at_most(&self, arguments: &[&str], timeout: Duration) -> CommandOutput {
        run_with_timeout(self.command(arguments), b"", timeout)
    }

    /// Starts a long-running etcdctl (watch, lock, elect).
    pub fn spawn(&self, arguments: &[&str]) -> BackgroundCommand {
        BackgroundCommand::spawn(self.command(arguments))
    }

    /// `put key value`, which must succeed; returns the new revision.
    #[track_caller]
    pub fn put(&self, key: &str, value: &str) -> i64 {
        let output = self
            .run(&["put", key, value, "-w", "json"])
            .expect_success();
        revision_of(&output.json()["header"], &output)
    }

    /// `get <arguments> -w json`, which must succeed, parsed.
    #[track_caller]
    pub fn get(&self, arguments: &[&str]) -> RangeReply {
        let mut full = vec!["get"];
        full.extend_from_slice(arguments);
        full.extend_from_slice(&["-w", "json"]);
        let output = self.run(&full).expect_success();
        RangeReply::parse(&output)
    }

    /// The value of `key`, or `None` if it does not exist.
    #[track_caller]
    pub fn value(&self, key: &str) -> Option<String> {
        let reply = self.get(&[key]);
        assert!(
            reply.kvs.len() <= 1,
            "a single-key get returned {} keys",
            reply.kvs.len()
        );
        reply.kvs.into_iter().next().map(|kv| kv.value)
    }
}

/// One key-value pair from `get -w json` (key and value decoded to text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
    /// Revision of the put that created the key's current incarnation.
    pub create_revision: i64,
    /// Revision of the key's last modification.
    pub mod_revision: i64,
    /// Number of puts since creation (1 after the first).
    pub version: i64,
    /// Attached lease id, 0 for none.
    pub lease: i64,
}

/// A parsed `get -w json` reply.
#[derive(Clone, Debug)]
pub struct RangeReply {
    /// The store revision the read observed (header.revision).
    pub revision: i64,
    /// The member that answered (header.member_id).
    pub member_id: u64,
    /// The returned pairs, in the order printed.
    pub kvs: Vec<KeyValue>,
    /// Total number of keys in the range (ignoring the limit).
    pub count: i64,
    /// Whether more keys exist beyond the limit.
    pub more: bool,
}

impl RangeReply {
    /// Parses etcdctl's JSON for a RangeResponse. Protobuf JSON omits zero
    /// and false fields, so missing numbers read as 0.
    #[track_caller]
    pub fn parse(output: &CommandOutput) -> RangeReply {
        let json = output.json();
        let kvs = json["kvs"]
            .as_array()
            .map(|pairs| {
                pairs
                    .iter()
                    .map(|pair| parse_key_value(pair, output))
                    .collect()
            })
            .unwrap_or_default();
        RangeReply {
            revision: revision_of(&json["header"], output),
            member_id: json["header"]["member_id"].as_u64().unwrap_or(0),
            kvs,
            count: json["count"].as_i64().unwrap_or(0),
            more: json["more"].as_bool().unwrap_or(false),
        }
    }

    /// The keys, in the order printed.
    pub fn keys(&self) -> Vec<&str> {
        self.kvs.iter().map(|kv| kv.key.as_str()).collect()
    }
}

fn parse_key_value(pair: &Value, output: &CommandOutput) -> KeyValue {
    let text = |field: &str| {
        let encoded = pair[field].as_str().unwrap_or("");
        String::from_utf8(decode_base64(encoded))
            .unwrap_or_else(|error| panic!("{field} is not UTF-8 ({error}):\n{output}"))
    };
    let number = |field: &str| pair[field].as_i64().unwrap_or(0);
    KeyValue {
        key: text("key"),
        value: text("value"),
        create_revision: number("create_revision"),
        mod_revision: number("mod_revision"),
        version: number("version"),
        lease: number("lease"),
    }
}

#[track_caller]
fn revision_of(header: &Value, output: &CommandOutput) -> i64 {
    header["revision"]
        .as_i64()
        .unwrap_or_else(|| panic!("no header.revision in the reply:\n{output}"))
}
