#!/usr/bin/env node
// `pnpm build:all`: release builds of the four Linux targets of napi.targets on this x86_64
// machine, each with zig as C compiler and linker (`napi build -x`, i.e. cargo-zigbuild), then
// checks every binary. macOS and Windows are built by .github/workflows/release.yml.
//
//   target                       zig target (glibc floor pinned)        file
//   x86_64-unknown-linux-gnu     x86_64-unknown-linux-gnu.2.17          streamcast.linux-x64-gnu.node
//   aarch64-unknown-linux-gnu    aarch64-unknown-linux-gnu.2.17         streamcast.linux-arm64-gnu.node
//   x86_64-unknown-linux-musl    x86_64-unknown-linux-musl              streamcast.linux-x64-musl.node
//   aarch64-unknown-linux-musl   aarch64-unknown-linux-musl             streamcast.linux-arm64-musl.node
//
// Each target compiles into target/<triple>/release. x86_64-unknown-linux-gnu shares that
// directory with `pnpm build` (napi passes the host triple too), but zig's compiler and linker
// change the fingerprints, so cargo rebuilds it (and `pnpm build` after it) in full. That build
// replaces `pnpm build`'s binary in the repository root with the one a release ships
// (GLIBC_2.17 at most instead of this machine's 2.34).
// Checks, per binary (readelf; failing any stops the script):
//   - ELF machine matches the target (x86-64 / AArch64), it is a shared object, and the release
//     profile's `strip` took (no .symtab);
//   - gnu: the highest GLIBC_x.y symbol version it needs is at most GLIBC_FLOOR;
//   - musl: no glibc symbol version at all, every DT_NEEDED is one musl or libgcc provides, no
//     initial-exec TLS; and on an x86_64 host the x64 musl binary is dlopen()ed by a musl process
//     (bench/musl-alloc/dlopen.c built with Debian's musl-gcc), as Node on Alpine would load it.
// Prints a table: target, size, highest GLIBC version, DT_NEEDED.
//
// Needs: zig (`pip install ziglang`), cargo-zigbuild (`cargo install cargo-zigbuild --locked`),
// the rustup targets (`rustup target add aarch64-unknown-linux-gnu x86_64-unknown-linux-musl
// aarch64-unknown-linux-musl`). .ci/run installs them when missing.
//
// Usage: node scripts/build-all.mjs [--only linux-arm64-gnu,...] [--check-only]
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const binaryName = pkg.napi?.binaryName ?? pkg.name;

/** The glibc the gnu builds are linked against (zig's versioned target), and so their floor. */
export const GLIBC_FLOOR = "2.17";

export const LINUX_TARGETS = [
  { triple: "x86_64-unknown-linux-gnu", platform: "linux-x64-gnu", machine: "X86-64", libc: "gnu" },
  { triple: "aarch64-unknown-linux-gnu", platform: "linux-arm64-gnu", machine: "AArch64", libc: "gnu" },
  { triple: "x86_64-unknown-linux-musl", platform: "linux-x64-musl", machine: "X86-64", libc: "musl" },
  { triple: "aarch64-unknown-linux-musl", platform: "linux-arm64-musl", machine: "AArch64", libc: "musl" },
];

// What a musl system (Alpine: musl, and libgcc, which Node.js itself needs) provides.
const MUSL_NEEDED_OK = new Set(["libc.so", "libgcc_s.so.1"]);

