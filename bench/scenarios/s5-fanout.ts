// 5. Fan-out: 1 publisher process (n messages, 256 in flight) and, per run, 4 or 8 subscriber
// processes, all on the implementation under test. Deliveries/s = subscribers × n / (last
// delivery anywhere − first publish); lost = messages some subscriber never got.
import type { Ctx, Scenario } from "../lib/context.js";
import { Worker } from "../lib/proc.js";

export const s5: Scenario = {
  id: 5,
  title: "fan-out",
  async run(ctx: Ctx) {
    const { n, subscribers, inflight } = ctx.sizes.s5;
    ctx.scenarioSizes = { n, subscribers, inflight, count: 10 };
    for (const k of subscribers) {
      ctx.metric({
        key: `s5.deliveries.${k}`,
        scenario: 5,
        label: `deliveries, 1 pub → ${k} subs`,
        unit: "deliveries/s",
        better: "higher",
        targets: k === 4 ? [{ text: "≥ 2× ioredis-port", kind: "ratio", op: ">=", value: 2 }] : [{ text: "≥ 1.5× ioredis-port", kind: "ratio", op: ">=", value: 1.5 }],
      });
    }
    ctx.metric({
      key: "s5.lost",
      scenario: 5,
      label: "lost deliveries",
      unit: "count",
      better: "lower",
      noChart: true,
      targets: [{ text: "0 in every run", kind: "abs", stat: "max", op: "==", value: 0 }],
    });
    for (let rep = 0; rep < ctx.repeats; rep++) {
      for (const k of subscribers) for (const impl of ctx.impls) {
        await ctx.runOne(`s5 ${impl} ${k} subs #${rep + 1}`, { impl, subscribers: k, rep }, async () => {
          const subs = Array.from(
            { length: k },
            (_, i) => new Worker(`s5-sub${i}-${impl}`, "subscriber.ts", { impl, url: ctx.redis.url, stream: "s5", mode: "count", expected: n, idleMs: 5000, slowEvery: 0, sampleMs: 0 }),
          );
          let pub: Worker | null = null;
          try {
            await Promise.all(subs.map((s) => s.waitFor("ready", 60_000)));
            pub = new Worker(`s5-pub-${impl}`, "publisher.ts", { impl, url: ctx.redis.url, stream: "s5", mode: "flood", n, inflight, rate: 0, seconds: 0, warmSeconds: 0 });
            const p = await pub.waitFor("result", 180_000);
            for (const s of subs) s.send({ type: "published" });
            const rs = await Promise.all(subs.map((s) => s.waitFor("result", 180_000)));
            const lost = rs.reduce((a, r) => a + r.lost, 0);
            const delivered = rs.reduce((a, r) => a + r.distinct, 0);
            const lastUs = Math.max(...rs.map((r) => r.lastUs));
            const seconds = (lastUs - p.tStartUs) / 1e6;
            const perSec = delivered / seconds;
            ctx.sample(`s5.deliveries.${k}`, impl, perSec);
            ctx.sample("s5.lost", impl, lost);
            return {
              deliveriesPerSec: perSec,
              seconds,
              publishSeconds: p.seconds,
              delivered,
              lost,
              dups: rs.reduce((a, r) => a + r.dups, 0),
              outOfOrder: rs.reduce((a, r) => a + r.outOfOrder, 0),
              nulls: p.nulls,
              perSubscriberLost: rs.map((r) => r.lost),
            };
          } finally {
            await Promise.all([...subs.map((s) => s.finish()), pub?.finish()]);
          }
        });
      }
    }
  },
};
