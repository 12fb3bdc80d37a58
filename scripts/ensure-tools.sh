#!/usr/bin/env bash
# Installs what building and testing need and a fresh machine may lack: the C library diesel
# links against (libpq) and, for `just check-schema`, the diesel CLI.
set -euo pipefail

have_libpq() {
  pkg-config --exists libpq 2>/dev/null || ls /usr/lib/*/libpq.so >/dev/null 2>&1 || ls /usr/lib/libpq.so >/dev/null 2>&1
}

if ! have_libpq; then
  echo "==> installing libpq-dev (PostgreSQL client library for diesel)"
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libpq-dev pkg-config >/dev/null
  else
    echo "libpq is missing: install your distribution's PostgreSQL client development package" >&2
    exit 1
  fi
fi

if [ "${1:-}" = "--diesel" ] && ! command -v diesel >/dev/null 2>&1; then
  echo "==> installing diesel_cli (used to check schema.rs against the migrations)"
  cargo install --locked diesel_cli --no-default-features --features postgres
fi
