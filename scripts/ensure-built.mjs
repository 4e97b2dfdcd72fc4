#!/usr/bin/env node
// Builds the native addon only when it is missing or older than its sources, so that
// `pnpm test`, `pnpm demo` and `pnpm bench` work on a fresh clone and cost nothing after
// `pnpm build` (CI builds once, then runs all three).
//
// Usage: node scripts/ensure-built.mjs   (prints one line about what it did)
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const binaryName = pkg.napi?.binaryName ?? pkg.name;

/** The platform suffix `napi build --platform` gives the file, e.g. `linux-x64-gnu`. */
function platformSuffix() {
  const { platform, arch } = process;
  if (platform !== "linux") return `${platform}-${arch}`;
  const glibc = process.report?.getReport?.().header?.glibcVersionRuntime;
  return `${platform}-${arch}-${glibc ? "gnu" : "musl"}`;
}

/** Newest file under `path` (a file or a directory), as `{ file, mtimeMs }`, or null. */
function newest(path) {
  if (!existsSync(path)) return null;
  const st = statSync(path);
  if (!st.isDirectory()) return { file: path, mtimeMs: st.mtimeMs };
  let best = null;
  for (const entry of readdirSync(path)) {
    const found = newest(join(path, entry));
    if (found && (!best || found.mtimeMs > best.mtimeMs)) best = found;
  }
  return best;
}

const addon = join(root, `${binaryName}.${platformSuffix()}.node`);
const sources = ["src", "Cargo.toml", "Cargo.lock", "build.rs"].map((p) => join(root, p));

let reason = null;
if (!existsSync(addon)) {
  reason = `${relative(root, addon)} is missing`;
} else if (!existsSync(join(root, "index.js"))) {
  reason = "index.js is missing";
} else {
  const built = statSync(addon).mtimeMs;
  const changed = sources.map(newest).find((n) => n && n.mtimeMs > built);
  if (changed) reason = `${relative(root, changed.file)} is newer than ${relative(root, addon)}`;
}

if (!reason) {
  console.log(`ensure-built: ${relative(root, addon)} is up to date, nothing to do`);
  process.exit(0);
}

// Same command as `pnpm build`, run directly so that this works without pnpm on PATH.
const napi = join(root, "node_modules", ".bin", "napi");
if (!existsSync(napi)) {
  console.error(`ensure-built: ${reason}, but ${relative(root, napi)} is missing: run \`pnpm install\` first`);
  process.exit(1);
}
console.log(`ensure-built: ${reason}; building: napi build --platform --release`);
const res = spawnSync(napi, ["build", "--platform", "--release"], { cwd: root, stdio: "inherit" });
if (res.error || res.status !== 0) {
  console.error(`ensure-built: the build failed (${res.error?.message ?? `exit ${res.status ?? res.signal}`})`);
  process.exit(1);
}
