// 1. Publish throughput: n × publishMessage of a ~200-byte object, 256 in flight, in a fresh
// process per run; plus the server's own limit, redis-benchmark XADD with the same pipeline depth.
import { spawn } from "node:child_process";
import type { Ctx, Scenario } from "../lib/context.js";
import { Worker } from "../lib/proc.js";
import { payload } from "../lib/util.js";

const KEY = "s1.publish";

/** `redis-benchmark -p P -c 1 -n N -P 256 --csv XADD bench * data <json> timestamp <ms>` → requests/s. */
export async function redisBenchmark(port: number, n: number, pipeline: number): Promise<{ rps: number; argv: string[] }> {
  const json = JSON.stringify(payload(0));
  const argv = ["-p", String(port), "-c", "1", "-n", String(n), "-P", String(pipeline), "--csv", "XADD", "s1:rb", "*", "data", json, "timestamp", String(Date.now())];
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn("redis-benchmark", argv, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(stdout) : reject(new Error(`redis-benchmark exited ${code}: ${stderr}`))));
  });
  // CSV: "test","rps","avg_latency_ms",…; the test name contains the JSON, so read from the end.
  const m = /"([\d.]+)"(?:,"[\d.]+"){6}\s*$/.exec(out.trim());
  if (!m) throw new Error(`unexpected redis-benchmark output: ${out.slice(-300)}`);
  return { rps: Number(m[1]), argv: argv.map((a) => (a === json ? "<~200-byte JSON>" : a)) };
}

export const s1: Scenario = {
  id: 1,
  title: "publish throughput",
  async run(ctx: Ctx) {
    const { n, inflight, warmup } = ctx.sizes.s1;
    ctx.scenarioSizes = { n, inflight, warmup, payloadBytes: JSON.stringify(payload(12345, 1e11)).length };
    ctx.metric({
      key: KEY,
      scenario: 1,
      label: `publishMessage ×${n}, ${inflight} in flight`,
      unit: "msgs/s",
      better: "higher",
      targets: [
        { text: "≥ 2× ioredis-port", kind: "ratio", op: ">=", value: 2 },
        { text: "≥ 0.5× redis-benchmark", kind: "ratio", vs: "redis-benchmark", op: ">=", value: 0.5 },
      ],
    });
    const impls = [...ctx.impls, "redis-benchmark"] as const;
    for (let rep = 0; rep < ctx.repeats; rep++) {
      for (const impl of impls) {
        await ctx.runOne(`s1 ${impl} #${rep + 1}`, { impl, rep }, async () => {
          if (impl === "redis-benchmark") {
            const r = await redisBenchmark(ctx.redis.port, n, inflight);
            ctx.sample(KEY, impl, r.rps);
            return { msgsPerSec: r.rps, argv: r.argv.join(" "), xlen: await ctx.redis.admin.xlen("s1:rb") };
          }
          const w = new Worker(`s1-${impl}`, "publish.ts", { impl, url: ctx.redis.url, stream: "s1", mode: "single", n, inflight, warmup, batchSize: 0, batches: 0 });
          try {
            const r = await w.waitFor("result", 120_000);
            const xlen = await ctx.redis.admin.xlen("s1");
            if (xlen !== n) throw new Error(`XLEN is ${xlen}, expected ${n} (${r.nulls} publishes resolved null)`);
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
