// 3. End-to-end latency, publisher and subscriber in different processes, at fixed rates:
// p50/p99/max of (receive time − send time) on the machine's monotonic clock. Both processes
// use the implementation under test; a warm-up second at the same rate is not measured. The
// subscriber process also reports its CPU time (every thread) per measured delivery.
import type { Ctx, Scenario } from "../lib/context.js";
import { Worker } from "../lib/proc.js";

export const s3: Scenario = {
  id: 3,
  title: "e2e latency",
  async run(ctx: Ctx) {
    const { rates, seconds, warmSeconds } = ctx.sizes.s3;
    ctx.scenarioSizes = { rates, seconds, warmSeconds, pacing: "1 ms timer, all due messages sent per tick, not awaited" };
    for (const rate of rates) {
      for (const q of ["p50", "p99", "max"] as const) {
        ctx.metric({
          key: `s3.${rate}.${q}`,
          scenario: 3,
          label: `${q} @ ${rate.toLocaleString("en")}/s`,
          unit: "µs",
          better: "lower",
          targets: rate === 2000 && q !== "max" ? [{ text: "≤ 0.8× ioredis-port", kind: "ratio", op: "<=", value: 0.8 }] : undefined,
        });
      }
      ctx.metric({
        key: `s3.${rate}.cpu`,
        scenario: 3,
        label: `subscriber CPU per delivery @ ${rate.toLocaleString("en")}/s`,
        unit: "µs",
        better: "lower",
        noChart: true,
      });
    }
    for (let rep = 0; rep < ctx.repeats; rep++) {
      for (const impl of ctx.impls) {
        for (const rate of rates) {
          await ctx.runOne(`s3 ${impl} ${rate}/s #${rep + 1}`, { impl, rep, rate }, async () => {
            const secs = seconds[rate] ?? 3;
            const expected = Math.round(rate * warmSeconds) + Math.round(rate * secs);
            const sub = new Worker(`s3-sub-${impl}`, "subscriber.ts", { impl, url: ctx.redis.url, stream: "s3", mode: "latency", expected, idleMs: 3000, slowEvery: 0, sampleMs: 0 });
            let pub: Worker | null = null;
            try {
              await sub.waitFor("ready", 30_000);
              pub = new Worker(`s3-pub-${impl}`, "publisher.ts", { impl, url: ctx.redis.url, stream: "s3", mode: "rate", rate, seconds: secs, warmSeconds, n: 0, inflight: 0 });
              const p = await pub.waitFor("result", (secs + warmSeconds) * 1000 + 60_000);
              sub.send({ type: "published" });
              const s = await sub.waitFor("result", 60_000);
              if (s.lost > 0) throw new Error(`${s.lost} of ${expected} messages never arrived`);
              const lat = s.latency;
              ctx.sample(`s3.${rate}.p50`, impl, lat.p50);
              ctx.sample(`s3.${rate}.p99`, impl, lat.p99);
              ctx.sample(`s3.${rate}.max`, impl, lat.max);
              ctx.sample(`s3.${rate}.cpu`, impl, lat.cpuUsPerDelivery);
              return { latencyUs: lat, achievedRate: p.achievedRate, publishResolveLagMs: p.resolveLagMs, nulls: p.nulls, lost: s.lost, dups: s.dups, outOfOrder: s.outOfOrder };
            } finally {
              await Promise.all([sub.finish(), pub?.finish()]);
            }
          });
        }
      }
    }
  },
};
