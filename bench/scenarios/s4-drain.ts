// 4. Consumer-group drain with auto-ack: n pre-loaded entries, 1 and 4 consumers (one process,
// one client, K consumers of one group), timed until all delivered and XPENDING is 0.
import type { Ctx, Scenario } from "../lib/context.js";
import { Worker } from "../lib/proc.js";
import { preload } from "../lib/redis.js";
import { payload } from "../lib/util.js";

export const s4: Scenario = {
  id: 4,
  title: "group drain",
  async run(ctx: Ctx) {
    const { n, consumers } = ctx.sizes.s4;
    ctx.scenarioSizes = { n, consumers, count: 10, autoAck: true };
    for (const k of consumers) {
      ctx.metric({
        key: `s4.drain.${k}`,
        scenario: 4,
        label: `drain ${n.toLocaleString("en")}, ${k} consumer${k > 1 ? "s" : ""}`,
        unit: "msgs/s",
        better: "higher",
        targets: [{ text: "≥ 3× ioredis-port", kind: "ratio", op: ">=", value: 3 }],
      });
    }
    // Pre-load once, then DUMP it; every run restores that copy after its FLUSHALL.
    await ctx.redis.flushall();
    await preload(ctx.redis.admin, "s4", n, (i) => payload(i));
    const dump = await ctx.redis.admin.dumpBuffer("s4");
    if (!dump) throw new Error("DUMP s4 returned nothing");
    for (let rep = 0; rep < ctx.repeats; rep++) {
      for (const impl of ctx.impls) {
        for (const k of consumers) {
          await ctx.runOne(`s4 ${impl} ${k} consumers #${rep + 1}`, { impl, rep, consumers: k }, async () => {
            await ctx.redis.admin.restore("s4", 0, dump);
            const w = new Worker(`s4-${impl}-${k}`, "drain.ts", { impl, url: ctx.redis.url, stream: "s4", group: "g", consumers: k, n, timeoutMs: 180_000 });
            try {
              const r = await w.waitFor("result", 200_000);
              if (r.timedOut || r.distinct !== n) throw new Error(`only ${r.distinct} of ${n} entries delivered (timed out: ${r.timedOut})`);
              if (r.pending !== 0) throw new Error(`${r.pending} entries still pending after the drain`);
              ctx.sample(`s4.drain.${k}`, impl, r.msgsPerSec);
              return r;
            } finally {
              await w.finish();
            }
          });
        }
      }
    }
  },
};
