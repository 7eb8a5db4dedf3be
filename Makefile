# Cairn's front door.
#   make run      a one-node cluster on 127.0.0.1:2379 (data in ./default.cairn)
#   make cluster  three members on 127.0.0.1 (clients 2379/22379/32379), Ctrl-C stops all
#   make test     every test: unit, e2e with etcdctl, simulator bug hunt and scenarios
#   make sim SCENARIO=name SEED=n [BUG=name]   one simulator run, replayable
#   make scenarios                              every scenario, fixed + pinned + fresh seeds, and 2400 swarm-quick seeds
#   make check    fmt --check, clippy -D warnings, core purity
SHELL := /bin/bash
CARGO ?= cargo
SIM_TARGET_DIR ?= target-sim

.PHONY: help build release run cluster test test-unit test-sim check fmt clippy purity deps-etcd deps-chromium bench sim sim-build scenarios

help:
	@sed -n '2,8p' Makefile | sed 's/^# *//'

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

# Headless Chromium from Debian: the simulator's HTML report is tested in it.
deps-chromium:
	@if ! command -v chromium >/dev/null; then \
	  echo "installing chromium from Debian"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@chromium --version

test: test-unit test-sim

# `etcdctl check perf` judges latency, so it runs alone after the rest.
test-unit: deps-etcd
	$(CARGO) build --workspace
	$(CARGO) nextest run --workspace --no-fail-fast -E 'not test(check_perf)'
	$(CARGO) nextest run -p cairn-tests --no-fail-fast -E 'test(check_perf)'

# The simulator: the production driver under madsim (its own target dir).
SIM_ENV := RUSTFLAGS="--cfg madsim"
SIM_CARGO := $(SIM_ENV) $(CARGO)
SIM_FLAGS := --profile sim -p cairn-sim --target-dir $(SIM_TARGET_DIR)

SIM_TESTS := --test planted_bugs --test sweep --test shrink_report --test fsync_faults \
  --test operator_faults

sim-build:
	$(SIM_CARGO) build $(SIM_FLAGS) --bins $(SIM_TESTS)

# The simulator-build tests: planted bugs are caught, clean runs stay clean,
# replays are deterministic, a sweep splits into shards and merges, a failure
# shrinks and its HTML report renders (headless Chromium), the fsync and
# operator faults behave; then the CI sweep (`scenarios`).
test-sim: sim-build deps-chromium
	$(SIM_CARGO) test $(SIM_FLAGS) $(SIM_TESTS)
	$(MAKE) scenarios

sim: sim-build
	$(SIM_CARGO) run $(SIM_FLAGS) -- run --scenario scenarios/$(SCENARIO).scn --seed $(SEED) \
	  $(if $(BUG),--bug $(BUG),) --check-determinism

# The CI sweep, one run per worker process on every core: every scenario
# over the fixed seeds 1,2,3 and one fresh seed (the first seed of each also
# replayed for determinism), the pinned regression seeds (the table in
# scenarios/README.md), and SWARM_QUICK_SEEDS fresh seeds of swarm-quick.
# The budget stops starting runs before CI's time is up.
SWARM_QUICK_SEEDS ?= 2400
SCENARIOS_BUDGET_SECS ?= 600
PINNED_SEEDS := --pinned swarm=6,15,22,30,75,80,162,224,389,422,442 --pinned kill-and-wipe=42 \
  --pinned swarm-quick=176016817,355256078
SCENARIOS_FLAGS ?=

scenarios: sim-build
	$(SIM_TARGET_DIR)/sim/cairn-sim scenarios --seeds 1,2,3 --fresh 1 $(PINNED_SEEDS) \
	  --weight swarm-quick=$(SWARM_QUICK_SEEDS) --budget-secs $(SCENARIOS_BUDGET_SECS) \
	  --check-determinism $(SCENARIOS_FLAGS)

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
