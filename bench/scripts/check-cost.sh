#!/bin/bash
# The server's cost of one position check (the stream-facts script of
# src/subscribe/stream_facts.rs with counts after cursors), in µs per EVAL from INFO
# commandstats, on a private redis-server with 200 entries of each size.
#
#   bash bench/scripts/check-cost.sh [REV]
#
# REV (optional): also measure the script as it was at that commit, for a before/after
# (cursors are passed the way that script takes them: with a byte budget and nearest the
# end first, or, before b8f7e97, without one and oldest first).
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
args() { # script near|far -> its arguments
  local near="200-0 195-0 190-0 180-0" far="100-0 80-0 50-0 1-0"
  if grep -q "ARGV\[2\]" "$1"; then echo "65 65536 ${!2}"
  else echo "65 $(echo "${!2}" | tr ' ' '\n' | tac | tr '\n' ' ')"; fi
}
fill() { # entries of these sizes, ids 1-0, 2-0, ...
  $cli DEL s >/dev/null
  local i=0
  for size in "$@"; do i=$((i + 1)); printf 'XADD s %s-0 data %s\n' "$i" "$(head -c "$size" /dev/zero | tr '\0' x)"; done | $cli >/dev/null
}
for size in 1000 16384 1048576; do
  fill $(for _ in $(seq 200); do echo "$size"; done)
  echo "200 entries of $size bytes:"
  measure "no cursor" "$tmp/head.lua"
  for v in head rev; do
    [ -f "$tmp/$v.lua" ] || continue
    # shellcheck disable=SC2046
    measure "$v: 4 cursors 0, 5, 10, 20 behind" "$tmp/$v.lua" $(args "$tmp/$v.lua" near)
    # shellcheck disable=SC2046
    measure "$v: 4 cursors 100, 120, 150, 199 behind" "$tmp/$v.lua" $(args "$tmp/$v.lua" far)
  done
done
fill 10 $(for _ in $(seq 198); do echo 1048576; done) 10
echo "200 entries: 10 bytes, 198 of 1 MiB, 10 bytes (the first and last small):"
for v in head rev; do
  [ -f "$tmp/$v.lua" ] || continue
  # shellcheck disable=SC2046
  measure "$v: 4 cursors 100, 120, 150, 199 behind" "$tmp/$v.lua" $(args "$tmp/$v.lua" far)
done