function sh(cmd, args, opts = {}) {
  const res = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 * 1024 * 1024, ...opts });
  if (res.error) throw new Error(`${cmd}: ${res.error.message}`);
  if (res.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (exit ${res.status}):\n${res.stdout ?? ""}${res.stderr ?? ""}`);
  return res.stdout;
}

/** A sortable number for a glibc version: "2.3.4" < "2.17" < "2.34". */
const versionKey = (v) => {
  const [major = 0, minor = 0, patch = 0] = v.split(".").map(Number);
  return (major * 1000 + minor) * 1000 + patch;
};

/** Facts about one built binary, from readelf (works for any architecture). */
export function inspect(file) {
  const header = sh("readelf", ["-h", file]);
  const machine = /Machine:\s+(.*)/.exec(header)?.[1]?.trim() ?? "?";
  const type = /Type:\s+(\S+)/.exec(header)?.[1] ?? "?";
  const dynamic = sh("readelf", ["-d", "-W", file]);
  const needed = [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
  const staticTls = /\(FLAGS\).*STATIC_TLS/.test(dynamic);
  const dynsyms = sh("readelf", ["--dyn-syms", "-W", file]);
  const glibcVersions = [...new Set([...dynsyms.matchAll(/@GLIBC_([0-9.]+)/g)].map((m) => m[1]))].sort((a, b) => versionKey(a) - versionKey(b));
  const sections = sh("readelf", ["-S", "-W", file]);
  return {
    machine,
    type,
    needed,
    staticTls,
    glibcMax: glibcVersions.at(-1) ?? null,
    glibcVersions,
    stripped: !/\s\.symtab\s/.test(sections),
    bytes: statSync(file).size,
  };
}

/** Problems with `info` for target `t`; empty when the binary is what a release should ship. */
export function problemsOf(t, info) {
  const problems = [];
  if (!info.machine.includes(t.machine)) problems.push(`ELF machine is "${info.machine}", expected ${t.machine}`);
  if (info.type !== "DYN") problems.push(`ELF type is ${info.type}, expected DYN (a shared object)`);
  if (!info.stripped) problems.push("not stripped (.symtab present): check [profile.release] strip");
  if (t.libc === "gnu" && info.glibcMax && versionKey(info.glibcMax) > versionKey(GLIBC_FLOOR)) {
    problems.push(`needs GLIBC_${info.glibcMax}, above the floor ${GLIBC_FLOOR} (was it built without the .${GLIBC_FLOOR} zig target?)`);
  }
  if (t.libc === "musl") {
    if (info.glibcVersions.length) problems.push(`references glibc symbol versions: ${info.glibcVersions.map((v) => `GLIBC_${v}`).join(", ")}`);
    const foreign = info.needed.filter((n) => !MUSL_NEEDED_OK.has(n));
    if (foreign.length) problems.push(`needs ${foreign.join(", ")}, which a musl system does not provide`);
    // mimalloc's default initial-exec TLS makes musl's dlopen refuse the library
    // ("initial-exec TLS resolves to dynamic definition"); Cargo.toml turns on local_dynamic_tls there.
    if (info.staticTls) problems.push("uses initial-exec TLS (DF_STATIC_TLS): musl's dlopen refuses such a library");
  }
  return problems;
}

function main() {
  const args = process.argv.slice(2);
  const onlyIdx = args.indexOf("--only");
  const only = onlyIdx >= 0 ? new Set(args[onlyIdx + 1].split(",")) : null;
  const checkOnly = args.includes("--check-only");
  const configured = new Set(pkg.napi?.targets ?? []);
  const targets = LINUX_TARGETS.filter((t) => configured.has(t.triple) && (!only || only.has(t.platform)));
  if (!targets.length) throw new Error(`no Linux target selected (napi.targets: ${[...configured].join(", ")})`);

  const napi = join(root, "node_modules", ".bin", "napi");
  const timings = {};
  if (!checkOnly) {
    for (const t of targets) {
      const zigTarget = t.libc === "gnu" ? `${t.triple}.${GLIBC_FLOOR}` : t.triple;
      console.log(`\nbuild-all: ${zigTarget} (napi build --platform --release -x)`);
      const started = Date.now();
      // -x: napi build runs `cargo zigbuild` (and adds -C target-feature=-crt-static for musl).
      const res = spawnSync(napi, ["build", "--platform", "--release", "-x", "--target", zigTarget], { cwd: root, stdio: "inherit" });
      if (res.status !== 0) throw new Error(`napi build --target ${zigTarget} failed (${res.error?.message ?? `exit ${res.status}`})`);
      timings[t.platform] = Math.round((Date.now() - started) / 1000);
    }
  }

  const rows = [];
  const failures = [];
  for (const t of targets) {
    const file = join(root, `${binaryName}.${t.platform}.node`);
    if (!existsSync(file)) {
      failures.push(`${t.platform}: ${file} is missing`);
      continue;
    }
    const info = inspect(file);
    for (const p of problemsOf(t, info)) failures.push(`${t.platform}: ${p}`);
    rows.push({
      target: t.triple,
      size: `${(info.bytes / 1024 / 1024).toFixed(2)} MiB (${info.bytes} B)`,
      glibc: t.libc === "gnu" ? `GLIBC_${info.glibcMax}` : info.glibcMax ? `GLIBC_${info.glibcMax}!` : "none (musl)",
      needed: info.needed.join(" "),
      build: timings[t.platform] !== undefined ? `${timings[t.platform]} s` : "-",
    });
  }
  // Load the x64 musl binary with musl's dynamic loader (runs its constructors, finds the entry).
  const x64musl = targets.find((t) => t.platform === "linux-x64-musl");
  if (x64musl && process.arch === "x64" && existsSync(join(root, `${binaryName}.linux-x64-musl.node`))) {
    const harness = join(root, "target", "musl-alloc", "dlopen");
    mkdirSync(dirname(harness), { recursive: true });
    sh("musl-gcc", ["-O2", "-o", harness, join(root, "bench", "musl-alloc", "dlopen.c")]);
    const res = spawnSync(harness, [join(root, `${binaryName}.linux-x64-musl.node`), "napi_register_module_v1"], { encoding: "utf8" });
    if (res.status !== 0) failures.push(`linux-x64-musl: musl's dlopen refuses it: ${(res.stderr || res.error?.message || "").trim()}`);
    else console.log(`build-all: musl dlopen: ${res.stdout.trim().replace(/\n/g, "; ")}`);
  }
  console.log("");
  console.table(rows);
  if (failures.length) {
    console.error(`build-all: FAILED:\n  - ${failures.join("\n  - ")}`);
    process.exit(1);
  }
  console.log(`build-all: ok: ${targets.map((t) => t.platform).join(", ")} (gnu floor GLIBC_${GLIBC_FLOOR}, musl links only musl)`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    main();
  } catch (err) {
    console.error(`build-all: ${err.message}`);
    process.exit(1);
  }
}
