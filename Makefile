# Switchyard. `make run` and `make test` do all the set-up (see infra/up.sh).
SHELL := /bin/bash
ENV := source var/env &&

.PHONY: run test bench bench-peers up down fmt lint build cluster-up cluster-down fuzz dashboard bench-dashboard

up:
	@bash infra/up.sh

build: up
	@$(ENV) cargo build --release -p switchyard

## Install what is missing, start NATS and PostgreSQL (or use NATS_URL / DATABASE_URL), build, run
## every service plus the cart and pipeline simulators, and print where everything is.
## `CLUSTER=3 make run`: the same on a 3-node JetStream cluster (R3) with SWITCHYARD_PROCESSES
## (default 3) processes, as `make cluster-up` (stop it with `make cluster-down`).
CLUSTER ?= 1
run: build
	@case "$(CLUSTER)" in \
	  1) bash infra/run.sh ;; \
	  3) bash infra/cluster.sh up ;; \
	  *) echo "CLUSTER=$(CLUSTER): 1 (one nats-server) or 3 (a 3-node cluster)" >&2; exit 2 ;; \
	esac

## The dashboard page (services/dashboard/dist): npm ci + vite build, Chromium for its tests.
dashboard:
	@bash services/dashboard/build.sh

## The same set-up, then the whole test suite (the dashboard's Vitest unit tests first).
## The fault tests run the real `switchyard` binary: it is built first (the harness rebuilds it if stale).
test: up dashboard
	@cd services/dashboard && npx vitest run
	@$(ENV) cargo build -q -p switchyard --bin switchyard
	@$(ENV) if cargo nextest --version >/dev/null 2>&1; then \
		cargo nextest run --workspace --exclude peers-bench --no-fail-fast; \
	else \
		cargo test --workspace --exclude peers-bench --no-fail-fast; \
	fi

## Benchmarks (a program, not tests): prints Markdown tables; the peers comparison (tests/peers) last.
## The scaleout section runs real `switchyard run` processes: the release binary is built first.
bench: up
	@$(ENV) cargo build --release -p switchyard && cargo run --release -p e2e --bin bench
	@$(ENV) cargo run --release -p peers-bench --bin peers

## A 3-node NATS cluster (loopback, JetStream R3) beside PostgreSQL, with SWITCHYARD_PROCESSES
## (default 3) `switchyard run` processes against it; see infra/cluster.sh and the README.
cluster-up:
	@bash infra/cluster.sh up

cluster-down:
	@bash infra/cluster.sh down

## Browser benchmark of the dashboard (a program): 1,000 carts x 5 positions/s + 50 pipelines.
bench-dashboard: up dashboard
	@$(ENV) cargo run --release -p e2e --bin dashboard-bench

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

## Fuzz every client-reachable decoder for FUZZ_SECONDS each (cargo-fuzz / libFuzzer on the stable
## toolchain through RUSTC_BOOTSTRAP=1; `cargo install cargo-fuzz` once). Figures: var/fuzz/<target>.log.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := codec dfs_frame subject_token engine_args cluster_delta http_range
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz
	@mkdir -p var/fuzz
	@cd fuzz && for t in $(FUZZ_TARGETS); do \
		echo "== $$t ($(FUZZ_SECONDS) s)"; \
		RUSTC_BOOTSTRAP=1 cargo fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 2>&1 | tee ../var/fuzz/$$t.log | grep -E "^#[0-9]+.*DONE|^Done|crash|panicked" ; \
	done
