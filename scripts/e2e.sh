#!/usr/bin/env bash
# End-to-end tests of the dashboard: a real server (this checkout's debug build, serving
# frontend/dist) on a free port with a database of its own, driven by Debian's Chromium
# through playwright-core (frontend/e2e/run.mjs). Installs Chromium when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  echo "==> installing Chromium (Debian package) for the browser tests"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
export CHROMIUM="${CHROMIUM:-$(command -v chromium)}"

[ -f frontend/dist/index.html ] || scripts/frontend.sh --build
cargo build --quiet --bin agent-paas
bin="${CARGO_TARGET_DIR:-target}/debug/agent-paas"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
db="paas_e2e_$$"
server="${PAAS_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export DATABASE_URL="${server%/*}/$db"
export PAAS_LISTEN_ADDR="127.0.0.1:$port" PAAS_REDIS_PREFIX="e2e:$$:" PAAS_BCRYPT_COST=4 \
  PAAS_MOCK_CHUNK_DELAY_MS=20 RUST_LOG=warn PAAS_WEB_DIR="$PWD/frontend/dist"
log=$(mktemp)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  psql "$server" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -f "$log"
}
trap cleanup EXIT

"$bin" migrate --create-db >/dev/null
"$bin" serve --no-migrate >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  if ! kill -0 "$pid" 2>/dev/null; then cat "$log" >&2; exit 1; fi
  sleep 0.2
done
echo "==> end-to-end tests against http://127.0.0.1:$port"
if ! (cd frontend && E2E_BASE_URL="http://127.0.0.1:$port" npm run --silent e2e); then
  echo "---- server log ----" >&2
  tail -50 "$log" >&2
  exit 1
fi
