import { defineConfig } from "vitest/config";

// `pnpm test:e2e`: the Next.js example, installed from the packed tarballs, in real servers and a
// real browser. globalSetup packs and installs once; the files then run one after another (they
// build and run Next.js, which needs both cores of a small machine).
export default defineConfig({
  test: {
    include: ["e2e/**/*.e2e.ts"],
    globalSetup: ["e2e/setup.ts"],
    pool: "forks",
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 600_000,
    teardownTimeout: 30_000,
    // Every Next.js process the tests start inherits this: no telemetry from CI runs.
    env: { NEXT_TELEMETRY_DISABLED: "1" },
  },
});
