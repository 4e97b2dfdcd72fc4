// globalSetup of `pnpm test:e2e`: packs streamcast as it would be published (the addon is built
// first if it is missing or stale, then `pnpm pack-all` writes every package's tarball into dist/), copies examples/nextjs-dashboard and the tarballs
// into a scratch folder under the OS temp dir, and installs the example there with pnpm, exactly
// as a user of the example would: no workspace link, no access to the repository's node_modules.
//
// The copy keeps the repository's relative layout (<tmp>/examples/nextjs-dashboard and
// <tmp>/dist), so the example's own `file:../../dist/…` specs are what gets installed.
//
// E2E_REUSE_DIST=1 skips `pnpm pack-all` and uses the tarballs already in dist/ (local iteration).
// E2E_KEEP=1 keeps the scratch folder (its path is printed).
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";
import { mustRun } from "./helpers/processes.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** The installed copy of examples/nextjs-dashboard. */
    appDir: string;
  }
}

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const example = join(repo, "examples", "nextjs-dashboard");
/** Build output and local state that must not travel with the copy. */
const NOT_COPIED = new Set(["node_modules", ".next", "dist", "next-env.d.ts", "tsconfig.tsbuildinfo"]);

export default async function setup(project: TestProject): Promise<() => void> {
  if (process.env.E2E_REUSE_DIST !== "1") {
    console.log("[e2e] pnpm ensure-built && pnpm pack-all");
    await mustRun("pnpm", ["ensure-built"], { cwd: repo, timeoutMs: 30 * 60_000 });
    await mustRun("pnpm", ["pack-all"], { cwd: repo, timeoutMs: 5 * 60_000 });
  }
  const dist = join(repo, "dist");
  const tarballs = existsSync(dist) ? readdirSync(dist).filter((f) => f.endsWith(".tgz")) : [];
  if (tarballs.length === 0) throw new Error(`no tarballs in ${dist}: run pnpm pack-all`);

  const scratch = mkdtempSync(join(tmpdir(), "streamcast-e2e-"));
  const appDir = join(scratch, "examples", "nextjs-dashboard");
  cpSync(example, appDir, { recursive: true, filter: (src) => !NOT_COPIED.has(basename(src)) || src === example });
  mkdirSync(join(scratch, "dist"));
  for (const file of tarballs) cpSync(join(dist, file), join(scratch, "dist", file));

  // The example names the tarballs by version; say so plainly when a version bump left it behind.
  const manifest = JSON.parse(readFileSync(join(appDir, "package.json"), "utf8")) as {
    dependencies: Record<string, string>;
    pnpm: { overrides: Record<string, string> };
  };
  for (const spec of [manifest.dependencies.streamcast!, ...Object.values(manifest.pnpm.overrides)]) {
    const file = resolve(appDir, spec.replace(/^file:/, ""));
    if (!existsSync(file)) {
      throw new Error(
        `examples/nextjs-dashboard/package.json wants ${relative(scratch, file)}, but pack-all wrote: ${tarballs.join(", ")}; ` +
          "update the example's file: specs to the new version",
      );
    }
  }

  console.log(`[e2e] pnpm install in ${appDir}`);
  // No lockfile for the example (see its README): exact versions in package.json pin what it uses.
  await mustRun("pnpm", ["install", "--no-frozen-lockfile"], { cwd: appDir, timeoutMs: 10 * 60_000 });

  project.provide("appDir", appDir);
  return () => {
    if (process.env.E2E_KEEP === "1") console.log(`[e2e] kept ${scratch}`);
    else rmSync(scratch, { recursive: true, force: true });
  };
}
