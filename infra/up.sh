#!/usr/bin/env bash
# Brings up what Switchyard needs and writes ./var/env with NATS_URL and DATABASE_URL.
#
# - Installs nats-server and PostgreSQL from Debian's packages when they are missing.
# - NATS: uses $NATS_URL when it is given and reachable; otherwise runs nats-server with JetStream
#   under ./var/nats on 127.0.0.1:${SWITCHYARD_NATS_PORT:-14222} (reused if already running).
# - PostgreSQL: uses $DATABASE_URL when it is given and reachable; otherwise runs a cluster under
#   ./var/pg on 127.0.0.1:${SWITCHYARD_PG_PORT:-15432}, loopback only, trust auth (reused if running).
# Safe to run any number of times. `infra/down.sh` stops what this started.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VAR="$ROOT/var"
mkdir -p "$VAR"
NATS_PORT=${SWITCHYARD_NATS_PORT:-14222}
PG_PORT=${SWITCHYARD_PG_PORT:-15432}
NATS_WS_PORT=${SWITCHYARD_NATS_WS_PORT:-$((NATS_PORT + 1))}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq || true; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}
reachable() { timeout 2 bash -c "</dev/tcp/$1/$2" >/dev/null 2>&1; }
# host and port of a URL like scheme://[user@]host:port/...
url_host() { local u=${1#*://}; u=${u#*@}; u=${u%%/*}; echo "${u%%:*}"; }
url_port() { local u=${1#*://}; u=${u#*@}; u=${u%%/*}; case "$u" in *:*) echo "${u##*:}" ;; *) echo "$2" ;; esac; }

find_nats() { command -v nats-server 2>/dev/null || { [ -x /usr/sbin/nats-server ] && echo /usr/sbin/nats-server; } || true; }
find_pg_bin() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    [ -x "$d/initdb" ] && { echo "$d"; return; }
  done
  command -v initdb >/dev/null 2>&1 && dirname "$(command -v initdb)"
  true
}

# --- tools ----------------------------------------------------------------------------------------
if [ -z "$(find_nats)" ]; then say "installing nats-server (Debian package)"; apt_install nats-server; fi
if [ -z "$(find_pg_bin)" ]; then say "installing PostgreSQL (Debian package)"; apt_install postgresql postgresql-client; fi
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi
command -v cargo >/dev/null 2>&1 || { echo "cargo (Rust 1.94 or newer) is needed: install it with rustup" >&2; exit 1; }
NATS_BIN=$(find_nats)
PG_BIN=$(find_pg_bin)

# --- NATS -----------------------------------------------------------------------------------------
if [ -n "${NATS_URL:-}" ] && reachable "$(url_host "$NATS_URL")" "$(url_port "$NATS_URL" 4222)"; then
  say "using NATS at $NATS_URL"
else
  [ -n "${NATS_URL:-}" ] && say "NATS_URL=$NATS_URL is not reachable; starting a local one"
  NATS_URL="nats://127.0.0.1:$NATS_PORT"
  NATS_WS_URL="ws://127.0.0.1:$NATS_WS_PORT"
  mkdir -p "$VAR/nats/js"
  if ! reachable 127.0.0.1 "$NATS_PORT"; then
    cat > "$VAR/nats/nats.conf" <<CONF
listen: 127.0.0.1:$NATS_PORT
http: 127.0.0.1:$((NATS_PORT + 4000))
# For the dashboard (a browser talks NATS itself): loopback only, so no TLS.
websocket { listen: 127.0.0.1:$NATS_WS_PORT, no_tls: true }
max_payload: 8MB
# Room for a chunk server with 16 fanned-out 4 MiB chunks on their way (the default is 64MB).
max_pending: 256MB
jetstream {
  store_dir: "$VAR/nats/js"
  max_memory_store: 1GB
  max_file_store: 64GB
}
CONF
    say "starting nats-server (JetStream) on 127.0.0.1:$NATS_PORT, store $VAR/nats"
    nohup "$NATS_BIN" -c "$VAR/nats/nats.conf" -P "$VAR/nats/nats.pid" -l "$VAR/nats/nats.log" >/dev/null 2>&1 &
    for _ in $(seq 1 100); do reachable 127.0.0.1 "$NATS_PORT" && break; sleep 0.1; done
    reachable 127.0.0.1 "$NATS_PORT" || { echo "nats-server did not start: see $VAR/nats/nats.log" >&2; exit 1; }
  else
    say "NATS already running on 127.0.0.1:$NATS_PORT"
  fi
fi

# --- PostgreSQL -----------------------------------------------------------------------------------
pg_ok() { "$PG_BIN/pg_isready" -q -d "$1" >/dev/null 2>&1; }
if [ -n "${DATABASE_URL:-}" ] && pg_ok "$DATABASE_URL"; then
  say "using PostgreSQL at $DATABASE_URL"
else
  [ -n "${DATABASE_URL:-}" ] && say "DATABASE_URL=$DATABASE_URL is not reachable; starting a local one"
  DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/switchyard"
  PGDATA="$VAR/pg/data"
  # PostgreSQL refuses to run as root: run it as the `postgres` user (made by the Debian package).
  as_pg() { "$@"; }
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    as_pg() { (cd / && runuser -u postgres -- "$@"); }
  fi
  mkdir -p "$VAR/pg"
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$VAR/pg"
    # The postgres user must be able to reach ./var/pg; under a private home it cannot, so the
    # cluster then lives in /var/tmp (its path is recorded in ./var/pg/datadir for infra/down.sh).
    if ! runuser -u postgres -- test -w "$VAR/pg"; then
      PGDATA="/var/tmp/switchyard-pg-$(printf '%s' "$ROOT" | md5sum | cut -c1-8)"
      mkdir -p "$PGDATA" && chown postgres "$PGDATA" && chmod 700 "$PGDATA"
      say "postgres cannot reach $VAR/pg; using $PGDATA"
    fi
  fi
  echo "$PGDATA" > "$VAR/pg/datadir"
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    say "creating a PostgreSQL cluster in $PGDATA"
    as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
  fi
  if ! "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
    say "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/postgres.log" -w -t 60 \
      -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k /tmp -c max_connections=400 -c fsync=on" start >/dev/null
  else
    say "PostgreSQL already running on 127.0.0.1:$PG_PORT"
  fi
  "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'switchyard'" postgres | grep -q 1 ||
    "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE switchyard" postgres
fi

cat > "$VAR/env" <<ENV
export NATS_URL="$NATS_URL"
export NATS_WS_URL="${NATS_WS_URL:-}"
export DATABASE_URL="$DATABASE_URL"
export PATH="\$HOME/.cargo/bin:\$PATH"
ENV
say "NATS_URL=$NATS_URL"
say "DATABASE_URL=$DATABASE_URL"
