// `pnpm bench:tracing`: what tracing costs. Publish throughput (256 in flight) and delivery
// throughput (one subscription draining a pre-filled stream) with tracing off, with a no-op
// subscriber on every TracingChannel, and with OpenTelemetry spans (streamcast/otel), each mode
// in a process of its own, interleaved, on a private redis-server. Ratios are to the build
// given with --baseline (the build before tracing existed), else to "off". Also per mode: the
// bytes Redis received per publish and the bytes of one stored entry, which show that tracing
// off adds nothing to what is sent or stored.
//
//   pnpm bench:tracing [--baseline <dir or index.js of another build>] [--repeats 5] [--n 20000]
//   pnpm bench:tracing --smoke      every mode once at a tiny size (CI; the numbers mean nothing)
//
// Writes bench/results/tracing-latest.json (not in smoke mode). Timings are never a test.
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { BENCH_DIR, ROOT } from "./lib/proc.js";
import { startRedis } from "./lib/redis.js";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const baselineArg = arg("baseline");
const baseline = baselineArg === undefined ? undefined : baselineArg.endsWith(".js") ? resolve(baselineArg) : resolve(baselineArg, "index.js");
const smoke = process.argv.includes("--smoke");
const repeats = smoke ? 1 : Number(arg("repeats") ?? 5);
const n = smoke ? 1000 : Number(arg("n") ?? 20_000);
const here = join(ROOT, "index.js");
const modes: Array<[string, string]> = [
  ...(baseline === undefined ? [] : ([["pre", baseline]] as Array<[string, string]>)),
  ["off", here],
  ["noop", here],
  ["otel", here],
];

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

// One worker run may take this long (its own deadline for the deliveries is 60 s); past it, the
// worker is killed and the bench fails, so a hung run cannot hold CI. Not a timing test.
const WORKER_TIMEOUT_MS = 120_000;

function runWorker(mode: string, addon: string, url: string): string {
  try {
    return execFileSync(process.execPath, [join(BENCH_DIR, "workers", "tracing.mjs"), mode, addon, url, String(n)], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
      timeout: WORKER_TIMEOUT_MS,
      killSignal: "SIGKILL",
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ETIMEDOUT") {
      throw new Error(`bench:tracing: the "${mode}" worker did not finish within ${WORKER_TIMEOUT_MS / 1000} s and was killed`, { cause: err });
    }
    throw err;
  }
}

async function main(): Promise<void> {
  const redis = await startRedis();
  const samples = new Map<string, { publish: number[]; deliver: number[]; netIn: number[]; entryBytes: number[] }>(
    modes.map(([m]) => [m, { publish: [], deliver: [], netIn: [], entryBytes: [] }]),
  );
  try {
    for (let r = 0; r < repeats; r++) {
      // Rotate the order each repeat so no mode always runs first.
      const order = modes.map((_, i) => modes[(i + r) % modes.length]!);
      for (const [mode, addon] of order) {
        const out = runWorker(mode, addon, redis.url);
        const m = JSON.parse(out.trim().split("\n").at(-1)!) as { publish: number; deliver: number; netInPerPublish: number; entryBytes: number };
        const s = samples.get(mode)!;
        s.publish.push(m.publish);
        s.deliver.push(m.deliver);
        s.netIn.push(m.netInPerPublish);
        s.entryBytes.push(m.entryBytes);
        await redis.flushall();
      }
      console.error(`repeat ${r + 1}/${repeats} done`);
    }
  } finally {
    await redis.stop();
  }

  const ref = baseline === undefined ? "off" : "pre";
  const refPublish = median(samples.get(ref)!.publish);
  const refDeliver = median(samples.get(ref)!.deliver);
  const rows = modes.map(([mode]) => {
    const s = samples.get(mode)!;
    const publish = median(s.publish);
    const deliver = median(s.deliver);
    return {
      mode,
      publish: Math.round(publish),
      deliver: Math.round(deliver),
      publishRatio: +(publish / refPublish).toFixed(2),
      deliverRatio: +(deliver / refDeliver).toFixed(2),
      netInPerPublish: +median(s.netIn).toFixed(1),
      entryBytes: median(s.entryBytes),
    };
  });
  const load = loadavg().map((l) => l.toFixed(2)).join(" ");
  if (smoke) console.log("smoke mode: every mode once at a tiny size; the numbers mean nothing");
  console.log(`n=${n}, repeats=${repeats}, medians, ratios to "${ref}"; ${cpus().length} cores, load ${load} at the end, Redis ${redis.version}, Node ${process.version}`);
  console.log("| mode | publish msgs/s | ratio | delivery msgs/s | ratio | bytes to Redis per publish | bytes per entry |");
  console.log("|---|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(`| ${r.mode} | ${r.publish} | ${r.publishRatio} | ${r.deliver} | ${r.deliverRatio} | ${r.netInPerPublish} | ${r.entryBytes} |`);
  }
  if (smoke) return;
  const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT, encoding: "utf8" }).trim();
  writeFileSync(join(BENCH_DIR, "results", "tracing-latest.json"), JSON.stringify({ commit, n, repeats, reference: ref, loadavg: load, rows }, null, 2) + "\n");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
