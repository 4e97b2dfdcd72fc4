#!/usr/bin/env node
// `pnpm test:pack` (after `pnpm pack-all`): installs the tarballs in dist/ the way a user would
// and runs the smoke in scripts/smoke/ against a real Redis, once per package manager:
//   - a fresh project under the OS temp dir (outside the repository, so nothing resolves into it),
//   - `pnpm add` / `npm install` of the main tarball and the host's platform tarball,
//   - `node esm.mjs` (import) and `node cjs.cjs` (require): publish, subscribe and a consumer
//     group, loading the addon from the installed platform package (checked),
//   - with pnpm also `tsc --noEmit` of a small strict TypeScript consumer.
// It checks the tarballs' file lists first (nothing but the loader, the types, the binary).
// Redis: REDIS_URL if set, else a private redis-server on a free port (stopped at the end).
// KEEP_SCRATCH=1 keeps the scratch folder for inspection.
// Another platform's package (scripts/test-arm64.mjs): TEST_PACK_PLATFORM=linux-arm64-gnu and
// TEST_PACK_NODE='["qemu-aarch64-static","-L","/usr/aarch64-linux-gnu","…/bin/node"]' install it
// with pnpm's supportedArchitectures and run the smoke with that Node (no TypeScript step).
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { command, privateOrGivenRedis, redact } from "./redis-for-demo.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const binaryName = pkg.napi?.binaryName ?? pkg.name;
const RUN_TIMEOUT_MS = 90_000;

const step = (msg) => console.log(`\ntest-pack: ${msg}`);
function fail(message) {
  throw new Error(`test-pack: ${message}`);
}

/** The `platformArchABI` of this machine, e.g. `linux-x64-gnu`. */
function hostPlatform() {
  const { platform, arch } = process;
  if (platform === "linux") {
    const glibc = process.report?.getReport?.().header?.glibcVersionRuntime;
    return `linux-${arch}-${glibc ? "gnu" : "musl"}`;
  }
  if (platform === "win32") return `win32-${arch}-msvc`;
  return `${platform}-${arch}`;
}

/** The environment of a child that plays a user: no hints from this repository's scripts. */
function userEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(npm_|PNPM_|NODE_PATH$|NODE_OPTIONS$|NAPI_RS_|INIT_CWD$)/i.test(k)) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

/** Runs a command to completion (inherits output); throws on a non-zero exit or after the timeout. */
function run(cmd, args, { cwd, env = userEnv(), timeoutMs = RUN_TIMEOUT_MS } = {}) {
  console.log(`$ (cd ${cwd}) ${cmd} ${args.join(" ")}`);
  return new Promise((resolve, reject) => {
    // On Windows pnpm and npm are .cmd scripts, which only a shell starts.
    const shell = process.platform === "win32" && (cmd === "pnpm" || cmd === "npm");
    const child = spawn(cmd, args, { cwd, env, shell, stdio: ["ignore", "inherit", "inherit"] });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${cmd} ${args.join(" ")} did not finish within ${timeoutMs} ms (a process that does not exit after disconnect() fails here too)`));
    }, timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(" ")} failed (${signal ?? `exit ${code}`})`));
    });
  });
}

