// 8. Many subscriptions of one stream in one process (one per open browser tab): 1 vs `many`
// subscriptions, a publisher process floods `n` messages. Deliveries/s and the subscriber
// process's CPU per delivery. streamcast reads and parses each message once for all of a
// client's subscriptions; the ioredis port (like the original design) runs one XREAD loop and
// one connection per subscription.
import type { Ctx, Scenario } from "../lib/context.js";
import { Worker } from "../lib/proc.js";

export const s8: Scenario = {
  id: 8,
  title: "many subscriptions of one stream",
  async run(ctx: Ctx) {
    const { n, subs, inflight } = ctx.sizes.s8;
    ctx.scenarioSizes = { n, subs, inflight, count: 10, note: "n messages per run; deliveries = subscriptions × n" };
    for (const k of subs) {
      ctx.metric({ key: `s8.deliveries.${k}`, scenario: 8, label: `deliveries/s, ${k} subscription${k > 1 ? "s" : ""} of one stream`, unit: "deliveries/s", better: "higher" });
      ctx.metric({ key: `s8.cpu.${k}`, scenario: 8, label: `CPU per delivery, ${k} subscription${k > 1 ? "s" : ""}`, unit: "µs", better: "lower" });
    }
    for (let rep = 0; rep < ctx.repeats; rep++) {
      for (const k of subs) {
        for (const impl of ctx.impls) {
          const messages = n[String(k)] ?? n.default;
          await ctx.runOne(`s8 ${impl} ${k} subs #${rep + 1}`, { impl, subs: k, rep }, async () => {
            const sub = new Worker(`s8-sub-${impl}-${k}`, "many.ts", { impl, url: ctx.redis.url, stream: "s8", subs: k, expected: messages, idleMs: 5000 });
            let pub: Worker | null = null;
            try {
              await sub.waitFor("ready", 300_000);
              pub = new Worker(`s8-pub-${impl}`, "publisher.ts", { impl, url: ctx.redis.url, stream: "s8", mode: "raw", n: messages, inflight, rate: 0, seconds: 0, warmSeconds: 0 });
              await pub.waitFor("result", 180_000);
              sub.send({ type: "published" });
              const r = await sub.waitFor("result", 600_000);
              if (r.lost > 0) throw new Error(`${r.lost} deliveries lost`);
              ctx.sample(`s8.deliveries.${k}`, impl, r.deliveriesPerSec);
              ctx.sample(`s8.cpu.${k}`, impl, r.cpuUsPerDelivery);
              return { messages, ...r };
            } finally {
              await Promise.all([sub.finish(), pub?.finish()]);
            }
          });
        }
      }
    }
  },
};
