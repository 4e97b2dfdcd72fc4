// `pnpm bench`: streamcast against a straightforward ioredis port of the original design, raw
// @valkey/valkey-glide commands and redis-benchmark, on a private redis-server started here.
//
//   pnpm bench                      full run (≥ 5 repeats, ~20 min on 2 cores)
//   pnpm bench --smoke              every scenario at tiny sizes, 1 repeat (< 60 s; CI)
//   BENCH_SMOKE=1 pnpm bench        same
//   pnpm bench --only 3             one scenario (or a list: --only 1,4)
//   pnpm bench --repeats 7          more repeats
//   pnpm bench --impls streamcast,ioredis-port   leave an implementation out
//
// A complete full run writes bench/results/<timestamp>.json, latest.json and latest.svg; smoke
// and --only runs write git-ignored bench/results/tmp-* files. Exits 1 when a run failed (not
// when a target is missed: timings are never a test).
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus, loadavg, release, totalmem } from "node:os";
import { join } from "node:path";
import { Ctx, type Scenario, type Sizes } from "./lib/context.js";
import { IMPLS, type ImplName } from "./lib/impls.js";
import { BENCH_DIR, ROOT } from "./lib/proc.js";
import { startRedis } from "./lib/redis.js";
import { table, writeReport, type BenchReport, type ScenarioResult } from "./report.js";
import { s1 } from "./scenarios/s1-publish.js";
import { s2 } from "./scenarios/s2-batch.js";
import { s3 } from "./scenarios/s3-latency.js";
import { s4 } from "./scenarios/s4-drain.js";
import { s5 } from "./scenarios/s5-fanout.js";
import { s6 } from "./scenarios/s6-memory.js";
import { s7 } from "./scenarios/s7-idle.js";
import { s8 } from "./scenarios/s8-many.js";
import { s9 } from "./scenarios/s9-idle-many.js";

const SCENARIOS: Scenario[] = [s1, s2, s3, s4, s5, s6, s7, s8, s9];

const FULL: Sizes = {
  repeats: 5,
  s1: { n: 100_000, inflight: 256, warmup: 5_000 },
  s2: { batchSize: 1_000, batches: 100, warmup: 5 },
  s3: { rates: [200, 2_000, 20_000], seconds: { 200: 10, 2000: 5, 20000: 3 }, warmSeconds: 1 },
  s4: { n: 100_000, consumers: [1, 4] },
  s5: { n: 20_000, subscribers: [4, 8], inflight: 256 },
  s6: { n: 500_000, slowEvery: 100, sampleMs: 250, skipGlide: true },
  s7: { subs: 50, settleMs: 2_000, measureMs: 30_000 },
  s8: { n: { "1": 50_000, default: 2_000 }, subs: [1, 1_000], inflight: 256 },
  s9: { subs: 10_000, settleMs: 6_000, measureMs: 30_000 },
};

const SMOKE: Sizes = {
  repeats: 1,
  s1: { n: 2_000, inflight: 256, warmup: 200 },
  s2: { batchSize: 1_000, batches: 3, warmup: 1 },
  s3: { rates: [200, 2_000, 20_000], seconds: { 200: 1, 2000: 0.5, 20000: 0.25 }, warmSeconds: 0.1 },
  s4: { n: 2_000, consumers: [1, 4] },
  s5: { n: 1_000, subscribers: [2, 3], inflight: 256 },
  s6: { n: 10_000, slowEvery: 100, sampleMs: 100, skipGlide: false },
  s7: { subs: 50, settleMs: 500, measureMs: 1_500 },
  s8: { n: { default: 200 }, subs: [1, 50], inflight: 256 },
  s9: { subs: 200, settleMs: 500, measureMs: 1_500 },
};

