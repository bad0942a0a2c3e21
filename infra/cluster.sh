#!/usr/bin/env bash
# A 3-node NATS JetStream cluster on this machine (loopback routes, JetStream and a store directory
# of its own on each node), PostgreSQL beside it (infra/up.sh), and N `switchyard run` processes
# with SWITCHYARD_REPLICAS=3 against all three nodes.
#
#   bash infra/cluster.sh up      (make cluster-up)     start what is not running; safe to repeat
#   bash infra/cluster.sh down    (make cluster-down)   stop the processes, the nodes and PostgreSQL
#   bash infra/cluster.sh status                        the nodes' JetStream state
#
# Settings: SWITCHYARD_CLUSTER_PORT (14300: clients on it and the next two ports, routes on +10..+12,
# monitoring on +20..+22), SWITCHYARD_PROCESSES (3; 0 starts none), SWITCHYARD_NATS_SYNC (2m, the
# server's default; `always` syncs every write before it is acknowledged), SWITCHYARD_HTTP_PORT
# (8080: process i serves HTTP on it + i - 1), SWITCHYARD_PG_PORT as for infra/up.sh.
# Data: ./var/cluster/n<i>/ (config, store, log, pid), ./var/log/switchyard-<i>.log, ./var/dfs-<i>.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VAR="$ROOT/var"
CDIR="$VAR/cluster"
BASE=${SWITCHYARD_CLUSTER_PORT:-$(cat "$CDIR/base-port" 2>/dev/null || echo 14300)}
PROCS=${SWITCHYARD_PROCESSES:-3}
SYNC=${SWITCHYARD_NATS_SYNC:-2m}
HTTP_BASE=${SWITCHYARD_HTTP_PORT:-8080}
NODES=(1 2 3)
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
reachable() { timeout 2 bash -c "</dev/tcp/$1/$2" >/dev/null 2>&1; }
client_port() { echo $((BASE + $1 - 1)); }
route_port() { echo $((BASE + 10 + $1 - 1)); }
http_port() { echo $((BASE + 20 + $1 - 1)); }
# GET on a node's monitoring port, without curl.
http_get() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf 'GET $2 HTTP/1.0\r\n\r\n' >&3 && cat <&3" 2>/dev/null || true
}
urls() {
  local out="" i
  for i in "${NODES[@]}"; do out="${out:+$out,}nats://127.0.0.1:$(client_port "$i")"; done
  echo "$out"
}

render() { # node -> config file
  local i=$1 j routes=""
  for j in "${NODES[@]}"; do
    [ "$j" = "$i" ] && continue
    routes="$routes    nats-route://127.0.0.1:$(route_port "$j")\n"
  done
  mkdir -p "$CDIR/n$i/js"
  sed -e "s|@NAME@|n$i|" -e "s|@HOST@|127.0.0.1|g" -e "s|@CLIENT_PORT@|$(client_port "$i")|" \
    -e "s|@HTTP_PORT@|$(http_port "$i")|" -e "s|@CLUSTER_PORT@|$(route_port "$i")|" \
    -e "s|@STORE_DIR@|$CDIR/n$i/js|" -e "s|@SYNC@|$SYNC|" -e "s|@CLUSTER_NAME@|switchyard|" \
    -e "s|@ROUTES@|${routes%\\n}|" "$ROOT/infra/cluster/node.conf.tmpl" > "$CDIR/n$i/nats.conf"
}

up() {
  SWITCHYARD_TOOLS_ONLY=1 bash "$ROOT/infra/up.sh"
  local nats_bin i
  nats_bin=$(cat "$VAR/nats-bin")
  mkdir -p "$CDIR" && echo "$BASE" > "$CDIR/base-port"
  for i in "${NODES[@]}"; do
    if reachable 127.0.0.1 "$(client_port "$i")"; then say "node n$i already running"; continue; fi
    render "$i"
    say "starting node n$i: clients 127.0.0.1:$(client_port "$i"), routes :$(route_port "$i"), sync_interval $SYNC"
    nohup "$nats_bin" -c "$CDIR/n$i/nats.conf" -P "$CDIR/n$i/nats.pid" -l "$CDIR/n$i/nats.log" >/dev/null 2>&1 &
  done
  # Ready when every node says JetStream is current (a meta leader is elected).
  for i in "${NODES[@]}"; do
    local ok=""
    for _ in $(seq 1 300); do
      if http_get "$(http_port "$i")" /healthz | grep -q '"ok"'; then ok=1; break; fi
      sleep 0.1
    done
    [ -n "$ok" ] || { echo "node n$i is not healthy: see $CDIR/n$i/nats.log" >&2; exit 1; }
  done
  say "NATS cluster up: $(urls)"
  NATS_URL=$(urls) bash "$ROOT/infra/up.sh"
  echo "export SWITCHYARD_REPLICAS=3" >> "$VAR/env"
  # shellcheck disable=SC1091
  source "$VAR/env"
  [ "$PROCS" -gt 0 ] || return 0
  local bin=${SWITCHYARD_BIN:-}
  if [ -z "$bin" ]; then
    say "building switchyard (release)"
    cargo build --release -q -p switchyard
    bin=$ROOT/target/release/switchyard
  fi
  mkdir -p "$VAR/log"
  : >> "$CDIR/switchyard.pids"
  for i in $(seq 1 "$PROCS"); do
    local log="$VAR/log/switchyard-$i.log"
    if [ -f "$CDIR/switchyard-$i.pid" ] && kill -0 "$(cat "$CDIR/switchyard-$i.pid")" 2>/dev/null; then
      say "switchyard-$i already running"; continue
    fi
    SWITCHYARD_INSTANCE="switchyard-$i" SWITCHYARD_REPLICAS=3 HTTP_ADDR="127.0.0.1:$((HTTP_BASE + i - 1))" \
      SWITCHYARD_DFS_DIR="$VAR/dfs-$i" nohup "$bin" run > "$log" 2>&1 &
    echo $! > "$CDIR/switchyard-$i.pid"
  done
  for i in $(seq 1 "$PROCS"); do
    local log="$VAR/log/switchyard-$i.log" pid
    pid=$(cat "$CDIR/switchyard-$i.pid")
    for _ in $(seq 1 600); do
      grep -q "switchyard ready" "$log" 2>/dev/null && break
      kill -0 "$pid" 2>/dev/null || { echo "switchyard-$i failed:" >&2; tail -20 "$log" >&2; exit 1; }
      sleep 0.2
    done
    say "switchyard-$i ready: HTTP 127.0.0.1:$((HTTP_BASE + i - 1)), log $log"
  done
  cat <<INFO

Cluster running: NATS $(urls) (R3), PostgreSQL $DATABASE_URL, $PROCS switchyard processes.
  source var/env && ./target/release/switchyard status
  bash infra/cluster.sh status          JetStream state of each node
  make cluster-down                     stop it all (data stays in ./var/cluster)
INFO
}

down() {
  local f
  for f in "$CDIR"/switchyard-*.pid; do
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null && echo "stopped $(basename "$f" .pid)"
    rm -f "$f"
  done
  for i in "${NODES[@]}"; do
    f="$CDIR/n$i/nats.pid"
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null && echo "stopped node n$i"
    rm -f "$f"
  done
  bash "$ROOT/infra/down.sh"
}

status() {
  for i in "${NODES[@]}"; do
    echo "n$i (127.0.0.1:$(client_port "$i")): $(http_get "$(http_port "$i")" /healthz | tail -1)"
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
