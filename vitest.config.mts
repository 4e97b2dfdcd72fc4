import { defineConfig } from "vitest/config";

// Each spec file runs in its own forked process (a fresh addon instance and singleton) and starts
// its own redis-server, so files run in parallel safely.
export default defineConfig({
  test: {
    include: ["__test__/**/*.spec.ts"],
    pool: "forks",
    isolate: true,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    teardownTimeout: 10_000,
  },
});