/** Where the full sizes differ from the issue's, and why (also written into the JSON). */
function cutsFor(sizes: Sizes, smoke: boolean): string[] {
  if (smoke) return ["smoke mode: every scenario at tiny sizes, 1 repeat; the numbers mean nothing"];
  const cuts: string[] = [];
  if (sizes.s6.n < 1_000_000) {
    cuts.push(
      `scenario 6 runs ${sizes.s6.n.toLocaleString("en")} messages instead of 1,000,000: the slow subscriber gets ~25k msg/s on 2 cores, so 1,000,000 took ~45 s per run (≈ 4 min more for 5 repeats × 2 implementations)`,
    );
  }
  if (sizes.s6.skipGlide) cuts.push("scenario 6 leaves glide out (time budget; glide is a raw-command baseline, the target is about streamcast's heap)");
  if (sizes.s7.measureMs < 30_000) cuts.push(`scenario 7 measures ${sizes.s7.measureMs / 1000} s instead of 30 s`);
  if (sizes.repeats < 5) cuts.push(`${sizes.repeats} repeats instead of ≥ 5`);
  return cuts;
}

function usage(): never {
  console.log("usage: pnpm bench [--smoke] [--only N[,N…]] [--repeats N] [--impls a,b]  (env BENCH_SMOKE=1 = --smoke)");
  process.exit(0);
}

function parseArgs(argv: string[]): { smoke: boolean; only: number[] | null; repeats: number | null; impls: ImplName[] } {
  let smoke = process.env.BENCH_SMOKE === "1" || process.env.BENCH_SMOKE === "true";
  let only: number[] | null = null;
  let repeats: number | null = null;
  let impls: ImplName[] = [...IMPLS];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === "--") continue;
    else if (a === "--smoke") smoke = true;
    else if (a === "--only") only = val().split(",").map(Number);
    else if (a === "--repeats") repeats = Number(val());
    else if (a === "--impls") impls = val().split(",") as ImplName[];
    else if (a === "-h" || a === "--help") usage();
    else throw new Error(`unknown argument ${a} (try --help)`);
  }
  if (only && only.some((n) => !SCENARIOS.some((s) => s.id === n))) throw new Error(`--only: scenarios are 1..${SCENARIOS.length}`);
  if (repeats !== null && !(Number.isInteger(repeats) && repeats >= 1)) throw new Error("--repeats needs a positive integer");
  for (const impl of impls) if (!IMPLS.includes(impl)) throw new Error(`--impls: unknown implementation ${impl} (${IMPLS.join(", ")})`);
  if (!impls.includes("ioredis-port")) console.warn("note: without ioredis-port there are no ratios");
  return { smoke, only, repeats, impls };
}

function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "";
  }
}

function pkgVersion(name: string): string {
  try {
    return JSON.parse(readFileSync(join(ROOT, "node_modules", name, "package.json"), "utf8")).version;
  } catch {
    return "not installed";
  }
}

