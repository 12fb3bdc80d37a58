#!/usr/bin/env bash
# Writes a development .env with fresh random secrets if there is none yet, so that sessions
# survive restarts of `just dev`. Never overwrites an existing .env.
set -euo pipefail
cd "$(dirname "$0")/.."
rand() { head -c 32 /dev/urandom | base64 | tr -d '\n'; }
password=$(head -c 18 /dev/urandom | base64 | tr -d '\n/+=' | cut -c1-20)
if [ -f .env ]; then
  # An older .env may lack the demo password: add one, change nothing else.
  if ! grep -q '^PAAS_DEMO_ADMIN_PASSWORD=' .env; then
    printf '# The demo tenant admin password (tenant "demo", admin@demo.local).\nPAAS_DEMO_ADMIN_PASSWORD=%s\n' "$password" >> .env
  fi
  # ...and the operator token (the operator API, /api/v1/admin/...).
  if ! grep -q '^PAAS_OPERATOR_TOKEN=' .env; then
    printf '# Bearer token of the operator API (/api/v1/admin/tenants).\nPAAS_OPERATOR_TOKEN=%s\n' "$(rand)" >> .env
  fi
  exit 0
fi
cat > .env <<ENV
# Development settings written by \`just dev\` (scripts/dev-env.sh). Not for production.
PAAS_ENV=development
DATABASE_URL=postgres://postgres@127.0.0.1:5432/agent_paas
REDIS_URL=redis://127.0.0.1:6379
PAAS_LISTEN_ADDR=127.0.0.1:8080
PAAS_JWT_SECRET=$(rand)
PAAS_MASTER_KEY=$(rand)
# The demo tenant's admin password (tenant "demo", admin@demo.local).
PAAS_DEMO_ADMIN_PASSWORD=$password
# Bearer token of the operator API (/api/v1/admin/tenants).
PAAS_OPERATOR_TOKEN=$(rand)
ENV
echo "==> wrote .env with fresh development secrets"
