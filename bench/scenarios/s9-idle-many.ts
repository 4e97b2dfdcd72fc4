// 9. Idle cost at scale: one process subscribed to `subs` streams (one subscription per
// existing stream, a realistic per-user or per-tenant layout) while nothing is published.
// Commands per second the process sends to Redis (from the server's INFO commandstats, the
// harness's own INFO left out), its CPU and RSS. One implementation at a time: the command
// count is the server's.
import type { Ctx, Scenario } from "../lib/context.js";
import type { ImplName } from "../lib/impls.js";
import { Worker } from "../lib/proc.js";

const PREFIX = "idle9:";

/** Calls per command from `INFO commandstats`. */
function commandCalls(info: string): Map<string, number> {
  const calls = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(m[1]!, Number(m[2]));
  return calls;
}

export const s9: Scenario = {
  id: 9,
  title: "idle cost of many subscribed streams",
  async run(ctx: Ctx) {
    const { subs, settleMs, measureMs } = ctx.sizes.s9;
    // glide would need a client per blocking loop, as the port a connection per subscription:
    // the port already shows that cost.
    const impls = ctx.impls.filter((i): i is ImplName => i !== "glide");
    ctx.scenarioSizes = { subs, settleMs, measureMs, layout: "one subscription per existing stream", glide: "left out (one client per blocking loop, like the port)", order: "one implementation at a time" };
    ctx.metric({ key: "s9.cmds", scenario: 9, label: `commands/s sent to Redis, ${subs} idle subscribed streams`, unit: "commands/s", better: "lower" });
    ctx.metric({ key: "s9.cpu", scenario: 9, label: `CPU, ${subs} idle subscribed streams`, unit: "% of a core", better: "lower" });
    ctx.metric({ key: "s9.rss", scenario: 9, label: `RSS, ${subs} idle subscribed streams`, unit: "MB", better: "lower", noChart: true });
    for (let rep = 0; rep < ctx.repeats; rep++) {
      for (const impl of impls) {
        await ctx.runOne(`s9 ${impl} #${rep + 1}`, { impl, rep }, async () => {
          // The streams exist (one entry each) before anyone subscribes.
          for (let from = 0; from < subs; from += 1_000) {
            const pipe = ctx.redis.admin.pipeline();
            for (let i = from; i < Math.min(subs, from + 1_000); i++) pipe.xadd(`${PREFIX}${i}`, "*", "data", "{}");
            await pipe.exec();
          }
          const w = new Worker(`s9-${impl}`, "idle-many.ts", { impl, url: ctx.redis.url, prefix: PREFIX, subs, settleMs, measureMs });
          try {
            const ready = await w.waitFor("ready", 600_000);
            const before = commandCalls(await ctx.redis.admin.info("commandstats"));
            const t0 = process.hrtime.bigint();
            w.send({ type: "go" });
            const r = await w.waitFor("result", measureMs + 60_000);
            const after = commandCalls(await ctx.redis.admin.info("commandstats"));
            const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
            const byCommand: Record<string, number> = {};
            let total = 0;
            for (const [cmd, n] of after) {
              if (cmd === "info") continue;
              const d = n - (before.get(cmd) ?? 0);
              if (d > 0) {
                byCommand[cmd] = Math.round((d / seconds) * 100) / 100;
                total += d;
              }
            }
            const cmdsPerSec = total / seconds;
            ctx.sample("s9.cmds", impl, cmdsPerSec);
            ctx.sample("s9.cpu", impl, r.cpuPercent);
            ctx.sample("s9.rss", impl, r.rssMB);
            ctx.log(`s9 ${impl}: ${cmdsPerSec.toFixed(1)} commands/s ${JSON.stringify(byCommand)}, CPU ${r.cpuPercent.toFixed(2)}%, RSS ${r.rssMB.toFixed(0)} MB, subscribed in ${ready.subscribeMs} ms`);
            w.send({ type: "close" });
            return { cmdsPerSec, byCommand, seconds, subscribeMs: ready.subscribeMs, ...r };
          } finally {
            await w.finish();
          }
        });
      }
    }
  },
};
