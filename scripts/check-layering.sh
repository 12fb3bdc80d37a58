#!/usr/bin/env bash
# The inner crates stay free of I/O frameworks: core and models must not depend (even
# transitively) on diesel, actix, fred or reqwest.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for crate in paas-core paas-models; do
  found=$(cargo tree -p "$crate" -e normal,build --prefix none 2>/dev/null \
    | grep -E '^(diesel|diesel_migrations|deadpool-diesel|actix-web|actix-http|fred|reqwest) ' | sort -u || true)
  if [ -n "$found" ]; then
    echo "$crate must not depend on:" >&2
    echo "$found" >&2
    status=1
  fi
done
[ $status -eq 0 ] && echo "==> core and models are free of diesel, actix, fred and reqwest"
exit $status
