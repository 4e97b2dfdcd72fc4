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
    // `pnpm coverage` runs the suites against an instrumented addon. Only the test processes
    // (and the children they spawn) may load it: NAPI_RS_NATIVE_LIBRARY_PATH is read by every
    // napi-rs loader, vitest's own bundler included.
    env: process.env.STREAMCAST_TEST_ADDON ? { NAPI_RS_NATIVE_LIBRARY_PATH: process.env.STREAMCAST_TEST_ADDON } : {},
    // ...and each test process must then exit normally when vitest stops it, or its profile is lost.
    setupFiles: process.env.STREAMCAST_TEST_ADDON ? ["./__test__/helpers/coverage-exit.ts"] : [],
  },
});
