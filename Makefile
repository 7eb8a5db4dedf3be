# Cairn's front door. `make run` starts a one-node cluster; `make test` runs
# every test; `make check` is the lint gate.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: help build test check fmt clippy purity

help:
	@echo "make test     - run all tests (installs what they need)"
	@echo "make check    - fmt --check, clippy -D warnings, core purity"

build:
	$(CARGO) build --workspace

test:
	$(CARGO) nextest run --workspace --no-fail-fast

check: fmt clippy purity

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

purity:
	.ci/check-core-purity
