// 2. publishBatch of 1,000 items, repeated (one batch in flight), in a fresh process per run.
import type { Ctx, Scenario } from "../lib/context.js";
import { Worker } from "../lib/proc.js";

const KEY = "s2.batch";

export const s2: Scenario = {
  id: 2,
  title: "publishBatch",
  async run(ctx: Ctx) {
    const { batchSize, batches, warmup } = ctx.sizes.s2;
    ctx.scenarioSizes = { batchSize, batches, warmupBatches: warmup };
    ctx.metric({ key: KEY, scenario: 2, label: `publishBatch ${batchSize} ×${batches}`, unit: "msgs/s", better: "higher" });
    for (let rep = 0; rep < ctx.repeats; rep++) {
      for (const impl of ctx.impls) {
        await ctx.runOne(`s2 ${impl} #${rep + 1}`, { impl, rep }, async () => {
          const w = new Worker(`s2-${impl}`, "publish.ts", { impl, url: ctx.redis.url, stream: "s2", mode: "batch", n: 0, inflight: 1, batchSize, batches, warmup });
          try {
            const r = await w.waitFor("result", 120_000);
            const xlen = await ctx.redis.admin.xlen("s2");
            if (xlen !== batchSize * batches) throw new Error(`XLEN is ${xlen}, expected ${batchSize * batches} (${r.nulls} null ids)`);
            ctx.sample(KEY, impl, r.msgsPerSec);
            return { msgsPerSec: r.msgsPerSec, seconds: r.seconds, nulls: r.nulls, xlen };
          } finally {
            await w.finish();
          }
        });
      }
    }
  },
};