/** The file list of a tarball, without the `package/` prefix, sorted. */
function tarList(file) {
  const res = spawnSync("tar", ["-tzf", file], { encoding: "utf8" });
  if (res.status !== 0) fail(`tar -tzf ${file}: ${res.stderr}`);
  return res.stdout.split("\n").filter(Boolean).map((f) => f.replace(/^package\//, "")).sort();
}

function checkList(file, expected) {
  const got = tarList(file);
  if (JSON.stringify(got) !== JSON.stringify([...expected].sort())) {
    fail(`${relative(root, file)} holds ${JSON.stringify(got)}, expected exactly ${JSON.stringify([...expected].sort())}`);
  }
  console.log(`${relative(root, file)}: ${got.join(", ")}`);
}

const platform = process.env.TEST_PACK_PLATFORM || hostPlatform();
const foreign = platform !== hostPlatform();
const nodeCommand = process.env.TEST_PACK_NODE ? JSON.parse(process.env.TEST_PACK_NODE) : [process.execPath];
const mainTgz = join(dist, `${pkg.name}-${pkg.version}.tgz`);
const platformTgz = join(dist, `${pkg.name}-${platform}-${pkg.version}.tgz`);
for (const f of [mainTgz, platformTgz]) if (!existsSync(f)) fail(`${relative(root, f)} is missing: run pnpm pack-all first`);

step("the tarballs hold only what a user needs");
checkList(mainTgz, ["package.json", "README.md", "LICENSE", "index.js", "index.d.ts", "otel.js", "otel.d.ts"]);
checkList(platformTgz, ["package.json", "README.md", `${binaryName}.${platform}.node`]);
const packedManifest = JSON.parse(spawnSync("tar", ["-xzOf", mainTgz, "package/package.json"], { encoding: "utf8" }).stdout);
const wantOptional = `${pkg.name}-${platform}`;
if (packedManifest.optionalDependencies?.[wantOptional] !== pkg.version) {
  fail(`the packed package.json does not list ${wantOptional}@${pkg.version} in optionalDependencies: ${JSON.stringify(packedManifest.optionalDependencies)}`);
}

const scratch = realpathSync(mkdtempSync(join(tmpdir(), "streamcast-pack-")));
if ((scratch + sep).startsWith(realpathSync(root) + sep)) fail(`the scratch folder ${scratch} is inside the repository; set TMPDIR elsewhere`);
const redis = await privateOrGivenRedis();
const prefix = `streamcast-pack-test:${randomBytes(4).toString("hex")}`;
const keys = [];
let ok = false;
try {
  console.log(`test-pack: scratch ${scratch}; Redis: ${redis.description}`);
  const typescriptVersion = JSON.parse(readFileSync(join(root, "node_modules", "typescript", "package.json"), "utf8")).version;
  const typesNodeVersion = JSON.parse(readFileSync(join(root, "node_modules", "@types", "node", "package.json"), "utf8")).version;

  const mainFile = mainTgz.slice(dist.length + 1);
  const platformFile = platformTgz.slice(dist.length + 1);
  // How a user installs local tarballs (docs/platforms.md says the same):
  //   pnpm: an override points the main package's optionalDependency at the platform tarball, so
  //         pnpm links it as streamcast's own dependency (works in workspaces too);
  //   pnpm and npm: both tarballs listed; pnpm then skips the optionalDependency (not on the
  //         registry) and Node finds the top-level copy by walking up from .pnpm/.
  const [os, cpu, abi] = platform.split("-");
  const libc = abi === "musl" ? "musl" : "glibc";
  const variants = foreign
    ? [
        {
          name: `pnpm-override-${platform}`,
          // pnpm skips a package for another cpu/libc unless told which ones to install.
          manifest: {
            pnpm: {
              overrides: { [`${pkg.name}-${platform}`]: `file:./${platformFile}` },
              supportedArchitectures: { os: [os], cpu: [cpu], libc: [libc] },
            },
          },
          install: ["pnpm", ["add", `./${mainFile}`]],
        },
      ]
    : [
        {
          name: "pnpm-override",
          manifest: { pnpm: { overrides: { [`${pkg.name}-${platform}`]: `file:./${platformFile}` } } },
          install: ["pnpm", ["add", `./${mainFile}`]],
          typecheck: true,
        },
        { name: "pnpm", manifest: {}, install: ["pnpm", ["add", `./${mainFile}`, `./${platformFile}`]] },
        { name: "npm", manifest: {}, install: ["npm", ["install", "--no-audit", "--no-fund", `./${mainFile}`, `./${platformFile}`]] },
      ];
  for (const v of variants) {
    const dir = join(scratch, v.name);
    mkdirSync(dir);
    for (const f of [mainTgz, platformTgz]) copyFileSync(f, join(dir, f.slice(dist.length + 1)));
    for (const f of readdirSync(join(root, "scripts", "smoke"))) copyFileSync(join(root, "scripts", "smoke", f), join(dir, f));
    const manifest = { name: `streamcast-pack-test-${v.name}`, private: true, type: "module", ...v.manifest };
    writeFileSync(join(dir, "package.json"), JSON.stringify(manifest, null, 2) + "\n");

    step(`${v.name}: install into ${dir}`);
    await run(v.install[0], v.install[1], { cwd: dir });

    for (const [label, file] of [["esm", "esm.mjs"], ["cjs", "cjs.cjs"]]) {
      step(`${v.name}: ${foreign ? nodeCommand.join(" ") : "node"} ${file}`);
      const smokePrefix = `${prefix}:${v.name}`;
      keys.push(`${smokePrefix}:${label}:events`, `${smokePrefix}:${label}:jobs`);
      await run(nodeCommand[0], [...nodeCommand.slice(1), file], {
        cwd: dir,
        env: userEnv({ STREAMCAST_LOG: "warn", REDIS_URL: redis.url, SMOKE_PREFIX: smokePrefix, SMOKE_EXPECT_BINARY: platform, SMOKE_ROOT: dir }),
      });
    }

    if (!foreign) {
      // The streamcast/otel entry point: packed (package.json files + exports) and loadable once
      // the app has its optional peer dependency; its channel names match the addon's exports.
      step(`${v.name}: streamcast/otel with @opentelemetry/api`);
      await run("pnpm", ["add", "--prefer-offline", "@opentelemetry/api@^1.4"], { cwd: dir });
      const check =
        "const o = require('streamcast/otel'); const s = require('streamcast'); o.instrument().disable();" +
        "if (o.CHANNELS.publish !== s.CHANNEL_PUBLISH || typeof new s.StreamsClient().metrics() !== 'string') process.exit(1);";
      await run(nodeCommand[0], [...nodeCommand.slice(1), "-e", check], { cwd: dir, env: userEnv({ STREAMCAST_LOG: "warn" }) });
    }

    if (v.typecheck) {
      step(`${v.name}: tsc --noEmit of a strict TypeScript consumer (typescript@${typescriptVersion}, @types/node@${typesNodeVersion})`);
      await run("pnpm", ["add", "-D", "--prefer-offline", `typescript@${typescriptVersion}`, `@types/node@${typesNodeVersion}`], { cwd: dir });
      await run("pnpm", ["exec", "tsc", "--noEmit", "-p", "tsconfig.json"], { cwd: dir });
    }
  }
  ok = true;
  console.log(`\ntest-pack: ok: ${pkg.name}@${pkg.version} with ${platform} installs and works: ${variants.map((v) => v.name).join(", ")} (ESM, CJS${foreign ? "" : ", TypeScript"})`);
} finally {
  if (keys.length) await command(redis.url, ["DEL", ...keys]).catch((e) => console.error(`test-pack: cleanup of ${redact(redis.url)} failed: ${e.message}`));
  await redis.stop();
  if (process.env.KEEP_SCRATCH) console.log(`test-pack: kept ${scratch}`);
  else rmSync(scratch, { recursive: true, force: true });
  if (!ok) process.exitCode = 1;
}
