# Agent PaaS — the recipes a person and CI use. `just --list` shows them.

set dotenv-load := false
set shell := ["bash", "-euo", "pipefail", "-c"]

# Start the product on http://127.0.0.1:8080: installs, migrates, seeds and prints a demo login.
dev: services
    @scripts/ensure-tools.sh
    @scripts/dev-env.sh
    @scripts/frontend.sh --build
    @cargo build --bin agent-paas
    @set -a; source .env; set +a; \
      cargo run --quiet --bin agent-paas -- migrate --create-db; \
      cargo run --quiet --bin agent-paas -- tenant create --name demo --admin-email admin@demo.local \
        --admin-password "$PAAS_DEMO_ADMIN_PASSWORD" --if-not-exists --with-demo-agent; \
      echo; \
      echo "  Agent PaaS is starting: open http://$PAAS_LISTEN_ADDR (the dashboard)"; \
      echo "  demo tenant: demo   admin: admin@demo.local   password: $PAAS_DEMO_ADMIN_PASSWORD"; \
      echo "  API guide: docs/api.md   OpenAPI: http://$PAAS_LISTEN_ADDR/api/v1/openapi.json"; \
      echo; \
      PAAS_WEB_DIR="$PWD/frontend/dist" exec cargo run --quiet --bin agent-paas -- serve

# Everything CI runs: formatting, lints, layering and schema checks, the dashboard's checks and
# build, all Rust tests, and the browser tests.
test: services fmt-check clippy check-layering check-schema check-deploy frontend test-rust bench-smoke e2e

# The deployment files, checked statically: compose config, Helm lint and render, env vars the
# server reads, probe paths, the Dockerfile (hadolint). No Docker engine or cluster needed.
check-deploy:
    scripts/check-deploy.sh

# The whole stack (server, PostgreSQL, Redis, Jaeger, Prometheus, Grafana) where Docker runs.
compose-up:
    test -f deploy/.env || cp deploy/.env.example deploy/.env
    docker compose -f deploy/docker-compose.yml up --build

# The dashboard: API types in sync, type check, lint, unit tests, production build.
frontend:
    scripts/frontend.sh

# Browser tests of the dashboard against a real server (installs Debian's Chromium if missing).
e2e: services
    scripts/e2e.sh

# Run the browser tests and keep their screenshots as the docs' (docs/screenshots/).
screenshots: services
    E2E_SCREENSHOTS_DIR="{{justfile_directory()}}/docs/screenshots" scripts/e2e.sh

# Refresh the dashboard's API types after changing the HTTP API.
api-types:
    cargo run --quiet --bin agent-paas -- openapi > frontend/src/api/openapi.json
    cd frontend && npm run --silent gen:api

# The dashboard with hot reload on http://127.0.0.1:5173, against `just dev`'s server.
dev-frontend:
    cd frontend && npm run dev

# Benchmarks on this machine (docs/benchmarks.md): the gateway against its mock upstream, direct
# vs through the platform (release build; prints the table, writes target/bench/report.json and
# report.md), then the quota scripts' own cost (target/bench/quota.json). Takes about 20 minutes.
bench: services
    cargo build --release -p paas-api -p paas-mock-upstream -p paas-bench
    cargo run --release --quiet -p paas-bench -- --out "{{justfile_directory()}}/target/bench"
    PAAS_BENCH_DIR="{{justfile_directory()}}/target/bench" cargo bench -p paas-quota --bench admit

# The gateway benchmark's harness, a few seconds of each scenario at a low rate on the debug
# build: checks that it runs and writes a well-formed report (target/bench-smoke/), judges nothing.
bench-smoke: services
    cargo build -p paas-api -p paas-mock-upstream -p paas-bench
    cargo run --quiet -p paas-bench -- --quick --out "{{justfile_directory()}}/target/bench-smoke"

# The soak (docs/reliability.md): MINUTES (30 by default) of steady mixed chat load, API-key churn
# and a Redis blip every 5 minutes (its own redis-server, stopped for 8 s) on the release build.
# Fails on an unexpected error, a usage ledger that differs from the usage the clients were told,
# or memory that keeps growing; writes target/soak/report.json and report.md. Not in `just test`.
soak minutes="30": services
    cargo build --release -p paas-api -p paas-mock-upstream -p paas-bench
    cargo run --release --quiet -p paas-bench -- soak --minutes {{minutes}} --out "{{justfile_directory()}}/target/soak"

# Make sure PostgreSQL and Redis are up (starts local ones if needed).
services:
    scripts/ensure-services.sh

# Unit and integration tests against the real PostgreSQL and Redis.
test-rust: services
    scripts/ensure-tools.sh
    cargo test --workspace --all-targets

fmt:
    cargo fmt --all

fmt-check:
    cargo fmt --all --check

clippy:
    scripts/ensure-tools.sh
    cargo clippy --workspace --all-targets -- -D warnings

# core and models must not depend on diesel, actix, fred or reqwest.
check-layering:
    scripts/check-layering.sh

# schema.rs must match the migrations.
check-schema: services
    scripts/ensure-tools.sh --diesel
    scripts/check-schema.sh

# Regenerate schema.rs from the migrations.
schema: services
    scripts/ensure-tools.sh --diesel
    DATABASE_URL="postgres://postgres@127.0.0.1:5432/paas_schema_gen" cargo run --quiet --bin agent-paas -- migrate --create-db
    diesel print-schema --database-url postgres://postgres@127.0.0.1:5432/paas_schema_gen > crates/persistence/src/schema.rs
    psql postgres://postgres@127.0.0.1:5432/postgres -qc "DROP DATABASE paas_schema_gen WITH (FORCE)"

# Apply pending migrations to DATABASE_URL (from .env if present).
migrate:
    set -a; [ -f .env ] && source .env; set +a; cargo run --quiet --bin agent-paas -- migrate --create-db
