// 6. Memory: RSS of a subscriber process whose callback is slower than the publisher, over n
// messages. The publisher is the same for every implementation (plain ioredis pipelines in
// another process) so only the subscriber differs. Growth = peak RSS − RSS after subscribing.
import type { Ctx, Scenario } from "../lib/context.js";
import { Worker } from "../lib/proc.js";

export const s6: Scenario = {
  id: 6,
  title: "subscriber memory",
  async run(ctx: Ctx) {
    const { n, slowEvery, sampleMs, skipGlide } = ctx.sizes.s6;
    ctx.scenarioSizes = { n, slowEvery, sampleMs, glide: skipGlide ? "left out (time budget; it is a raw-command baseline)" : "included", callback: `awaits a 1 ms timer every ${slowEvery} messages`, publisher: "ioredis pipelines of 1,000 XADDs, one process" };
    ctx.metric({
      key: "s6.growth",
      scenario: 6,
      label: `RSS growth over ${n.toLocaleString("en")} msgs`,
      unit: "MB",
      better: "lower",
      targets: [{ text: "< 50 MB in every run", kind: "abs", stat: "max", op: "<", value: 50 }],
    });
    ctx.metric({ key: "s6.late", scenario: 6, label: "RSS growth, 2nd half of msgs", unit: "MB", better: "lower", noChart: true });
    ctx.metric({ key: "s6.peak", scenario: 6, label: "peak RSS", unit: "MB", better: "lower", noChart: true });
    const impls = ctx.impls.filter((i) => !(i === "glide" && ctx.sizes.s6.skipGlide));
    for (let rep = 0; rep < ctx.repeats; rep++) {
      for (const impl of impls) {
        await ctx.runOne(`s6 ${impl} #${rep + 1}`, { impl, rep }, async () => {
          const sub = new Worker(`s6-sub-${impl}`, "subscriber.ts", { impl, url: ctx.redis.url, stream: "s6", mode: "slow", expected: n, idleMs: 10_000, slowEvery, sampleMs });
          let pub: Worker | null = null;
          try {
            await sub.waitFor("ready", 30_000);
            pub = new Worker(`s6-pub`, "publisher.ts", { impl, url: ctx.redis.url, stream: "s6", mode: "raw", n, inflight: 0, rate: 0, seconds: 0, warmSeconds: 0 });
            const p = await pub.waitFor("result", 300_000);
            sub.send({ type: "published" });
            const s = await sub.waitFor("result", 900_000);
            if (s.lost > 0) throw new Error(`${s.lost} of ${n} messages never arrived`);
            ctx.sample("s6.growth", impl, s.memory.growthMB);
            ctx.sample("s6.late", impl, s.memory.lateGrowthMB);
            ctx.sample("s6.peak", impl, s.memory.maxRssMB);
            const subSeconds = (s.lastUs - p.tStartUs) / 1e6;
            return {
              memory: s.memory,
              publishSeconds: p.seconds,
              subscriberSeconds: subSeconds,
              subscriberMsgsPerSec: n / subSeconds,
              backlogAtPublishEnd: "subscriber finished " + (subSeconds - p.seconds).toFixed(1) + " s after the publisher",
              lost: s.lost,
              dups: s.dups,
              counters: s.counters,
            };
          } finally {
            await Promise.all([sub.finish(), pub?.finish()]);
          }
        });
      }
    }
  },
};
