# tailbox — the two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: demo test lint deps fmt torture bench

## Throwaway PostgreSQL + Kafka, tailbox running, events arriving in Kafka; cleans up.
## SINK=redis: Redis Streams instead of Kafka. SINK=webhook: signed HTTP POSTs to a small
## receiver (scripts/webhook-receiver.py) that prints each event.
demo: deps
	SINK=$${SINK:-kafka} bash scripts/demo.sh

## The whole suite: unit, property and end-to-end tests against real servers.
test: deps
	cargo test --workspace --all-targets
	bash scripts/validate-deploy.sh

## The long torture test: 40 fault cycles under load (TAILBOX_TORTURE_CYCLES=N to change;
## TAILBOX_TORTURE_SEED=S replays a run's fault sequence). See docs/torture.md.
torture: deps
	TAILBOX_TORTURE_CYCLES=$${TAILBOX_TORTURE_CYCLES:-40} cargo test -p tailbox-e2e --test torture -- --nocapture

## Throughput, cost and latency on throwaway PostgreSQL + Kafka, release build: reports in
## target/bench/ (about 6 min; BENCH_QUICK=1 for a 3-minute version). BENCH_* variables
## or BENCH_ARGS="--rows N ..." change the settings; see docs/benchmarks.md.
bench: deps
	TAILBOX_TEST_RELEASE=1 cargo run --release -p tailbox-e2e --bin tailbox-bench -- $(BENCH_ARGS)

## Formatting and lints, as CI checks them.
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## Install what is missing (PostgreSQL 15, build tools, Java, Maven, Node.js), fetch Kafka's
## jars and the other PostgreSQL majors' servers (13, 14, 16, 17, 18; docs/postgres-versions.md).
deps:
	@if [ "$$(id -u)" = 0 ]; then bash scripts/install-deps.sh; else bash scripts/install-deps.sh --check; fi
	@bash scripts/kafka.sh fetch >/dev/null
	@bash scripts/pg.sh fetch >/dev/null
	@bash scripts/standardwebhooks.sh fetch >/dev/null

fmt:
	cargo fmt --all
