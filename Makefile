# Cairn's front door.
#   make run      a one-node cluster on 127.0.0.1:2379 (data in ./default.cairn)
#   make cluster  three members on 127.0.0.1 (clients 2379/22379/32379), Ctrl-C stops all
#   make test     every test (installs etcdctl from Debian if missing)
#   make check    fmt --check, clippy -D warnings, core purity
SHELL := /bin/bash
CARGO ?= cargo
SIM_TARGET_DIR ?= target-sim

.PHONY: help build release run cluster test check fmt clippy purity deps-etcd bench

help:
	@sed -n '2,6p' Makefile | sed 's/^# *//'

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release -p cairn-server --bins

run: release
	./target/release/cairn

cluster: release
	python3 tests/cluster.py ./target/release/cairn

# etcdctl (the compatibility oracle) and etcd (the benchmark peer) from Debian.
deps-etcd:
	@if ! command -v etcdctl >/dev/null || ! command -v etcd >/dev/null; then \
	  echo "installing etcd-server and etcd-client from Debian"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null; \
	fi
	@etcdctl version | head -1

# `etcdctl check perf` judges latency, so it runs alone after the rest.
test: deps-etcd
	$(CARGO) build --workspace
	$(CARGO) nextest run --workspace --no-fail-fast -E 'not test(check_perf)'
	$(CARGO) nextest run -p cairn-tests --no-fail-fast -E 'test(check_perf)'

check: fmt clippy purity

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

purity:
	.ci/check-core-purity

# Cairn vs the real etcd on this machine; BENCH=quick for a run under 3 minutes.
bench: deps-etcd release
	CAIRN_BIN=target/release/cairn CAIRN_BENCH_BIN=target/release/cairn-bench \
	  python3 tests/bench.py $(if $(filter quick,$(BENCH)),--quick,)
