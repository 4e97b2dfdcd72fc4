// 7. Idle cost: CPU of a process holding 50 idle subscriptions. The implementations run at the
// same time (one process each; idle processes barely compete), repeated.
import type { Ctx, Scenario } from "../lib/context.js";
import { Worker } from "../lib/proc.js";

export const s7: Scenario = {
  id: 7,
  title: "idle cost",
  async run(ctx: Ctx) {
    const { subs, settleMs, measureMs } = ctx.sizes.s7;
    ctx.scenarioSizes = { subs, settleMs, measureMs, concurrent: "all implementations measured at the same time, one process each" };
    ctx.metric({
      key: "s7.cpu",
      scenario: 7,
      label: `CPU, ${subs} idle subscriptions`,
      unit: "% of a core",
      better: "lower",
      targets: [{ text: "< 1%", kind: "abs", stat: "median", op: "<", value: 1 }],
    });
    ctx.metric({ key: "s7.rss", scenario: 7, label: `RSS, ${subs} idle subscriptions`, unit: "MB", better: "lower", noChart: true });
    for (let rep = 0; rep < ctx.repeats; rep++) {
      await ctx.runOne(`s7 #${rep + 1}`, { rep }, async () => {
        const ws = ctx.impls.map((impl) => ({ impl, w: new Worker(`s7-${impl}`, "idle.ts", { impl, url: ctx.redis.url, subs, settleMs, measureMs }) }));
        try {
          const results: Record<string, unknown> = {};
          const errors: string[] = [];
          await Promise.all(
            ws.map(async ({ impl, w }) => {
              try {
                const r = await w.waitFor("result", settleMs + measureMs + 60_000);
                ctx.sample("s7.cpu", impl, r.cpuPercent);
                ctx.sample("s7.rss", impl, r.rssMB);
                results[impl] = r;
              } catch (err) {
                errors.push(`${impl}: ${String((err as Error).message)}`);
              }
            }),
          );
          if (errors.length) throw new Error(errors.join("; "));
          return { results };
        } finally {
          await Promise.all(ws.map(({ w }) => w.finish()));
        }
      });
    }
  },
};
