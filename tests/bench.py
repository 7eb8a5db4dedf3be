#!/usr/bin/env python3
"""`make bench`: Cairn against etcd 3.4, same load generator, same machine.

Starts a 3-member etcd cluster and a 3-member Cairn cluster on loopback, one
at a time, with the same flags where they correspond (heartbeat 100 ms,
election timeout 1000 ms) and data dirs on the same filesystem; runs the
same workloads against each with `cairn-bench`, interleaving the sides
(A B A B) so that machine drift cancels; then prints the Cairn/etcd ratios
next to the targets (PASS/MISS), each member's RSS after the load, the data
dir sizes, start -> healthy, and leader kill -9 -> first successful put.
Results also go to bench-results/<timestamp>.txt and .json with the commit.

Usage:
    CAIRN_BIN=target/release/cairn CAIRN_BENCH_BIN=target/release/cairn-bench \\
        python3 tests/bench.py [--quick] [--cairn-bin PATH] [--bench-bin PATH]

`BENCH=quick` (or --quick) is the short mode (< 3 minutes). Pointing
--cairn-bin at /usr/bin/etcd runs etcd against itself, which checks the
orchestrator: every ratio should come out near 1.0.

It builds nothing; every wait is bounded; every process it starts is killed
on exit, Ctrl-C or exception. It exits non-zero when a side failed (could
not start, or a workload could not run), after printing what it measured.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Cluster shape and timing, identical for both sides.
MEMBER_COUNT = 3
HEARTBEAT_INTERVAL_MS = 100
ELECTION_TIMEOUT_MS = 1000
# Port blocks on 127.0.0.1, away from etcd's 2379/2380 and below Linux's
# ephemeral range (32768-60999), where an outgoing connection's source port
# could take a member's listening port; one block per side so that a
# restarted side never meets the other's TIME_WAIT sockets.
PORT_BASE = {"etcd": 22379, "cairn": 22479}

# Bounds on every wait, in seconds.
HEALTHY_TIMEOUT_S = 60
WORKLOAD_TIMEOUT_S = 300
ETCDCTL_TIMEOUT_S = 15
CHECK_PERF_TIMEOUT_S = 150
FAILOVER_TIMEOUT_S = 40
STOP_TIMEOUT_S = 10
POLL_INTERVAL_S = 0.02

# The workload data: 8-byte keys, 256-byte values, 100000 keys.
KEY_SIZE = 8
VALUE_SIZE = 256
KEY_SPACE_SIZE = 100_000
RANGE_KEY = "bench/range"


@dataclass(frozen=True)
class Workload:
    """One load-generator run: its name, its shape and its target."""

    name: str
    conns: int
    clients: int
    total_full: int
    total_quick: int
    command: tuple[str, ...]
    # Cairn/etcd throughput needed, or None when the workload has no target.
    throughput_ratio_min: float | None
    # Whether Cairn's p99 must be no worse than etcd's.
    p99_no_worse: bool = False


PUT = ("put", "--key-size", str(KEY_SIZE), "--val-size", str(VALUE_SIZE),
       "--key-space-size", str(KEY_SPACE_SIZE))
WORKLOADS = [
    Workload("put 1 client", 1, 1, 6_000, 3_000, PUT, 2.0, p99_no_worse=True),
    Workload("put 64 clients", 1, 64, 30_000, 5_000, PUT, 3.0),
    Workload("put 256 clients / 100 conns", 100, 256, 40_000, 6_000, PUT, 3.0),
    Workload("put 1000 clients / 100 conns", 100, 1000, 50_000, 8_000, PUT, 3.0),
    Workload("range-l 1 client", 1, 1, 6_000, 3_000,
             ("range", RANGE_KEY, "--consistency", "l"), None),
    Workload("range-l 1000 clients / 100 conns", 100, 1000, 60_000, 10_000,
             ("range", RANGE_KEY, "--consistency", "l"), 3.0),
    Workload("range-s 1000 clients / 100 conns", 100, 1000, 60_000, 10_000,
             ("range", RANGE_KEY, "--consistency", "s"), 3.0),
]

# Targets that are not throughput ratios.
RSS_RATIO_MAX = 0.25
EMPTY_DATA_DIR_BYTES_MAX = 1_000_000
FAILOVER_MEDIAN_S_MAX = 1.1
FAILOVER_MAX_S_MAX = 1.5


@dataclass
class Mode:
    """How much to measure."""

    name: str
    rounds: int
    kills: int
    check_perf: bool

    def total(self, workload: Workload) -> int:
        return workload.total_quick if self.name == "quick" else workload.total_full


QUICK = Mode("quick", rounds=1, kills=2, check_perf=False)
FULL = Mode("full", rounds=2, kills=5, check_perf=True)


class SideFailed(Exception):
    """A side could not be measured (start failure, crashed workload...)."""


def log(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def client_endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


# Every process started, so that exit paths can kill them all.
RUNNING: list[subprocess.Popen] = []


def kill_all() -> None:
    for process in RUNNING:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
    RUNNING.clear()


def on_signal(signum, _frame) -> None:
    kill_all()
    raise SystemExit(128 + signum)


class Cluster:
    """Three members of one side (etcd or cairn), started from one binary."""

    def __init__(self, side: str, binary: str, root: Path, round_index: int):
        self.side = side
        self.binary = binary
        self.root = root / f"{side}-round{round_index}"
        self.root.mkdir(parents=True)
        base = PORT_BASE[side]
        self.members = [
            Member(
                name=f"{side}{index}",
                client_port=base + 2 * index,
                peer_port=base + 2 * index + 1,
                data_dir=self.root / f"member{index}",
                log_path=self.root / f"member{index}.log",
            )
            for index in range(MEMBER_COUNT)
        ]

    @property
    def endpoints(self) -> list[str]:
        return [member.client_endpoint for member in self.members]

    def flags(self, member: Member) -> list[str]:
        initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        client_url = f"http://{member.client_endpoint}"
        return [
            "--name", member.name,
            "--data-dir", str(member.data_dir),
            "--listen-client-urls", client_url,
            "--advertise-client-urls", client_url,
            "--listen-peer-urls", member.peer_url,
            "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", initial_cluster,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", f"bench-{self.side}",
            "--heartbeat-interval", str(HEARTBEAT_INTERVAL_MS),
            "--election-timeout", str(ELECTION_TIMEOUT_MS),
            "--log-level", "warn",
        ]

    def spawn(self, member: Member) -> None:
        log_file = open(member.log_path, "ab")
        try:
            process = subprocess.Popen(
                [self.binary, *self.flags(member)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as error:
            raise SideFailed(f"{self.side}: cannot start {self.binary}: {error}") from error
        finally:
            log_file.close()
        member.process = process
        RUNNING.append(process)

    def start(self) -> None:
        for member in self.members:
            self.spawn(member)

    def kill(self, member: Member) -> None:
        if member.process is not None and member.process.poll() is None:
            os.killpg(member.process.pid, signal.SIGKILL)
        if member.process is not None:
            member.process.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> None:
        for member in self.members:
            if member.alive():
                member.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for member in self.members:
            if member.process is None:
                continue
            try:
                member.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(member)

    def dead_members(self) -> list[str]:
        return [m.name for m in self.members if not m.alive()]

    def log_tail(self, member: Member, lines: int = 5) -> str:
        try:
            text = member.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:])


class Tools:
    def __init__(self, bench_bin: str, etcdctl_bin: str):
        self.bench_bin = bench_bin
        self.etcdctl_bin = etcdctl_bin

    def bench(self, endpoints: list[str], arguments: list[str], timeout: float,
              give_up=None) -> dict:
        """Runs cairn-bench --json; returns its report or raises SideFailed.
        `give_up()`, polled while it runs, ends the run early when true."""
        command = [self.bench_bin, "--endpoints", ",".join(endpoints), "--json", *arguments]
        with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
            process = subprocess.Popen(command, stdout=stdout, stderr=stderr,
                                       stdin=subprocess.DEVNULL, text=True)
            RUNNING.append(process)
            deadline = time.monotonic() + timeout
            while process.poll() is None:
                if time.monotonic() > deadline or (give_up is not None and give_up()):
                    process.kill()
                    process.wait(timeout=STOP_TIMEOUT_S)
                    reason = "timed out" if time.monotonic() > deadline else "given up"
                    raise SideFailed(f"cairn-bench {reason}: {arguments[:6]}")
                time.sleep(POLL_INTERVAL_S)
            stdout.seek(0)
            stderr.seek(0)
            output, errors = stdout.read(), stderr.read()
        if process.returncode != 0:
            detail = errors.strip().splitlines()[-1:] or ["no output"]
            raise SideFailed(f"cairn-bench {' '.join(arguments[:6])} failed: {detail[0]}")
        lines = [line for line in output.splitlines() if line.startswith("{")]
        if not lines:
            raise SideFailed(f"cairn-bench printed no report for {arguments}")
        return json.loads(lines[-1])

    def etcdctl(self, endpoints: list[str], arguments: list[str],
                timeout: float = ETCDCTL_TIMEOUT_S) -> subprocess.CompletedProcess:
        command = [self.etcdctl_bin, "--endpoints", ",".join(endpoints),
                   "--command-timeout=5s", "--dial-timeout=2s", *arguments]
        environment = dict(os.environ, ETCDCTL_API="3")
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  env=environment, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as error:
            raise SideFailed(f"etcdctl {arguments[:2]} timed out after {timeout}s") from error


def data_dir_bytes(path: Path) -> int:
    """Bytes allocated on disk under path (like du), following no links."""
    total = 0
    for directory, _subdirectories, files in os.walk(path):
        for name in files:
            try:
                stat = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            total += stat.st_blocks * 512
    return total


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def wait_healthy(cluster: Cluster, tools: Tools) -> float:
    """Seconds the health probe took until every member served a
    linearizable get; raises SideFailed past HEALTHY_TIMEOUT_S."""
    try:
        report = tools.bench(
            cluster.endpoints,
            ["health", "--timeout-ms", str(HEALTHY_TIMEOUT_S * 1000)],
            timeout=HEALTHY_TIMEOUT_S + 10,
            give_up=lambda: bool(cluster.dead_members()),
        )
    except SideFailed as error:
        dead = cluster.dead_members()
        tails = "; ".join(f"{m.name}: {cluster.log_tail(m)}" for m in cluster.members
                          if m.name in dead)
        raise SideFailed(f"{cluster.side} not healthy ({error}); exited: {dead} {tails}") from error
    return report["extra"]["healthy_after_ms"] / 1000.0


def find_leader(cluster: Cluster, tools: Tools) -> Member:
    deadline = time.monotonic() + HEALTHY_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        alive = [m for m in cluster.members if m.alive()]
        completed = tools.etcdctl([m.client_endpoint for m in alive],
                                  ["endpoint", "status", "-w", "json"])
        if completed.returncode == 0:
            try:
                statuses = json.loads(completed.stdout)
                for status in statuses:
                    header = status["Status"]["header"]
                    if header["member_id"] == status["Status"]["leader"]:
                        endpoint = status["Endpoint"].removeprefix("http://")
                        for member in alive:
                            if member.client_endpoint == endpoint:
                                return member
                last = f"no member reports itself leader: {completed.stdout.strip()[:200]}"
            except (ValueError, KeyError, TypeError) as error:
                last = f"unreadable endpoint status: {error}"
        else:
            last = completed.stderr.strip()[-200:]
        time.sleep(0.2)
    raise SideFailed(f"{cluster.side}: no leader found: {last}")


@dataclass
class SideResult:
    """Everything measured for one side, over all rounds."""

    side: str
    binary: str
    workloads: dict[str, list[dict]] = field(default_factory=dict)
    healthy_s: list[float] = field(default_factory=list)
    empty_data_dir_bytes: list[int] = field(default_factory=list)
    loaded_data_dir_bytes: list[int] = field(default_factory=list)
    rss_after_load_bytes: list[int] = field(default_factory=list)
    failover_s: list[float] = field(default_factory=list)
    check_perf: str | None = None
    failures: list[str] = field(default_factory=list)


def run_side_round(side: SideResult, mode: Mode, round_index: int, root: Path,
                   tools: Tools, do_failover: bool, do_check_perf: bool) -> None:
    cluster = Cluster(side.side, side.binary, root, round_index)
    log(f"round {round_index + 1}: starting {side.side} ({side.binary})")
    try:
        spawned_at = time.monotonic()
        cluster.start()
        probe_started_at = time.monotonic()
        healthy_s = wait_healthy(cluster, tools) + (probe_started_at - spawned_at)
        side.healthy_s.append(healthy_s)
        side.empty_data_dir_bytes.extend(data_dir_bytes(m.data_dir) for m in cluster.members)
        log(f"{side.side} healthy after {healthy_s:.3f}s")
        put = tools.etcdctl(cluster.endpoints, ["put", RANGE_KEY, "v" * VALUE_SIZE])
        if put.returncode != 0:
            raise SideFailed(f"{side.side}: etcdctl put failed: {put.stderr.strip()[-200:]}")
        for workload in WORKLOADS:
            arguments = ["--conns", str(workload.conns), "--clients", str(workload.clients),
                         "--total", str(mode.total(workload)), *workload.command]
            try:
                report = tools.bench(cluster.endpoints, arguments, WORKLOAD_TIMEOUT_S)
            except SideFailed as error:
                side.failures.append(f"round {round_index + 1} {workload.name}: {error}")
                log(f"{side.side} {workload.name}: FAILED {error}")
                if cluster.dead_members():
                    raise SideFailed(f"{side.side}: members exited: "
                                     f"{cluster.dead_members()}") from error
                continue
            side.workloads.setdefault(workload.name, []).append(report)
            if report["error_count"]:
                side.failures.append(f"round {round_index + 1} {workload.name}: "
                                     f"{report['error_count']} errors {report['errors']}")
            log(f"{side.side} {workload.name}: {report['requests_per_sec']:.0f} req/s, "
                f"p99 {report['latency']['p99_ms']:.2f} ms, errors {report['error_count']}")
        for member in cluster.members:
            rss = rss_bytes(member.process.pid) if member.alive() else None
            if rss is None:
                side.failures.append(f"round {round_index + 1}: {member.name} not running "
                                     "after the workloads")
            else:
                side.rss_after_load_bytes.append(rss)
            side.loaded_data_dir_bytes.append(data_dir_bytes(member.data_dir))
        if do_check_perf:
            log(f"{side.side}: etcdctl check perf --load=l (about a minute)")
            completed = tools.etcdctl(cluster.endpoints, ["check", "perf", "--load=l"],
                                      timeout=CHECK_PERF_TIMEOUT_S)
            lines = [line for line in (completed.stdout + completed.stderr).splitlines()
                     if line.strip()]
            verdict = "PASS" if completed.returncode == 0 and lines and lines[-1].strip() == "PASS" else "FAIL"
            side.check_perf = verdict + ": " + " / ".join(lines[-5:])
            log(f"{side.side}: check perf {side.check_perf}")
        if do_failover:
            for kill_index in range(mode.kills):
                leader = find_leader(cluster, tools)
                others = [m.client_endpoint for m in cluster.members if m is not leader]
                report = tools.bench(
                    others,
                    ["failover", "--kill-pid", str(leader.process.pid),
                     "--kill-after-ms", "300", "--interval-ms", "10",
                     "--put-timeout-ms", "1000", "--recover-timeout-ms", "15000"],
                    timeout=FAILOVER_TIMEOUT_S,
                )
                recovery_s = report["extra"]["kill_to_first_success_ms"] / 1000.0
                side.failover_s.append(recovery_s)
                log(f"{side.side} kill {kill_index + 1}: leader {leader.name} killed, "
                    f"first successful put after {recovery_s:.3f}s")
                cluster.kill(leader)
                cluster.spawn(leader)
                wait_healthy(cluster, tools)
    finally:
        cluster.stop()
        kill_all()


def mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def describe_bytes(value: float | None) -> str:
    if value is None:
        return "n/a"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def verdict(passed: bool | None) -> str:
    return "n/a" if passed is None else ("PASS" if passed else "MISS")


def format_number(value: float | None, pattern: str = "{:.0f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def build_table(etcd: SideResult, cairn: SideResult) -> tuple[str, list[dict]]:
    rows: list[dict] = []
    header = (f"{'measure':<40} {'etcd':>12} {'cairn':>12} {'cairn/etcd':>10}  "
              f"{'target':<22} verdict")
    lines = [header, "-" * len(header)]

    def add(measure: str, etcd_value: str, cairn_value: str, ratio_value: float | None,
            target: str, passed: bool | None) -> None:
        ratio_text = format_number(ratio_value, "{:.2f}")
        lines.append(f"{measure:<40} {etcd_value:>12} {cairn_value:>12} {ratio_text:>10}  "
                     f"{target:<22} {verdict(passed)}")
        rows.append({"measure": measure, "etcd": etcd_value, "cairn": cairn_value,
                     "ratio": ratio_value, "target": target, "verdict": verdict(passed)})

    for workload in WORKLOADS:
        etcd_reports = etcd.workloads.get(workload.name, [])
        cairn_reports = cairn.workloads.get(workload.name, [])
        etcd_rate = mean([r["requests_per_sec"] for r in etcd_reports])
        cairn_rate = mean([r["requests_per_sec"] for r in cairn_reports])
        rate_ratio = ratio(cairn_rate, etcd_rate)
        passed = None
        target = ""
        if workload.throughput_ratio_min is not None:
            target = f">= {workload.throughput_ratio_min:g}x req/s"
            passed = None if rate_ratio is None else rate_ratio >= workload.throughput_ratio_min
        add(f"{workload.name} req/s", format_number(etcd_rate), format_number(cairn_rate),
            rate_ratio, target, passed)
        etcd_p99 = mean([r["latency"]["p99_ms"] for r in etcd_reports])
        cairn_p99 = mean([r["latency"]["p99_ms"] for r in cairn_reports])
        p99_ratio = ratio(cairn_p99, etcd_p99)
        p99_passed = None
        if workload.p99_no_worse and p99_ratio is not None:
            p99_passed = p99_ratio <= 1.0
        add(f"{workload.name} p99 ms", format_number(etcd_p99, "{:.2f}"),
            format_number(cairn_p99, "{:.2f}"), p99_ratio,
            "<= 1x (no worse)" if workload.p99_no_worse else "", p99_passed)

    etcd_rss = max(etcd.rss_after_load_bytes, default=None)
    cairn_rss = max(cairn.rss_after_load_bytes, default=None)
    rss_ratio = ratio(cairn_rss, etcd_rss)
    add("RSS per member after load (max)", describe_bytes(etcd_rss), describe_bytes(cairn_rss),
        rss_ratio, f"<= {RSS_RATIO_MAX:g}x",
        None if rss_ratio is None else rss_ratio <= RSS_RATIO_MAX)
    etcd_empty = max(etcd.empty_data_dir_bytes, default=None)
    cairn_empty = max(cairn.empty_data_dir_bytes, default=None)
    add("empty member data dir (max)", describe_bytes(etcd_empty), describe_bytes(cairn_empty),
        ratio(cairn_empty, etcd_empty), "cairn <= 1 MB",
        None if cairn_empty is None else cairn_empty <= EMPTY_DATA_DIR_BYTES_MAX)
    etcd_loaded = max(etcd.loaded_data_dir_bytes, default=None)
    cairn_loaded = max(cairn.loaded_data_dir_bytes, default=None)
    add("data dir after load (max)", describe_bytes(etcd_loaded), describe_bytes(cairn_loaded),
        ratio(cairn_loaded, etcd_loaded), "", None)
    etcd_healthy = mean(etcd.healthy_s)
    cairn_healthy = mean(cairn.healthy_s)
    add("start -> healthy s (mean)", format_number(etcd_healthy, "{:.3f}"),
        format_number(cairn_healthy, "{:.3f}"), ratio(cairn_healthy, etcd_healthy), "", None)
    etcd_median = statistics.median(etcd.failover_s) if etcd.failover_s else None
    cairn_median = statistics.median(cairn.failover_s) if cairn.failover_s else None
    kills = max(len(etcd.failover_s), len(cairn.failover_s))
    add(f"leader kill -> put s (median of {kills})",
        format_number(etcd_median, "{:.3f}"), format_number(cairn_median, "{:.3f}"),
        ratio(cairn_median, etcd_median), f"cairn <= {FAILOVER_MEDIAN_S_MAX:g} s",
        None if cairn_median is None else cairn_median <= FAILOVER_MEDIAN_S_MAX)
    etcd_max = max(etcd.failover_s, default=None)
    cairn_max = max(cairn.failover_s, default=None)
    add("leader kill -> put s (max)", format_number(etcd_max, "{:.3f}"),
        format_number(cairn_max, "{:.3f}"), ratio(cairn_max, etcd_max),
        f"cairn <= {FAILOVER_MAX_S_MAX:g} s",
        None if cairn_max is None else cairn_max <= FAILOVER_MAX_S_MAX)
    if etcd.check_perf is not None or cairn.check_perf is not None:
        etcd_perf = (etcd.check_perf or "n/a").split(":")[0]
        cairn_perf = (cairn.check_perf or "n/a").split(":")[0]
        add("etcdctl check perf --load=l", etcd_perf, cairn_perf, None, "cairn PASS",
            None if cairn.check_perf is None else cairn_perf == "PASS")
    return "\n".join(lines), rows


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (head or "unknown") + ("-dirty" if dirty else "")


def ensure_etcd(etcd_bin: str, etcdctl_bin: str) -> None:
    if shutil.which(etcd_bin) and shutil.which(etcdctl_bin):
        return
    log("etcd not found: installing etcd-server and etcd-client from Debian")
    for command in (["apt-get", "update"],
                    ["apt-get", "install", "-y", "etcd-server", "etcd-client"]):
        subprocess.run(command, check=True, timeout=600, stdout=subprocess.DEVNULL,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cairn-bin", default=os.environ.get(
        "CAIRN_BIN", str(REPO_ROOT / "target/release/cairn")))
    parser.add_argument("--bench-bin", default=os.environ.get(
        "CAIRN_BENCH_BIN", str(REPO_ROOT / "target/release/cairn-bench")))
    parser.add_argument("--etcd-bin", default=os.environ.get("ETCD_BIN", "/usr/bin/etcd"))
    parser.add_argument("--etcdctl-bin", default=os.environ.get("ETCDCTL_BIN", "etcdctl"))
    parser.add_argument("--quick", action="store_true",
                        default=os.environ.get("BENCH", "") == "quick")
    parser.add_argument("--out-dir", default=str(REPO_ROOT / "bench-results"))
    parser.add_argument("--work-dir", default=os.environ.get("TMPDIR", str(REPO_ROOT)),
                        help="parent of the members' data dirs (same filesystem for both)")
    return parser.parse_args()


def main() -> int:
    arguments = parse_arguments()
    mode = QUICK if arguments.quick else FULL
    atexit.register(kill_all)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    ensure_etcd(arguments.etcd_bin, arguments.etcdctl_bin)
    if not os.access(arguments.bench_bin, os.X_OK):
        print(f"bench: load generator {arguments.bench_bin} is missing "
              "(cargo build --release -p cairn-server)", file=sys.stderr)
        return 2
    tools = Tools(arguments.bench_bin, arguments.etcdctl_bin)
    started = time.monotonic()
    started_at = datetime.datetime.now(datetime.timezone.utc)
    etcd = SideResult("etcd", arguments.etcd_bin)
    cairn = SideResult("cairn", arguments.cairn_bin)
    with tempfile.TemporaryDirectory(prefix="cairn-bench-", dir=arguments.work_dir) as root:
        for round_index in range(mode.rounds):
            last_round = round_index == mode.rounds - 1
            # A B in even rounds, B A in odd ones: drift within a round
            # cancels over two rounds too.
            order = [etcd, cairn] if round_index % 2 == 0 else [cairn, etcd]
            for side in order:
                if side.failures and side.failures[0].startswith("side failed"):
                    continue
                try:
                    run_side_round(side, mode, round_index, Path(root), tools,
                                   do_failover=round_index == 0,
                                   do_check_perf=mode.check_perf and last_round)
                except SideFailed as error:
                    side.failures.insert(0, f"side failed: {error}")
                    log(f"{side.side}: side failed: {error}")
    elapsed = time.monotonic() - started
    table, rows = build_table(etcd, cairn)
    commit = git_commit()
    heading = (f"cairn bench ({mode.name}) {started_at:%Y-%m-%d %H:%M:%S} UTC, commit {commit}, "
               f"{elapsed:.0f}s\netcd: {etcd.binary}  cairn: {cairn.binary}\n"
               f"3 members each on 127.0.0.1, heartbeat {HEARTBEAT_INTERVAL_MS} ms, election "
               f"timeout {ELECTION_TIMEOUT_MS} ms; {KEY_SIZE}-byte keys, {VALUE_SIZE}-byte values, "
               f"{KEY_SPACE_SIZE} keys; {mode.rounds} round(s) A/B; req/s and p99 are means "
               "over rounds; sizes as allocated on disk")
    notes = []
    for side in (etcd, cairn):
        if side.check_perf:
            notes.append(f"{side.side} check perf: {side.check_perf}")
        for failure in side.failures:
            notes.append(f"{side.side} FAILURE: {failure}")
    text = "\n".join([heading, "", table, "", *notes]).rstrip() + "\n"
    print(text)
    out_dir = Path(arguments.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"{started_at:%Y%m%dT%H%M%SZ}"
    stem.with_suffix(".txt").write_text(text)
    document = {
        "mode": mode.name, "commit": commit, "started_at": started_at.isoformat(),
        "elapsed_s": elapsed, "rows": rows,
        "sides": {side.side: side.__dict__ for side in (etcd, cairn)},
    }
    stem.with_suffix(".json").write_text(json.dumps(document, indent=1, default=str) + "\n")
    print(f"results: {stem}.txt and {stem}.json")
    side_failed = any(side.failures for side in (etcd, cairn))
    return 1 if side_failed else 0


if __name__ == "__main__":
    sys.exit(main())
