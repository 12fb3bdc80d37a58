#!/usr/bin/env bash
# Fails when crates/persistence/src/schema.rs differs from what diesel generates from the
# migrations (applied by agent-paas itself to a scratch database).
set -euo pipefail
cd "$(dirname "$0")/.."
db="paas_schema_check_$$"
server="${PAAS_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
url="${server%/*}/$db"
cleanup() { psql "$server" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; }
trap cleanup EXIT
DATABASE_URL="$url" cargo run --quiet --bin agent-paas -- migrate --create-db >/dev/null
generated=$(mktemp)
diesel print-schema --database-url "$url" --config-file diesel.toml > "$generated"
if ! diff -u crates/persistence/src/schema.rs "$generated"; then
  echo "schema.rs is out of date with the migrations: run \`just schema\`" >&2
  rm -f "$generated"
  exit 1
fi
rm -f "$generated"
echo "==> schema.rs matches the migrations"
