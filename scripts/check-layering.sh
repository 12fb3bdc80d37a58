#!/usr/bin/env bash
# The inner crates stay free of I/O frameworks: core and models must not depend (even
# transitively) on diesel, actix, fred or reqwest.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for crate in paas-core paas-models; do
  # The tree first, on its own: if cargo tree fails there is nothing to check, and that is a
  # failure, not a pass.
  if ! tree=$(cargo tree -p "$crate" -e normal,build --prefix none 2>&1); then
    echo "cargo tree -p $crate failed, so its dependencies cannot be checked:" >&2
    echo "$tree" >&2
    exit 1
  fi
  if [ -z "$tree" ]; then
    echo "cargo tree -p $crate printed nothing, so its dependencies cannot be checked" >&2
    exit 1
  fi
  # grep finding nothing (status 1) is the good case; only status 2 and above is an error.
  found=$(printf '%s\n' "$tree" \
    | grep -E '^(diesel|diesel_migrations|deadpool-diesel|actix-web|actix-http|fred|reqwest) ' \
    | sort -u) || [ $? -eq 1 ]
  if [ -n "$found" ]; then
    echo "$crate must not depend on:" >&2
    echo "$found" >&2
    status=1
  fi
done
[ $status -eq 0 ] && echo "==> core and models are free of diesel, actix, fred and reqwest"
exit $status
