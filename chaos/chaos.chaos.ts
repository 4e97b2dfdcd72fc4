// The seeded chaos run (`pnpm test:chaos [--seed N] [--seconds S] [--topology T]`): for each
// topology in turn, a workload of several clients runs while faults drawn from the seed are
// applied one after another; after each fault the run waits until the workload goes all the
// way through again, and at the end it checks the invariants over everything every client saw
// against what Redis holds. It prints the seed, the schedule and every count; a failing seed
// reruns the same schedule with `--seed N`.
import { appendFileSync } from "node:fs";
import { afterAll, expect, test } from "vitest";
import { setLogger } from "../index.js";
import { gapReportOf, type GapReport } from "../__test__/helpers/failover-load.js";
import { Random } from "./random.js";
import { startTopology, type Topology, type TopologyName } from "./topologies.js";
import { Workload, type Counts } from "./workload.js";

const SEED = Number(process.env.CHAOS_SEED);
const SECONDS = Number(process.env.CHAOS_SECONDS ?? 20);
const TOPOLOGIES = (process.env.CHAOS_TOPOLOGIES ?? "single,cluster,sentinel").split(",") as TopologyName[];
/** How long the workload may take to go all the way through again after a fault. */
const RECOVER_MS = 45_000;
/** `CHAOS_LOG=<file>`: every warn/error record of the run, with its timestamp, appended there. */
const LOG_FILE = process.env.CHAOS_LOG;
/** How long the invariants may take to settle at the end (parked publishes, redeliveries). */
const SETTLE_MS = 45_000;

if (!Number.isInteger(SEED)) throw new Error("CHAOS_SEED must be set (pnpm test:chaos sets it)");

/**
 * A subscription that found its stream deleted (a server restarted empty) reads it again from
 * the start: what it had not read before is reported this way, not as a gap.
 */
const RESET = /no longer exists|was recreated/;

const gaps: GapReport[] = [];
const warnings: string[] = [];
/** Log records at warn or above, counted by message, for the summary. */
const logged = new Map<string, number>();
setLogger((r) => {
  const gap = gapReportOf(r);
  if (gap) gaps.push(gap);
  else if (RESET.test(String(r.message)) && typeof r.stream === "string" && typeof r.cursor === "string") {
    gaps.push({ stream: r.stream, after: r.cursor, at: Date.parse(String(r.timestamp)), message: String(r.message) });
  }
  const level = String(r.level).toLowerCase();
  if (level === "warn" || level === "error") {
    warnings.push(`${level} ${String(r.message)} ${JSON.stringify(r)}`);
    const key = `${level} ${String(r.message)}`;
    logged.set(key, (logged.get(key) ?? 0) + 1);
  }
});

/**
 * JavaScript memory (heap and external) after a full collection: what the clients leave
 * behind once they are disconnected and dropped must come back to where it started.
 */
function jsMemory(): number {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}
/** What a run may leave in JavaScript memory (fixtures, vitest's own bookkeeping). */
const MEMORY_SLACK = 64 * 1024 * 1024;

const summary: string[] = [];
afterAll(() => {
  setLogger(null);
  console.log(["", `[chaos] seed ${SEED}, ${SECONDS} s of faults per topology`, ...summary].join("\n"));
});

for (const [index, name] of TOPOLOGIES.entries()) {
  test(`chaos on ${name} (seed ${SEED})`, { timeout: (SECONDS + 400) * 1000 }, async () => {
    // One generator per topology, so `--topology cluster --seed N` reruns the cluster part of a
    // full run with seed N unchanged.
    const rng = new Random(SEED + index * 7_919);
    const topology: Topology = await startTopology(name);
    const streams = [0, 1, 2, 3].map((i) => `chaos-${name}-${i}`);
    gaps.length = 0;
    warnings.length = 0;
    logged.clear();
    const memoryBefore = jsMemory();
    let workload: Workload | undefined;
    const schedule: string[] = [];
    const byKind = new Map<string, number>();
    const started = Date.now();
    let counts: Counts | undefined;
    let failure: unknown;
    try {
      workload = await Workload.start(topology, streams, gaps);
      await workload.waitResumed("before any fault", RECOVER_MS);
      while (Date.now() - started < SECONDS * 1000) {
        const fault = await topology.nextFault(rng, streams, (s, gone) => workload!.trimmed(s, gone));
        const t = Date.now();
        workload.faultStarts(fault.loses === true);
        await fault.apply();
        // What an application does after its server lost everything: create its groups again.
        if (fault.kind === "sigkill-restart") await workload.createGroups();
        await workload.waitResumed(`after ${fault.detail}`, RECOVER_MS);
        workload.faultRecovered();
        const line = `  ${((t - started) / 1000).toFixed(1).padStart(6)} s  ${fault.kind.padEnd(20)} ${fault.detail} (back in ${Date.now() - t} ms)`;
        schedule.push(line);
        // Live, so that a run that hangs still shows how far it got.
        console.log(`[chaos] ${name}${line}`);
        byKind.set(fault.kind, (byKind.get(fault.kind) ?? 0) + 1);
        // The gap between two faults, drawn from the seed (load runs undisturbed meanwhile).
        await new Promise((r) => setTimeout(r, rng.int(0, 1_000)));
      }
      console.log(`[chaos] ${name}: faults over, settling`);
      counts = await workload.finish(SETTLE_MS);
      console.log(`[chaos] ${name}: settled`);
    } catch (err) {
      failure = err;
    } finally {
      console.log(`[chaos] ${name}: closing`);
      await workload?.close();
      await topology.stop();
    }
    const examples = workload?.examples ?? [];
    workload = undefined;
    const memoryAfter = jsMemory();
    const memoryLine = `[chaos] ${name} memory: ${(memoryBefore / 2 ** 20).toFixed(1)} MiB before, ${(memoryAfter / 2 ** 20).toFixed(1)} MiB after the clients were dropped`;
    const kinds = [...byKind].map(([k, n]) => `${k} ${n}`).join(", ");
    summary.push(`[chaos] ${name}: ${((Date.now() - started) / 60_000).toFixed(1)} min from ${new Date(started).toISOString()}, faults: ${kinds || "none"}`, ...schedule);
    if (LOG_FILE) appendFileSync(LOG_FILE, [`[chaos] ${name} from ${new Date(started).toISOString()}`, ...schedule, ...warnings, ""].join("\n"));
    summary.push(`[chaos] ${name} logs:`, ...[...logged].sort((a, b) => b[1] - a[1]).map(([m, n]) => `  ${String(n).padStart(6)}  ${m}`));
    summary.push(memoryLine);
    if (counts) summary.push(`[chaos] ${name} counts: ${Object.entries(counts).map(([k, v]) => `${k}=${v}`).join(" ")}`);
    if (failure) {
      summary.push(`[chaos] ${name} FAILED: ${String(failure)}`, ...warnings.slice(-15).map((w) => `    ${w.slice(0, 400)}`));
      throw failure;
    }
    const violations = Workload.violations(counts!);
    if (memoryAfter - memoryBefore > MEMORY_SLACK) violations.push(`JavaScript memory grew by ${((memoryAfter - memoryBefore) / 2 ** 20).toFixed(1)} MiB`);
    if (violations.length > 0) summary.push(`[chaos] ${name} VIOLATIONS: ${violations.join("; ")}`, ...examples.map((e) => `    e.g. ${e}`), ...warnings.slice(-15).map((w) => `    ${w.slice(0, 400)}`));
    expect(violations, `seed ${SEED} on ${name}: rerun with pnpm test:chaos --seed ${SEED} --topology ${name}`).toEqual([]);
  });
}
