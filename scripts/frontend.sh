#!/usr/bin/env bash
# The dashboard's checks and build: dependencies (npm ci when the lock file changed), the API
# types in sync with the server's OpenAPI document, type check, lint, unit tests, production
# build (frontend/dist, which the server serves at /).
#   scripts/frontend.sh          everything
#   scripts/frontend.sh --build  dependencies and the production build only (for `just dev`)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../frontend"

# Node.js and npm: installed with apt-get when missing and this machine allows it. (NodeSource's
# nodejs package carries npm; Debian's does not, so npm is a second step.)
missing_node() {
  echo "Node.js 20.19 or newer with npm is needed for the dashboard and could not be installed here: install it (https://nodejs.org/en/download)" >&2
  exit 1
}
if ! command -v node >/dev/null 2>&1; then
  "$here/apt-install.sh" Node.js nodejs || missing_node
fi
if ! command -v npm >/dev/null 2>&1; then
  "$here/apt-install.sh" npm npm || missing_node
fi
node_version=$(node -p 'process.versions.node')
if [ "$(printf '%s\n' 20.19.0 "$node_version" | sort -V | head -n 1)" != 20.19.0 ]; then
  echo "Node.js $node_version is too old: the dashboard needs 20.19 or newer (https://nodejs.org/en/download)" >&2
  exit 1
fi
# Install when node_modules is missing or older than the lock file.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "==> npm ci (frontend)"
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ "${1:-}" = "--build" ]; then
  npm run --silent build
  exit 0
fi

echo "==> frontend: API types match the server's OpenAPI document"
generated=$(mktemp)
trap 'rm -f "$generated"' EXIT
(cd .. && cargo run --quiet --bin agent-paas -- openapi) > "$generated"
if ! diff -q "$generated" src/api/openapi.json >/dev/null; then
  diff -u src/api/openapi.json "$generated" | head -40 >&2 || true
  echo "frontend/src/api/openapi.json is out of date: run \`just api-types\`" >&2
  exit 1
fi
npm run --silent check:api
echo "==> frontend: type check, lint, unit tests, build"
npm run --silent typecheck
npm run --silent lint
npm run --silent test
npm run --silent build
