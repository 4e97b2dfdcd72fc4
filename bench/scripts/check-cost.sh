#!/bin/bash
# The server's cost of one position check (the stream-facts script of
# src/subscribe/stream_facts.rs with counts after cursors), in µs per EVAL from INFO
# commandstats, on a private redis-server with 200 entries of each size.
#
#   bash bench/scripts/check-cost.sh [REV]
#
# REV (optional): also measure the script as it was at that commit, for a before/after.
# The cursor arguments follow the script's own convention at HEAD (limit, byte budget,
# cursors nearest the end first); a REV from before b8f7e97 takes (limit, cursors oldest
# first), which this script passes to it.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
trap 'redis-cli -p $port shutdown nosave >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
extract() { python3 -c 'import re,sys; print(re.search(r"const SCRIPT: &str = r\"\n(.*?)\n\";", sys.stdin.read(), re.S).group(1))'; }
extract < src/subscribe/stream_facts.rs > "$tmp/head.lua"
[ $# -gt 0 ] && git show "$1:src/subscribe/stream_facts.rs" | extract > "$tmp/rev.lua"
redis-server --port "$port" --save '' --appendonly no --daemonize yes --logfile "$tmp/redis.log"
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
cli="redis-cli -p $port"
measure() { # label script args...
  local label=$1 script=$2; shift 2
  $cli CONFIG RESETSTAT >/dev/null
  for _ in 1 2 3 4 5; do $cli EVAL "$(cat "$script")" 1 s "$@" >/dev/null; done
  printf '  %-42s %12s µs\n' "$label" "$($cli INFO commandstats | sed -n 's/^cmdstat_eval:.*usec_per_call=\([0-9.]*\).*/\1/p')"
}
for size in 1000 16384 1048576; do
  $cli DEL s >/dev/null
  payload=$(head -c "$size" /dev/zero | tr '\0' 'x')
  for i in $(seq 1 200); do printf 'XADD s %s-0 data %s\n' "$i" "$payload"; done | $cli >/dev/null
  echo "200 entries of $size bytes:"
  measure "no cursor" "$tmp/head.lua"
  for v in head rev; do
    [ -f "$tmp/$v.lua" ] || continue
    if [ $v = head ]; then near="65 65536 200-0 195-0 190-0 180-0"; far="65 65536 100-0 80-0 50-0 1-0"
    else near="65 180-0 190-0 195-0 200-0"; far="65 1-0 50-0 80-0 100-0"; fi
    measure "$v: 4 cursors 0, 5, 10, 20 behind" "$tmp/$v.lua" $near
    measure "$v: 4 cursors 100, 120, 150, 199 behind" "$tmp/$v.lua" $far
  done
done
