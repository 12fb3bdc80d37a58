#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) answer, starting the local
# ones if they are installed but stopped. Safe to run when both are already up.
set -euo pipefail

pg_up() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -h 127.0.0.1 -p 5432 -q
  else
    (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null
  fi
}

redis_up() {
  if command -v redis-cli >/dev/null 2>&1; then
    [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]
  else
    (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null
  fi
}

wait_for() {
  local name=$1 check=$2
  for _ in $(seq 1 60); do
    if $check; then return 0; fi
    sleep 0.5
  done
  echo "$name did not come up on 127.0.0.1" >&2
  return 1
}

if ! pg_up; then
  echo "==> starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  elif command -v systemctl >/dev/null 2>&1; then
    systemctl start postgresql || true
  else
    echo "PostgreSQL is not running and cannot be started here; install it or point DATABASE_URL at one" >&2
    exit 1
  fi
  wait_for PostgreSQL pg_up
fi

if ! redis_up; then
  echo "==> starting Redis"
  if command -v redis-server >/dev/null 2>&1; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  else
    echo "Redis is not running and redis-server is not installed; install it or point REDIS_URL at one" >&2
    exit 1
  fi
  wait_for Redis redis_up
fi
echo "==> PostgreSQL and Redis are up"
