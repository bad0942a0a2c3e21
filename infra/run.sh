#!/usr/bin/env bash
# Runs `switchyard run` (all services) and the simulators beside it; prints where everything is.
# Ctrl-C stops them all. Expects infra/up.sh to have written var/env.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source var/env
BIN=${SWITCHYARD_BIN:-./target/release/switchyard}
export HTTP_ADDR=${HTTP_ADDR:-127.0.0.1:8080}
export SWITCHYARD_DFS_DIR=${SWITCHYARD_DFS_DIR:-$ROOT/var/dfs}
mkdir -p var/log
# The dashboard page, built when missing (the gateway serves it at /).
bash services/dashboard/build.sh || echo "the dashboard could not be built (Node.js 20 and npm are needed); the services run without it"
"$BIN" run > var/log/switchyard.log 2>&1 &
RUN_PID=$!
echo "$RUN_PID" > var/switchyard.pids
trap 'kill $(cat var/switchyard.pids 2>/dev/null) 2>/dev/null; rm -f var/switchyard.pids; exit 0' INT TERM
for _ in $(seq 1 300); do
  grep -q "switchyard ready" var/log/switchyard.log 2>/dev/null && break
  kill -0 "$RUN_PID" 2>/dev/null || { echo "switchyard run failed:"; tail -20 var/log/switchyard.log; exit 1; }
  sleep 0.2
done
"$BIN" sim carts --speed 20 > var/log/sim-carts.log 2>&1 & echo $! >> var/switchyard.pids
"$BIN" sim pipeline > var/log/sim-pipeline.log 2>&1 & echo $! >> var/switchyard.pids
cat <<INFO

Switchyard is running.
  NATS:        $NATS_URL
  PostgreSQL:  $DATABASE_URL
  Dashboard:   http://$HTTP_ADDR/   (the browser talks NATS at ${NATS_WS_URL:-<NATS_WS_URL not set>})
  HTTP:        http://$HTTP_ADDR   (REST routes of the shop, /request-datasets, /files/{id}, /health)
  logs:        var/log/  (switchyard.log, sim-carts.log, sim-pipeline.log)

Try:
  curl -s -X POST -H 'Content-Type: application/json' -d '{"offeredPrice": 50, "itemCount": 6}' http://$HTTP_ADDR/item/jea-265/036000291459
  curl -s http://$HTTP_ADDR/items/jea-265
  curl -s -X DELETE http://$HTTP_ADDR/items/jea-265
  $BIN status
  $BIN dfs put README.md && $BIN dfs ls
  NATS_URL=$NATS_URL nats sub 'dispatch.status.cart.>'     (with the nats CLI, if installed)

NATS users (passwords in var/nats/creds/<user>.env, readable by you only; rights: README "Who may publish what"):
$(for f in var/nats/creds/*.env; do [ -f "$f" ] && printf '  %-11s %s\n' "$(basename "$f" .env)" "$f"; done)
  e.g.  set -a; . var/nats/creds/shop.env; set +a   (then any NATS client reads NATS_USER / NATS_PASSWORD)
  The dashboard is read-only until you "Sign in as operator" with the password in var/nats/creds/operator.env.

Ctrl-C stops the services; \`make down\` stops NATS and PostgreSQL.
INFO
wait "$RUN_PID"
