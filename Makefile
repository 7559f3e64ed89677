# tailbox — the two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: demo test lint deps fmt

## Throwaway PostgreSQL + Kafka, tailbox running, events arriving in Kafka; cleans up.
demo: deps
	bash scripts/demo.sh

## The whole suite: unit, property and end-to-end tests against real servers.
test: deps
	cargo test --workspace --all-targets

## Formatting and lints, as CI checks them.
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## Install what is missing (PostgreSQL 15, build tools, Java, Maven) and fetch Kafka's jars.
deps:
	@if [ "$$(id -u)" = 0 ]; then bash scripts/install-deps.sh; else bash scripts/install-deps.sh --check; fi
	@bash scripts/kafka.sh fetch >/dev/null

fmt:
	cargo fmt --all
