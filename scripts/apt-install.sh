#!/usr/bin/env bash
# Installs Debian/Ubuntu packages with apt-get when this machine lets us: as root, or as a user
# with passwordless sudo. Never prompts. When installing is impossible (no apt-get, not root and
# no passwordless sudo) it says why and exits with 2, installing nothing, so the caller can tell
# the person what to install by hand; a failed installation exits with 1.
#   scripts/apt-install.sh WHAT PACKAGE...     e.g. scripts/apt-install.sh Redis redis-server
set -euo pipefail
what=$1
shift

if ! command -v apt-get >/dev/null 2>&1; then
  echo "cannot install $what here: there is no apt-get" >&2
  exit 2
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root() { env DEBIAN_FRONTEND=noninteractive "$@"; }
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root() { sudo -n env DEBIAN_FRONTEND=noninteractive "$@"; }
else
  echo "cannot install $what here: not root and sudo needs a password" >&2
  exit 2
fi

echo "==> installing $what with apt-get: $*"
if ! as_root apt-get update -qq; then
  echo "apt-get update failed, so $what could not be installed" >&2
  exit 1
fi
if ! as_root apt-get install -y -qq "$@" >/dev/null; then
  echo "apt-get install $* failed" >&2
  exit 1
fi
