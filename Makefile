# Switchyard. `make run` and `make test` do all the set-up (see infra/up.sh).
SHELL := /bin/bash
ENV := source var/env &&

.PHONY: run test bench bench-peers up down fmt lint build

up:
	@bash infra/up.sh

build: up
	@$(ENV) cargo build --release -p switchyard

## Install what is missing, start NATS and PostgreSQL (or use NATS_URL / DATABASE_URL), build, run
## every service plus the cart and pipeline simulators, and print where everything is.
run: build
	@bash infra/run.sh

## The same set-up, then the whole test suite.
test: up
	@$(ENV) if cargo nextest --version >/dev/null 2>&1; then \
		cargo nextest run --workspace --no-fail-fast; \
	else \
		cargo test --workspace --no-fail-fast; \
	fi

## Benchmarks (a program, not tests): prints Markdown tables.
bench: up
	@$(ENV) cargo run --release -p e2e --bin bench
	@$(ENV) cargo run --release -p peers-bench --bin peers

## The shop cart on Switchyard, cqrs-es and disintegrate side by side (tests/peers);
## PEERS_BENCH_QUICK=1 for a run of a few minutes.
bench-peers: up
	@$(ENV) cargo run --release -p peers-bench --bin peers

down:
	@bash infra/down.sh

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
