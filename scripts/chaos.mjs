// `pnpm test:chaos [--seed N] [--seconds S] [--topology single|cluster|sentinel[,...]]`: runs the
// seeded chaos run (chaos/chaos.chaos.ts) under vitest. Without --seed it draws one and prints
// it first, so any run can be repeated exactly.
import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    seed: { type: "string" },
    seconds: { type: "string", default: "20" },
    topology: { type: "string", default: "single,cluster,sentinel" },
  },
});
const seed = values.seed ?? String(Math.floor(Math.random() * 2 ** 31));
for (const [name, v] of [["--seed", seed], ["--seconds", values.seconds]]) {
  if (!/^\d+$/.test(v)) {
    console.error(`${name} must be a whole number, not ${JSON.stringify(v)}`);
    process.exit(2);
  }
}
for (const t of values.topology.split(",")) {
  if (!["single", "cluster", "sentinel"].includes(t)) {
    console.error(`--topology takes single, cluster and sentinel (comma-separated), not ${JSON.stringify(t)}`);
    process.exit(2);
  }
}
console.log(`[chaos] seed ${seed} (rerun: pnpm test:chaos --seed ${seed} --seconds ${values.seconds} --topology ${values.topology})`);
const run = spawnSync("pnpm", ["exec", "vitest", "run", "--config", "chaos/vitest.config.mts"], {
  stdio: "inherit",
  env: { ...process.env, CHAOS_SEED: seed, CHAOS_SECONDS: values.seconds, CHAOS_TOPOLOGIES: values.topology },
});
process.exit(run.status ?? 1);
