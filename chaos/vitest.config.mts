import { defineConfig } from "vitest/config";

// The chaos run: one file, the topologies one after another (each starts its own servers and
// the run's timing matters, so nothing runs beside it).
export default defineConfig({
  test: {
    include: ["chaos/**/*.chaos.ts"],
    pool: "forks",
    // global.gc, for the memory check after each topology.
    execArgv: ["--expose-gc"],
    fileParallelism: false,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
  },
});
