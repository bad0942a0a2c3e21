#!/usr/bin/env bash
# Builds the dashboard page (services/dashboard/dist) with the machine's Node.js and npm, and
# installs what its browser tests need: npm packages (npm ci, from package-lock.json) and Debian's
# Chromium (apt-get) when missing. Safe to run any number of times; skips what is up to date.
#   build.sh            npm ci when needed, vite build when the sources are newer than dist/
#   build.sh --force    build again
set -euo pipefail
DIR=$(cd "$(dirname "$0")" && pwd)
cd "$DIR"
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
command -v node >/dev/null 2>&1 || { echo "Node.js (20 or newer) and npm are needed to build the dashboard" >&2; exit 1; }
if [ ! -x /usr/bin/chromium ] && [ -z "${SWITCHYARD_CHROMIUM:-}" ]; then
  say "installing chromium (Debian package) for the dashboard's browser tests"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci (services/dashboard)"
  npm ci --no-audit --no-fund --loglevel=error
fi
newest_src=$(find src index.html vite.config.ts package-lock.json -type f -newer dist/index.html 2>/dev/null | head -1 || true)
if [ "${1:-}" = "--force" ] || [ ! -f dist/index.html ] || [ -n "$newest_src" ]; then
  say "building the dashboard (vite build)"
  npx vite build --logLevel warn
fi
