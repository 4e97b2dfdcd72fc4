#!/usr/bin/env bash
# Runs test suites against one server of the matrix after another (docs/servers.md):
#
#   scripts/test-matrix.sh <server>:<suite>[,<suite>...] ...
#
# servers: redis-7.0 (redis-server on PATH), redis-8.2, valkey-8.1, valkey-9.1 (installed by
# scripts/servers.sh install); suites: cargo (cargo test), single (vitest --project single:
# every spec, the Sentinel, failover and cluster-topology ones included), cluster (vitest
# --project cluster: the behaviour specs against a 3+3 cluster). Every suite runs even after
# one failed; the table of results and times is printed at the end and the exit status is 1
# if any failed. The addon must be built already (pnpm build or pnpm build:debug).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ $# -eq 0 ]; then
  echo "usage: scripts/test-matrix.sh <server>:<suite>[,<suite>...] ..." >&2
  exit 2
fi

results=()
failed=0
for arg in "$@"; do
  server=${arg%%:*}
  IFS=',' read -r -a suites <<<"${arg#*:}"
  if [ "$server" != redis-7.0 ]; then
    bin=$(scripts/servers.sh path "$server") || exit 2
    [ -x "$bin" ] || { echo "$server is not installed: scripts/servers.sh install $server" >&2; exit 2; }
  fi
  for suite in "${suites[@]}"; do
    case "$suite" in
      cargo) cmd=(cargo test --no-fail-fast) ;;
      single) cmd=(pnpm exec vitest run --project single) ;;
      cluster) cmd=(pnpm exec vitest run --project cluster) ;;
      *) echo "unknown suite $suite (cargo, single, cluster)" >&2; exit 2 ;;
    esac
    printf '\n==> %s on %s: %s\n' "$suite" "$server" "${cmd[*]}"
    start=$SECONDS
    if STREAMCAST_TEST_SERVER=$server "${cmd[@]}"; then
      result=passed
    else
      result=FAILED
      failed=1
    fi
    results+=("$(printf '%-11s %-8s %-7s %5ss' "$server" "$suite" "$result" "$((SECONDS - start))")")
  done
done

printf '\n%-11s %-8s %-7s %6s\n' server suite result time
printf '%s\n' "${results[@]}"
exit $failed