function machine(): Record<string, unknown> {
  const cpuinfo = (() => {
    try {
      return readFileSync("/proc/cpuinfo", "utf8");
    } catch {
      return "";
    }
  })();
  const meminfo = (() => {
    try {
      return readFileSync("/proc/meminfo", "utf8");
    } catch {
      return "";
    }
  })();
  return {
    nproc: Number(sh("nproc", [])) || cpus().length,
    cpuModel: /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1]?.trim() ?? cpus()[0]?.model ?? "unknown",
    cpuMHz: Number(/cpu MHz\s*:\s*([\d.]+)/.exec(cpuinfo)?.[1] ?? NaN),
    memTotalMB: Math.round(Number(/MemTotal:\s*(\d+)/.exec(meminfo)?.[1] ?? totalmem() / 1024) / 1024),
    kernel: release(),
    loadavgAtStart: loadavg(),
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const base = args.smoke ? SMOKE : FULL;
  const sizes: Sizes = { ...base, repeats: args.repeats ?? base.repeats };
  const picked = SCENARIOS.filter((s) => !args.only || args.only.includes(s.id));
  const startedAt = new Date();
  const t0 = Date.now();
  console.log(`streamcast bench: ${args.smoke ? "SMOKE" : "full"} run, ${sizes.repeats} repeat(s), scenarios ${picked.map((s) => s.id).join(",")}, implementations ${args.impls.join(", ")}`);

  const redis = await startRedis();
  console.log(`private redis-server ${redis.version} on port ${redis.port} (${redis.args.join(" ")})`);
  const commit = sh("git", ["rev-parse", "--short", "HEAD"]);
  const dirty = sh("git", ["status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock", "index.js"]) !== "";
  const report: BenchReport = {
    schema: 1,
    mode: args.smoke ? "smoke" : "full",
    startedAt: startedAt.toISOString(),
    finishedAt: "",
    durationSeconds: 0,
    argv: process.argv.slice(2),
    repeats: sizes.repeats,
    machine: machine(),
    versions: {
      node: process.version,
      streamcast: `${JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version} (${commit}${dirty ? ", uncommitted changes in src" : ""})`,
      ioredis: pkgVersion("ioredis"),
      "@valkey/valkey-glide": pkgVersion("@valkey/valkey-glide"),
      tsx: pkgVersion("tsx"),
      redisBenchmark: sh("redis-benchmark", ["--version"]),
    },
    redis: { version: redis.version, port: redis.port, args: redis.args },
    implementations: {
      streamcast: "this addon (index.js), defaultCount 10, defaultBlockMs 5000, enableAutoTrim false",
      "ioredis-port": "bench/ioredis-port.ts: the design on ioredis; XREAD/XREADGROUP loop per subscription/consumer on a duplicated connection; autoAck = one XACK per message",
      glide: "bench/glide.ts: raw XADD / Batch / XREAD / XREADGROUP+XACK (one XACK per read) on @valkey/valkey-glide; a dedicated client per blocking loop",
      "redis-benchmark": "the server's limit: redis-benchmark -c 1 -P 256 XADD (scenario 1 only)",
    },
    cuts: cutsFor(sizes, args.smoke),
    notes: [
      "Each run is a fresh process (or several); FLUSHALL before each run; implementations interleaved A B C A B C … per repeat.",
      "Ratios are medians / the ioredis port's median; spread is min–max over the repeats.",
      "Latency is receive time − send time on CLOCK_MONOTONIC (process.hrtime), publisher and subscriber in different processes.",
      "The machine is shared: other work may run at the same time (see load1 in each run).",
    ],
    scenarios: [],
  };

  let failed = false;
  try {
    for (const sc of picked) {
      const st = Date.now();
      console.log(`\n[${((st - t0) / 1000).toFixed(0)} s] scenario ${sc.id}: ${sc.title}`);
      const ctx = new Ctx(redis, sizes, args.impls, args.smoke);
      let result: ScenarioResult;
      try {
        await sc.run(ctx);
      } catch (err) {
        ctx.errors.push(`scenario ${sc.id}: ${String((err as Error)?.stack ?? err)}`);
      }
      result = ctx.finish(sc.id, sc.title, (Date.now() - st) / 1000);
      if (result.errors.length) failed = true;
      report.scenarios.push(result);
      for (const m of result.metrics) {
        const parts = Object.entries(m.results).map(([impl, r]) => `${impl} ${r.median.toFixed(m.unit === "msgs/s" || m.unit === "deliveries/s" ? 0 : 2)}`);
        console.log(`  ${m.label} [${m.unit}]: ${parts.join(", ")}`);
      }
    }
  } finally {
    await redis.stop();
  }
  report.finishedAt = new Date().toISOString();
  report.durationSeconds = (Date.now() - t0) / 1000;
  (report.machine as Record<string, unknown>).loadavgAtEnd = loadavg();

  console.log(`\n${table(report)}\n`);
  for (const c of report.cuts) console.log(`cut: ${c}`);
  const files = writeReport(join(BENCH_DIR, "results"), report, !args.only);
  console.log(`wrote ${files.json}, ${files.latest}, ${files.svg}`);
  console.log(`load average at start ${report.machine.loadavgAtStart}, at end ${loadavg().map((x) => x.toFixed(2))} (${report.machine.nproc} cores)`);
  console.log(`total ${report.durationSeconds.toFixed(1)} s${failed ? "; SOME RUNS FAILED (see ERROR rows)" : ""}`);
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
