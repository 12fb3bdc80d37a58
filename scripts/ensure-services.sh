#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) answer: installs them with
# apt-get when they are missing and this machine allows it (root or passwordless sudo), and
# starts the local ones if they are installed but stopped. Safe to run when both are already up.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

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

# Runs a command as root when we are root or may sudo without a password, else as ourselves.
privileged() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    "$@"
  fi
}

pg_installed() {
  compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || command -v postgres >/dev/null 2>&1
}

# The newest Debian-style cluster version under /etc/postgresql, if any.
pg_version() {
  [ -d /etc/postgresql ] && find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V | tail -n 1
}

# A cluster this script has just installed lets local TCP connections in without a password,
# as the development DATABASE_URL (postgres://postgres@127.0.0.1:5432/...) expects. Only ever
# done to a fresh installation, never to an existing one.
trust_loopback() {
  local version hba
  version=$(pg_version) || return 0
  hba=/etc/postgresql/$version/main/pg_hba.conf
  [ -f "$hba" ] || return 0
  echo "==> PostgreSQL $version was just installed: letting 127.0.0.1 and ::1 connect without a password (development only)"
  privileged sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  if pg_up; then
    privileged pg_ctlcluster --skip-systemctl-redirect "$version" main reload >/dev/null 2>&1 \
      || privileged systemctl reload postgresql >/dev/null 2>&1 || true
  fi
}

if ! pg_up; then
  if ! pg_installed; then
    if ! "$here/apt-install.sh" PostgreSQL postgresql; then
      echo "PostgreSQL is not running and not installed, and could not be installed here: install PostgreSQL 15+ or point DATABASE_URL at one" >&2
      exit 1
    fi
    trust_loopback
  fi
  # The package may have started it already.
  if ! pg_up; then
    echo "==> starting PostgreSQL"
    if command -v pg_ctlcluster >/dev/null 2>&1 && version=$(pg_version) && [ -n "$version" ]; then
      privileged pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    elif command -v systemctl >/dev/null 2>&1; then
      privileged systemctl start postgresql || true
    else
      echo "PostgreSQL is not running and cannot be started here; start it or point DATABASE_URL at one" >&2
      exit 1
    fi
  fi
  wait_for PostgreSQL pg_up
fi

if ! redis_up; then
  if ! command -v redis-server >/dev/null 2>&1; then
    if ! "$here/apt-install.sh" Redis redis-server; then
      echo "Redis is not running and redis-server is not installed, and could not be installed here: install Redis 7 or point REDIS_URL at one" >&2
      exit 1
    fi
  fi
  # The package may have started it already (or be starting it: then this start fails and the
  # wait below sees the packaged one).
  if ! redis_up; then
    echo "==> starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null || true
  fi
  wait_for Redis redis_up
fi
echo "==> PostgreSQL and Redis are up"
