import { defineConfig } from "vitest/config";

/**
 * The behaviour suites: they reach Redis only through helpers/fixture.ts (the public API plus a
 * checker connection, and per-node helpers for CLIENT LIST and INFO), so the "cluster" project
 * runs them a second time, unchanged, against a real Redis Cluster. The other files stay in
 * "single" only: faults*, failover, lifecycle and security drive one redis-server process
 * itself (a TCP proxy in front of it, SIGSTOP, restarts, passwords and ACLs, a REPLICAOF);
 * config, loader, logging and runtime test the addon rather than a topology; topology,
 * cluster, cluster-failover and reshard start their own cluster or sentinels anyway.
 */
const BEHAVIOUR = [
  "__test__/publish.spec.ts",
  "__test__/subscribe.spec.ts",
  "__test__/subscriptions.spec.ts",
  "__test__/groups.spec.ts",
  "__test__/trim.spec.ts",
  "__test__/iterators.spec.ts",
  "__test__/status.spec.ts",
  "__test__/interop.spec.ts",
  "__test__/options.spec.ts",
];

// Each spec file runs in its own forked process (a fresh addon instance and singleton) and starts
// its own redis-server (or cluster), so files run in parallel safely.
export default defineConfig({
  test: {
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
    projects: [
      {
        extends: true,
        test: { name: "single", include: ["__test__/**/*.spec.ts"], env: { STREAMCAST_TEST_TOPOLOGY: "single" } },
      },
      {
        // The same files against a 3-master / 3-replica cluster (helpers/fixture.ts reads the
        // variable). Starting the six nodes takes a few seconds per file: hence the hook timeout.
        extends: true,
        test: { name: "cluster", include: BEHAVIOUR, env: { STREAMCAST_TEST_TOPOLOGY: "cluster" }, hookTimeout: 90_000 },
      },
    ],
  },
});
