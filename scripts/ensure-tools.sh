#!/usr/bin/env bash
# Installs what building and testing need and a fresh machine may lack: the C library diesel
# links against (libpq) and, for `just check-schema`, the diesel CLI.
set -euo pipefail

have_libpq() {
  pkg-config --exists libpq 2>/dev/null || ls /usr/lib/*/libpq.so >/dev/null 2>&1 || ls /usr/lib/libpq.so >/dev/null 2>&1
}

if ! have_libpq; then
  if ! "$(dirname "$0")/apt-install.sh" "libpq (the PostgreSQL client library diesel links)" libpq-dev pkg-config; then
    echo "libpq is missing: install your distribution's PostgreSQL client development package (libpq-dev)" >&2
    exit 1
  fi
fi

if [ "${1:-}" = "--diesel" ] && ! command -v diesel >/dev/null 2>&1; then
  echo "==> installing diesel_cli (used to check schema.rs against the migrations)"
  cargo install --locked diesel_cli --no-default-features --features postgres
fi
