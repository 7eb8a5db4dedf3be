//! Child processes with bounded lifetimes: one-shot commands with a
//! timeout, and long-running commands (watch, lock, elect) whose output is
//! read line by line while they run.
//!
//! A hung client must fail the test with what it printed so far, never
//! hang the suite; a long-running child must die with the test, even when
//! the test panics.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::wait::POLL_INTERVAL;

/// Pause between checks whether a one-shot command has exited; short,
/// because most etcdctl calls finish in milliseconds.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(5);
/// How long a child whose stdout closed gets to exit, so that a failure
/// report can show its exit status.
const EXIT_AFTER_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The result of a finished one-shot command.
#[derive(Debug)]
pub struct CommandOutput {
    /// The command line, for failure messages.
    pub command_line: String,
    /// How the command exited.
    pub status: ExitStatus,
    /// Everything written to standard output (lossy UTF-8).
    pub stdout: String,
    /// Everything written to standard error (lossy UTF-8).
    pub stderr: String,
}

impl CommandOutput {
    /// Whether the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics, showing the whole output, unless the command succeeded.
    #[track_caller]
    pub fn expect_success(self) -> CommandOutput {
        assert!(self.success(), "command was expected to succeed:\n{self}");
        self
    }

    /// Panics, showing the whole output, unless the command failed.
    #[track_caller]
    pub fn expect_failure(self) -> CommandOutput {
        assert!(!self.success(), "command was expected to fail:\n{self}");
        self
    }

    /// Panics unless standard error contains `expected`.
    #[track_caller]
    pub fn expect_stderr_contains(self, expected: &str) -> CommandOutput {
        assert!(
            self.stderr.contains(expected),
            "stderr lacks {expected:?}:\n{self}"
        );
        self
    }

    /// Standard output split into lines.
    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Standard output parsed as one JSON document.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout is not JSON ({error}):\n{self}"))
    }
}

impl fmt::Display for CommandOutput {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(formatter, "$ {}", self.command_line)?;
        writeln!(formatter, "exit: {}", self.status)?;
        writeln!(formatter, "--- stdout ---\n{}", self.stdout)?;
        write!(formatter, "--- stderr ---\n{}", self.stderr)
    }
}

/// A printable form of a command line (program and arguments).
pub(crate) fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    for argument in command.get_args() {
        let argument = argument.to_string_lossy();
        if argument.len() > 200 {
            words.push(format!("<{} bytes>", argument.len()));
        } else {
            words.push(argument.into_owned());
        }
    }
    words.join(" ")
}

/// Runs `command` to completion, feeding it `stdin`; kills it and panics
/// with its partial output if it runs longer than `timeout`.
pub fn run_with_timeout(mut command: Command, stdin: &[u8], timeout: Duration) -> CommandOutput {
    let command_line = describe(&command);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("cannot spawn `{command_line}`: {error}"));
    let stdin_pipe = child.stdin.take().expect("stdin is piped");
    let input = stdin.to_vec();
    // A writer thread: a child that does not read its input must not block
    // the harness. A broken pipe just means the child stopped reading.
    let writer = thread::spawn(move || {
        let mut stdin_pipe = stdin_pipe;
        let _ = stdin_pipe.write_all(&input);
    });
    let stdout_reader = read_to_end_in_background(child.stdout.take().expect("stdout is piped"));
    let stderr_reader = read_to_end_in_background(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(EXIT_POLL_INTERVAL),
            Ok(None) => {
                let _ = child.kill();
                let status = child.wait().expect("reaping a killed child");
                let output = CommandOutput {
                    command_line,
                    status,
                    stdout: join_reader(stdout_reader),
                    stderr: join_reader(stderr_reader),
                };
                panic!("command did not finish within {timeout:?}; killed it:\n{output}");
            }
            Err(error) => panic!("cannot wait for `{command_line}`: {error}"),
        }
    };
    let _ = writer.join();
    CommandOutput {
        command_line,
        status,
        stdout: join_reader(stdout_reader),
        stderr: join_reader(stderr_reader),
    }
}

