#!/usr/bin/env node
// `pnpm pack-all`: writes the tarball of every package into dist/ (emptied first):
//   - the main package `streamcast` (index.js, index.d.ts, README; no binary), and
//   - one platform package per `napi.targets` entry whose binary was built, npm/<platform>/
//     with `<binaryName>.<platform>.node` copied in from the repository root, where
//     `napi build --platform [--target …]` leaves it.
// It checks first what the generated loader and the package managers rely on: every platform
// package's name is `<name>-<platform>` and its version equals the main package's, and the main
// package's optionalDependencies list exactly the packages of napi.targets at that version (what
// `napi prepublish` writes). A target that was not built is skipped with a note; the host's own
// target must have been built (run `pnpm build` first).
//
// Usage: node scripts/pack-all.mjs [--require <platform>,...]   (e.g. --require linux-arm64-gnu)
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseTriple } from "@napi-rs/cli";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const binaryName = pkg.napi?.binaryName ?? pkg.name;
const targets = (pkg.napi?.targets ?? []).map(parseTriple);

const args = process.argv.slice(2);
const requireIdx = args.indexOf("--require");
const required = new Set(requireIdx >= 0 ? (args[requireIdx + 1] ?? "").split(",").filter(Boolean) : []);
required.add(hostPlatform());

function fail(message) {
  console.error(`pack-all: ${message}`);
  process.exit(1);
}

/** The `platformArchABI` of this machine, e.g. `linux-x64-gnu` (what the loader looks for). */
function hostPlatform() {
  const { platform, arch } = process;
  if (platform === "linux") {
    const glibc = process.report?.getReport?.().header?.glibcVersionRuntime;
    return `linux-${arch}-${glibc ? "gnu" : "musl"}`;
  }
  if (platform === "win32") return `win32-${arch}-msvc`;
  return `${platform}-${arch}`;
}

// 1. The layout `napi prepublish` expects, and the versions the loader and installers compare.
const problems = [];
const expectedOptional = {};
for (const t of targets) {
  const name = `${pkg.name}-${t.platformArchABI}`;
  expectedOptional[name] = pkg.version;
  const manifestPath = join(root, "npm", t.platformArchABI, "package.json");
  if (!existsSync(manifestPath)) {
    problems.push(`${relative(root, manifestPath)} is missing (napi create-npm-dirs writes it)`);
    continue;
  }
  const m = JSON.parse(readFileSync(manifestPath, "utf8"));
  const file = `${binaryName}.${t.platformArchABI}.node`;
  if (m.name !== name) problems.push(`${relative(root, manifestPath)}: name is ${m.name}, expected ${name}`);
  if (m.version !== pkg.version) {
    problems.push(`${relative(root, manifestPath)}: version ${m.version} differs from the main package's ${pkg.version} (napi version syncs them)`);
  }
  if (m.main !== file || !(m.files ?? []).includes(file)) {
    problems.push(`${relative(root, manifestPath)}: main and files must name ${file}`);
  }
}
const actualOptional = pkg.optionalDependencies ?? {};
if (JSON.stringify(Object.entries(actualOptional).sort()) !== JSON.stringify(Object.entries(expectedOptional).sort())) {
  problems.push(
    `package.json optionalDependencies are ${JSON.stringify(actualOptional)}, expected ${JSON.stringify(expectedOptional)} ` +
      "(one entry per napi.targets platform at the package's own version, as napi prepublish writes them)",
  );
}
if (problems.length) fail(`the package layout is inconsistent:\n  - ${problems.join("\n  - ")}`);

// 2. Pack.
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist);

function pack(dir) {
  // On Windows pnpm is a .cmd script, which only a shell starts.
  const res = spawnSync("pnpm", ["pack", "--pack-destination", dist], { cwd: dir, encoding: "utf8", shell: process.platform === "win32" });
  if (res.status !== 0) fail(`pnpm pack in ${relative(root, dir) || "."} failed:\n${res.stdout}${res.stderr}`);
}

const packed = [];
const skipped = [];
for (const t of targets) {
  const file = `${binaryName}.${t.platformArchABI}.node`;
  const built = join(root, file);
  const dir = join(root, "npm", t.platformArchABI);
  if (!existsSync(built)) {
    if (required.has(t.platformArchABI)) fail(`${file} is missing: build ${t.triple} first (pnpm build, or pnpm build:all for the Linux targets)`);
    skipped.push(t.platformArchABI);
    continue;
  }
  copyFileSync(built, join(dir, file));
  pack(dir);
  packed.push(t.platformArchABI);
}
pack(root);

console.log(`pack-all: packed ${pkg.name}@${pkg.version} and ${packed.map((p) => `${pkg.name}-${p}`).join(", ")} into ${relative(root, dist)}/`);
if (skipped.length) console.log(`pack-all: not built here, so not packed: ${skipped.join(", ")}`);
for (const f of readdirSync(dist).sort()) console.log(`  ${relative(root, join(dist, f))}`);
