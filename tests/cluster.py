#!/usr/bin/env python3
"""Run a local three-member cluster in the foreground (`make cluster`).

Why: trying etcdctl, a client library or a failure by hand needs a real
multi-member cluster, started the way etcd's own Procfile starts one, and
stopped cleanly with Ctrl-C. This script needs nothing but Python's standard
library (no goreman, no foreman), and takes the server binary as an argument
so the same cluster can run cairn or, for comparison, the real etcd.

Members (etcd's Procfile layout, on 127.0.0.1 only):

    infra1  client 2379   peer 2380   data <dir>/infra1
    infra2  client 22379  peer 22380  data <dir>/infra2
    infra3  client 32379  peer 32380  data <dir>/infra3

Every line a member prints is shown prefixed with its name. Ctrl-C or
SIGTERM stops all members (SIGTERM, then SIGKILL after a grace period).
A member that dies on its own is reported and the others keep running, so
the cluster can be observed with one member down; the script exits once no
member is left.

Usage:
    tests/cluster.py [SERVER_BINARY] [--data-dir DIR] [-- EXTRA FLAGS...]

    SERVER_BINARY  default: $CAIRN_BIN, else target/debug/cairn, else
                   target/release/cairn (relative to the workspace)
    --data-dir     default: $CAIRN_CLUSTER_DIR, else ./cluster.cairn
    EXTRA FLAGS    appended to every member's command line

Examples:
    tests/cluster.py                         # cairn from target/debug
    tests/cluster.py /usr/bin/etcd --data-dir /tmp/etcd-cluster
    etcdctl --endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 member list
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

# (name, client port, peer port) of each member, as in etcd's Procfile.
MEMBERS = (
    ("infra1", 2379, 2380),
    ("infra2", 22379, 22380),
    ("infra3", 32379, 32380),
)
HOST = "127.0.0.1"
CLUSTER_TOKEN = "cairn-cluster-1"
DATA_DIR_VARIABLE = "CAIRN_CLUSTER_DIR"
DEFAULT_DATA_DIR = "cluster.cairn"
BINARY_VARIABLE = "CAIRN_BIN"
# Seconds a member gets to exit after SIGTERM before it is killed.
STOP_GRACE_SECONDS = 10.0
# Seconds between checks for exited members while running.
SUPERVISE_INTERVAL_SECONDS = 0.2

WORKSPACE = Path(__file__).resolve().parent.parent
_print_lock = threading.Lock()


def say(prefix, line):
    """Prints one line with a fixed-width prefix, never interleaved."""
    with _print_lock:
        sys.stdout.write(f"{prefix:<7}| {line}\n")
        sys.stdout.flush()


def default_binary():
    explicit = os.environ.get(BINARY_VARIABLE)
    if explicit:
        return Path(explicit)
    for profile in ("debug", "release"):
        candidate = WORKSPACE / "target" / profile / "cairn"
        if candidate.is_file():
            return candidate
    return WORKSPACE / "target" / "debug" / "cairn"


def member_flags(name, client_port, peer_port, data_dir, extra_flags):
    initial_cluster = ",".join(
        f"{member}=http://{HOST}:{peer}" for member, _, peer in MEMBERS
    )
    client_url = f"http://{HOST}:{client_port}"
    peer_url = f"http://{HOST}:{peer_port}"
    return [
        f"--name={name}",
        f"--data-dir={data_dir / name}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster={initial_cluster}",
        "--initial-cluster-state=new",
        f"--initial-cluster-token={CLUSTER_TOKEN}",
        *extra_flags,
    ]


def port_in_use(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return True
    return False


def relay_output(name, stream):
    """Copies a member's merged stdout/stderr to ours, line by line."""
    for raw in iter(stream.readline, b""):
        say(name, raw.decode("utf-8", errors="replace").rstrip("\n"))
    stream.close()


def stop_all(processes):
    """SIGTERM every running member, then SIGKILL the ones that linger."""
    for name, process in processes.items():
        if process.poll() is None:
            say("cluster", f"stopping {name} (pid {process.pid})")
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for name, process in processes.items():
        remaining = max(0.0, deadline - time.monotonic())
        try:
            process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            say("cluster", f"{name} ignored SIGTERM for {STOP_GRACE_SECONDS}s; killing it")
            process.kill()
            process.wait()


def parse_arguments(argv):
    extra_flags = []
    if "--" in argv:
        split = argv.index("--")
        argv, extra_flags = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(
        description="Run a local three-member cairn (or etcd) cluster in the foreground.",
        epilog="Flags after -- are appended to every member's command line.",
    )
    parser.add_argument(
        "binary",
        nargs="?",
        type=Path,
        default=None,
        help=f"server binary (default: ${BINARY_VARIABLE}, else target/debug/cairn)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get(DATA_DIR_VARIABLE, DEFAULT_DATA_DIR)),
        help=f"parent of the members' data dirs (default: ${DATA_DIR_VARIABLE}, "
        f"else ./{DEFAULT_DATA_DIR})",
    )
    arguments = parser.parse_args(argv)
    arguments.extra_flags = extra_flags
    if arguments.binary is None:
        arguments.binary = default_binary()
    return arguments


def main(argv):
    arguments = parse_arguments(argv)
    binary = arguments.binary
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        print(
            f"cluster: server binary {binary} not found or not executable; "
            "build it with `cargo build -p cairn-server` or pass a path "
            "(e.g. /usr/bin/etcd)",
            file=sys.stderr,
        )
        return 2
    busy = [port for _, client, peer in MEMBERS for port in (client, peer) if port_in_use(port)]
    if busy:
        print(f"cluster: ports already in use on {HOST}: {busy}", file=sys.stderr)
        return 2
    data_dir = arguments.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)

    stop_requested = threading.Event()

    def request_stop(signal_number, _frame):
        if not stop_requested.is_set():
            say("cluster", f"received {signal.Signals(signal_number).name}; stopping all members")
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    processes = {}
    relays = []
    try:
        for name, client_port, peer_port in MEMBERS:
            command = [str(binary)] + member_flags(
                name, client_port, peer_port, data_dir, arguments.extra_flags
            )
            say("cluster", " ".join(command))
            # A new session: Ctrl-C reaches only this script, which then
            # stops the members in order instead of racing the terminal.
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            processes[name] = process
            relay = threading.Thread(target=relay_output, args=(name, process.stdout), daemon=True)
            relay.start()
            relays.append(relay)
        endpoints = ",".join(f"{HOST}:{client}" for _, client, _ in MEMBERS)
        say("cluster", f"started; endpoints {endpoints}; data in {data_dir}; Ctrl-C stops")

        reported = set()
        while not stop_requested.is_set():
            for name, process in processes.items():
                status = process.poll()
                if status is not None and name not in reported:
                    reported.add(name)
                    say("cluster", f"{name} exited with status {status}")
            if len(reported) == len(processes):
                say("cluster", "no member is running; exiting")
                break
            stop_requested.wait(SUPERVISE_INTERVAL_SECONDS)
    finally:
        stop_all(processes)
        for relay in relays:
            relay.join(timeout=STOP_GRACE_SECONDS)
    if stop_requested.is_set():
        say("cluster", "all members stopped")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
