#!/usr/bin/env bash
# `pnpm coverage`: line coverage of src/ from `cargo test` and every vitest suite (fault suites
# included), run against an instrumented build of the addon.
#
# Prints the line coverage of each file of src/, writes an HTML report to coverage/ (git-ignored)
# and fails when the total is under COVERAGE_MIN_LINES (default 0: report only; .ci/run sets it).
#
# Needs cargo-llvm-cov (`cargo install cargo-llvm-cov --locked`) and an LLVM whose llvm-cov and
# llvm-profdata read rustc's profiles: Debian's llvm-22 (`apt-get install llvm-22`) is used
# when LLVM_COV/LLVM_PROFDATA are not set. .ci/run installs both.
#
# The instrumented build lives in target/coverage/ only: the addon is loaded from there through
# NAPI_RS_NATIVE_LIBRARY_PATH, so the streamcast.*.node that `pnpm test` loads is never replaced
# and target/debug, target/release stay as they were.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$SECONDS
step() { printf '\n==> coverage [%4ss] %s\n' "$((SECONDS - start))" "$*"; }

llvm=/usr/lib/llvm-22/bin
export LLVM_COV=${LLVM_COV:-$llvm/llvm-cov}
export LLVM_PROFDATA=${LLVM_PROFDATA:-$llvm/llvm-profdata}
for tool in "$LLVM_COV" "$LLVM_PROFDATA"; do
  [ -x "$tool" ] || { echo "coverage: $tool is missing (apt-get install llvm-22, or set LLVM_COV/LLVM_PROFDATA)" >&2; exit 1; }
done
cargo llvm-cov --version >/dev/null 2>&1 || { echo "coverage: cargo-llvm-cov is missing (cargo install cargo-llvm-cov --locked)" >&2; exit 1; }

export CARGO_TARGET_DIR="$root/target/coverage"
eval "$(cargo llvm-cov show-env --sh 2>/dev/null)"
cargo llvm-cov clean --workspace

step "cargo test (instrumented)"
cargo test

step "the addon, instrumented, as target/coverage/streamcast.node (the repository's own .node is left alone)"
# `cargo test` built the cdylib too (crate-type cdylib + rlib); build it only if it is missing.
lib="$CARGO_TARGET_DIR/debug/libstreamcast.so"
[ -f "$lib" ] || cargo build --lib
addon="$CARGO_TARGET_DIR/streamcast.node"
cp "$lib" "$addon"
# vitest.config.mts hands it to the test processes only (as NAPI_RS_NATIVE_LIBRARY_PATH, which
# every napi-rs loader reads, vitest's bundler included). Check that index.js loads it: the
# loader falls back to other candidates when the override fails.
export STREAMCAST_TEST_ADDON="$addon"
NAPI_RS_NATIVE_LIBRARY_PATH="$addon" node -e '
  const b = require("./index.js");
  const loaded = process.report.getReport().sharedObjects.filter((p) => p.endsWith(".node"));
  if (!loaded.includes(process.env.NAPI_RS_NATIVE_LIBRARY_PATH) || typeof b.StreamsClient !== "function") {
    console.error("coverage: index.js did not load the instrumented addon; it loaded: " + loaded.join(", "));
    process.exit(1);
  }'

step "vitest, every suite, against the instrumented addon"
before=$(find "$CARGO_TARGET_DIR" -maxdepth 1 -name '*.profraw' | wc -l)
pnpm exec tsc --noEmit -p __test__
pnpm exec vitest run
after=$(find "$CARGO_TARGET_DIR" -maxdepth 1 -name '*.profraw' | wc -l)
echo "profiles written by the vitest processes: $((after - before))"
if [ "$after" -le "$before" ]; then
  echo "coverage: the vitest processes wrote no profile (was the instrumented addon loaded?)" >&2
  exit 1
fi

step "line coverage of src/ (tests/ and the test support excluded)"
ignore='(^|/)(tests|\.cargo|rustc)/|/registry/'
report=$(cargo llvm-cov report --ignore-filename-regex "$ignore" 2>/dev/null)
# One row per file: name and line coverage (the 10th column of llvm-cov's table).
printf '%s\n' "$report" | awk -v root="$root/" '
  /^Filename/ { next }
  /^-+$/ { next }
  NF >= 10 { name = $1; sub(root, "", name); if (name != "TOTAL" && name !~ /^src\//) name = "src/" name
             printf "%-28s %5s of %5s lines missed  %7s\n", name, $9, $8, $10 }'
cargo llvm-cov report --ignore-filename-regex "$ignore" --html --output-dir "$root/coverage" >/dev/null 2>&1
echo "HTML report: coverage/html/index.html"

min=${COVERAGE_MIN_LINES:-0}
step "total line coverage must be at least ${min}%"
cargo llvm-cov report --ignore-filename-regex "$ignore" --summary-only --fail-under-lines "$min" >/dev/null
echo "ok (coverage took $((SECONDS - start)) s)"
