#!/usr/bin/env bash
# Stops the nats-server and PostgreSQL that infra/up.sh started under ./var (data is kept).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VAR="$ROOT/var"
if [ -f "$VAR/nats/nats.pid" ]; then
  kill "$(cat "$VAR/nats/nats.pid")" 2>/dev/null && echo "stopped nats-server"
  rm -f "$VAR/nats/nats.pid"
fi
PGDATA="$VAR/pg/data"
[ -f "$VAR/pg/datadir" ] && PGDATA=$(cat "$VAR/pg/datadir")
if [ -f "$PGDATA/postmaster.pid" ]; then
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV | head -1)
  [ -n "$PG_BIN" ] || PG_BIN=$(dirname "$(command -v pg_ctl)")
  if [ "$(id -u)" = 0 ]; then
    (cd / && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null) && echo "stopped PostgreSQL"
  else
    "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null && echo "stopped PostgreSQL"
  fi
fi
if [ -f "$VAR/switchyard.pids" ]; then
  while read -r pid; do kill "$pid" 2>/dev/null; done < "$VAR/switchyard.pids"
  rm -f "$VAR/switchyard.pids"
fi
true
