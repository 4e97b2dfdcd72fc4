// What a scenario gets from the harness: the Redis, the sizes, and where to put samples.
import { loadavg } from "node:os";
import { finishMetric, type MetricSpec, type ScenarioResult } from "../report.js";
import type { ImplName } from "./impls.js";
import type { BenchRedis } from "./redis.js";

export interface Sizes {
  repeats: number;
  s1: { n: number; inflight: number; warmup: number };
  s2: { batchSize: number; batches: number; warmup: number };
  s3: { rates: number[]; seconds: Record<number, number>; warmSeconds: number };
  s4: { n: number; consumers: number[] };
  /** One run per subscriber-process count. */
  s5: { n: number; subscribers: number[]; inflight: number };
  s6: { n: number; slowEvery: number; sampleMs: number; skipGlide: boolean };
  s7: { subs: number; settleMs: number; measureMs: number };
  /** n: messages per run by subscription count ("default" for the rest). */
  s8: { n: Record<string, number>; subs: number[]; inflight: number };
  /** Idle subscribed streams (one subscription each). */
  s9: { subs: number; settleMs: number; measureMs: number };
}

export interface Scenario {
  id: number;
  title: string;
  run(ctx: Ctx): Promise<void>;
}

export class Ctx {
  private readonly specs: MetricSpec[] = [];
  private readonly samples = new Map<string, Record<string, number[]>>();
  readonly runs: Array<Record<string, unknown>> = [];
  readonly errors: string[] = [];
  scenarioSizes: Record<string, unknown> = {};

  constructor(
    readonly redis: BenchRedis,
    readonly sizes: Sizes,
    readonly impls: ImplName[],
    readonly smoke: boolean,
  ) {}

  get repeats(): number {
    return this.sizes.repeats;
  }

  metric(spec: MetricSpec): void {
    this.specs.push(spec);
    this.samples.set(spec.key, {});
  }

  sample(key: string, impl: string, value: number): void {
    const m = this.samples.get(key);
    if (!m) throw new Error(`unknown metric ${key}`);
    (m[impl] ??= []).push(value);
  }

  log(msg: string): void {
    process.stderr.write(`  ${msg}\n`);
  }

  /**
   * One measured run: FLUSHALL first, then `fn`; its failure is recorded (and printed), not
   * thrown, so one broken implementation does not hide the others' numbers.
   */
  async runOne(label: string, fields: Record<string, unknown>, fn: () => Promise<Record<string, unknown>>): Promise<void> {
    await this.redis.flushall();
    const load1 = loadavg()[0];
    const t0 = Date.now();
    try {
      const detail = await fn();
      this.runs.push({ ...fields, load1, ms: Date.now() - t0, ...detail });
    } catch (err) {
      const msg = `${label}: ${String((err as Error)?.message ?? err)}`;
      this.errors.push(msg);
      this.runs.push({ ...fields, load1, ms: Date.now() - t0, error: msg });
      this.log(`ERROR ${msg}`);
    }
  }

  finish(id: number, title: string, seconds: number): ScenarioResult {
    return {
      id,
      title,
      sizes: this.scenarioSizes,
      seconds,
      errors: this.errors,
      metrics: this.specs.map((s) => finishMetric(s, this.samples.get(s.key) ?? {})),
      runs: this.runs,
    };
  }
}