fn read_to_end_in_background(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

fn join_reader(reader: JoinHandle<Vec<u8>>) -> String {
    let bytes = reader.join().unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A running child whose standard output is consumed line by line; killed
/// (SIGKILL) on drop.
pub struct BackgroundCommand {
    command_line: String,
    child: Child,
    stdout_lines: Receiver<String>,
    stdout_closed: bool,
    // Every stdout line received so far, in order.
    seen_lines: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl BackgroundCommand {
    /// Spawns `command` with piped output and no input.
    pub fn spawn(mut command: Command) -> BackgroundCommand {
        let command_line = describe(&command);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot spawn `{command_line}`: {error}"));
        let (sender, stdout_lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_sink = Arc::clone(&stderr);
        let stderr_pipe = child.stderr.take().expect("stderr is piped");
        thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                let mut sink = stderr_sink
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                sink.push_str(&line);
                sink.push('\n');
            }
        });
        BackgroundCommand {
            command_line,
            child,
            stdout_lines,
            stdout_closed: false,
            seen_lines: Vec::new(),
            stderr,
        }
    }

    /// The operating-system process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Every stdout line received so far (collects what is ready now).
    pub fn lines(&mut self) -> &[String] {
        while let Ok(line) = self.stdout_lines.try_recv() {
            self.seen_lines.push(line);
        }
        &self.seen_lines
    }

    /// Everything the child wrote to standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Waits until the stdout lines received so far satisfy `condition`,
    /// then returns them; panics on timeout or when stdout closes first.
    #[track_caller]
    pub fn wait_for_output(
        &mut self,
        description: &str,
        timeout: Duration,
        mut condition: impl FnMut(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            self.lines();
            if condition(&self.seen_lines) {
                return self.seen_lines.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting until {description}\n{}",
                    self.report()
                );
            }
            if self.stdout_closed {
                // The reader thread may still deliver nothing more; give the
                // child a moment to exit so the report shows its status.
                let _ = self.wait_for_exit_quietly(EXIT_AFTER_CLOSE_GRACE);
                panic!("stdout closed before {description}\n{}", self.report());
            }
            match self.stdout_lines.recv_timeout(deadline - now) {
                Ok(line) => self.seen_lines.push(line),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.stdout_closed = true,
            }
        }
    }

    /// Waits until stdout has printed `expected` as consecutive lines
    /// starting at or after line index `from`; returns the index just past
    /// the match.
    #[track_caller]
    pub fn wait_for_lines(&mut self, from: usize, expected: &[&str], timeout: Duration) -> usize {
        let description = format!("stdout shows lines {expected:?} at or after line {from}");
        let lines = self.wait_for_output(&description, timeout, |lines| {
            find_consecutive(lines, from, expected).is_some()
        });
        find_consecutive(&lines, from, expected).expect("condition just held")
    }

    /// Waits for the child to exit by itself within `timeout`.
    #[track_caller]
    pub fn wait_for_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.wait_for_exit_quietly(timeout) {
            Some(status) => status,
            None => panic!("did not exit within {timeout:?}\n{}", self.report()),
        }
    }

    fn wait_for_exit_quietly(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
                Ok(None) => return None,
                Err(error) => panic!("cannot wait for `{}`: {error}", self.command_line),
            }
        }
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the child (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The command line, output so far and exit state, for failure messages.
    pub fn report(&mut self) -> String {
        self.lines();
        let state = match self.child.try_wait() {
            Ok(Some(status)) => format!("exited: {status}"),
            Ok(None) => "still running".to_owned(),
            Err(error) => format!("unknown state: {error}"),
        };
        format!(
            "$ {}\n{state}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command_line,
            self.seen_lines.join("\n"),
            self.stderr()
        )
    }
}

impl Drop for BackgroundCommand {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The index just past the first run of `expected` as consecutive lines of
/// `lines` starting at or after `from`.
fn find_consecutive(lines: &[String], from: usize, expected: &[&str]) -> Option<usize> {
    if expected.is_empty() {
        return Some(from);
    }
    (from..lines.len())
        .find(|&start| {
            start + expected.len() <= lines.len()
                && lines[start..start + expected.len()]
                    .iter()
                    .zip(expected)
                    .all(|(line, wanted)| line == wanted)
        })
        .map(|start| start + expected.len())
}

#[cfg(test)]
mod tests {
    use super::find_consecutive;

    #[test]
    fn finds_consecutive_lines_after_an_offset() {
        let lines: Vec<String> = ["PUT", "a", "1", "PUT", "b", "2"].map(String::from).into();
        assert_eq!(find_consecutive(&lines, 0, &["PUT", "b", "2"]), Some(6));
        assert_eq!(find_consecutive(&lines, 0, &["PUT"]), Some(1));
        assert_eq!(find_consecutive(&lines, 1, &["PUT"]), Some(4));
        assert_eq!(find_consecutive(&lines, 4, &["PUT"]), None);
        assert_eq!(find_consecutive(&lines, 0, &["a", "2"]), None);
        assert_eq!(find_consecutive(&lines, 2, &[]), Some(2));
    }
}
