// Why the example's next.config.ts has `serverExternalPackages: ["streamcast"]`: without it,
// Next.js 16 cannot build an app that imports the addon, with Turbopack (the default) or webpack.
// The README quotes these messages next to the fix so that a search for them finds it; this test
// keeps the quotes true when Next.js changes.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { run } from "./helpers/processes.js";

const appDir = inject("appDir");
const config = join(appDir, "next.config.ts");
let original: string;

async function buildFails(args: string[]): Promise<string> {
  const { code, output } = await run("pnpm", ["exec", "next", "build", ...args], {
    cwd: appDir,
    env: { NEXT_TELEMETRY_DISABLED: "1" },
    timeoutMs: 5 * 60_000,
  });
  expect(code, output).not.toBe(0);
  return output;
}

describe("next build without serverExternalPackages", () => {
  beforeAll(() => {
    original = readFileSync(config, "utf8");
    const line = /^\s*serverExternalPackages: \["streamcast"\],\n/m;
    expect(original).toMatch(line);
    writeFileSync(config, original.replace(line, ""));
  });

  afterAll(() => writeFileSync(config, original));

  it("fails with Turbopack: the .node file is not placeable in ESM chunks", async () => {
    const output = await buildFails([]);
    expect(output).toContain("Turbopack build failed");
    expect(output).toMatch(/streamcast\.linux-x64-gnu\.node \(node addon\) is not placeable in ESM chunks/);
  });

  it("fails with webpack: Module parse failed: Unexpected character", async () => {
    const output = await buildFails(["--webpack"]);
    expect(output).toMatch(/streamcast\.linux-x64-gnu\.node\nModule parse failed: Unexpected character/);
  });
});
