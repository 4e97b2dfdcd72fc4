// The subscribing process of scenarios 3, 5 and 6: subscribe from the stream's end, tell the
// parent "ready", count what arrives, and report once `expected` messages arrived (or nothing
// new arrived for idleMs after the parent said the publisher is done).
//   latency: end-to-end µs = receive time − payload.t (same monotonic clock), warm-up excluded,
//            and the process's CPU time (every thread) per delivery over the measured messages;
//   count:   distinct payload.n (loss and duplicates), first/last receive time;
//   slow:    a callback slower than the publisher (awaits a 1 ms timer every `slowEvery`
//            messages); samples RSS every sampleMs.
import { writeFileSync } from "node:fs";
import { makeAdapter, type ImplName, type Msg } from "../lib/impls.js";
import { fromParent, hrUs, percentileSorted, runWorker, sleep, toParent, workerConfig } from "../lib/util.js";

interface Cfg {
  impl: ImplName;
  url: string;
  stream: string;
  mode: "latency" | "count" | "slow";
  expected: number;
  idleMs: number;
  slowEvery: number;
  sampleMs: number;
  /** latency mode: write each measured message's [send µs, receive µs] here (bench/breakdown.ts). */
  dump?: string;
}

const MB = 1024 * 1024;

runWorker(async () => {
  const cfg = workerConfig<Cfg>();
  const a = await makeAdapter(cfg.impl, cfg.url);
  await a.connect();

  let received = 0;
  let dups = 0;
  let outOfOrder = 0;
  let lastN = -1;
  let firstUs = 0;
  let lastUs = 0;
  const seen = new Uint8Array(cfg.expected);
  const lat = new Float64Array(cfg.expected);
  const sentAt = cfg.dump ? new Float64Array(cfg.expected) : null;
  let nLat = 0;
  // CPU from the first measured (non-warm-up) delivery to the last delivery.
  let cpu0: NodeJS.CpuUsage | null = null;
  let cpuUs = NaN;
  let done!: () => void;
  const allIn = new Promise<void>((r) => (done = r));

  const onMessage = (m: Msg): void | Promise<void> => {
    const now = hrUs();
    if (received === 0) firstUs = now;
    lastUs = now;
    received++;
    const d = m.data as { n: number; t: number; w?: number };
    if (d.n < lastN) outOfOrder++;
    lastN = d.n;
    if (d.n >= 0 && d.n < seen.length) {
      if (seen[d.n]) dups++;
      seen[d.n] = 1;
    }
    if (cfg.mode === "latency" && !d.w && nLat < lat.length) {
      if (nLat === 0) cpu0 = process.cpuUsage();
      if (sentAt) sentAt[nLat] = d.t;
      lat[nLat++] = now - d.t;
    }
    if (received >= cfg.expected) {
      if (cpu0 !== null && Number.isNaN(cpuUs)) {
        const c = process.cpuUsage(cpu0);
        cpuUs = c.user + c.system;
      }
      done();
    }
    if (cfg.mode === "slow" && received % cfg.slowEvery === 0) return sleep(1);
  };

  // Memory: RSS of the whole process (JS heap, native heap, Rust threads), sampled.
  /** [ms since start, messages received, RSS MB] */
  const series: Array<[number, number, number]> = [];
  let rssMax = 0;
  let heapMax = 0;
  let externalMax = 0;
  const t0 = hrUs();
  const sample = (): void => {
    const mu = process.memoryUsage();
    rssMax = Math.max(rssMax, mu.rss);
    heapMax = Math.max(heapMax, mu.heapUsed);
    externalMax = Math.max(externalMax, mu.external + mu.arrayBuffers);
    series.push([Math.round((hrUs() - t0) / 1000), received, Math.round((mu.rss / MB) * 10) / 10]);
  };
  const sampler = cfg.sampleMs > 0 ? setInterval(sample, cfg.sampleMs) : null;

  await a.subscribe(cfg.stream, onMessage);
  await sleep(200); // let the reader settle before measuring the baseline
  const base = process.memoryUsage();
  sample();
  await toParent({ type: "ready", rss: base.rss });

  // Stop when everything arrived, or when nothing new came for idleMs after the publisher finished.
  let published = false;
  void fromParent("published").then(() => (published = true));
  const stalled = (async () => {
    let last = -1;
    let since = Date.now();
    for (;;) {
      await sleep(100);
      if (received !== last) {
        last = received;
        since = Date.now();
      } else if (published && Date.now() - since > cfg.idleMs) return;
    }
  })();
  await Promise.race([allIn, stalled]);
  if (sampler) clearInterval(sampler);
  sample();
  const end = process.memoryUsage();
  const counters = a.counters();
  await a.close();

  if (cfg.dump && sentAt) {
    const pairs: Array<[number, number]> = [];
    for (let i = 0; i < nLat; i++) pairs.push([sentAt[i]!, sentAt[i]! + lat[i]!]);
    writeFileSync(cfg.dump, JSON.stringify(pairs));
  }
  let distinct = 0;
  for (let i = 0; i < seen.length; i++) distinct += seen[i]!;
  const sorted = lat.slice(0, nLat).sort();
  // RSS growth over the second half of the messages: a leak shows here, start-up growth does not.
  const half = series.find(([, n]) => n >= cfg.expected / 2);
  const lateGrowthMB = half ? Math.max(...series.filter(([, n]) => n >= half[1]).map(([, , r]) => r)) - half[2] : NaN;
  // Keep the RSS series short: at most ~200 points.
  const step = Math.max(1, Math.ceil(series.length / 200));
  await toParent({
    type: "result",
    received,
    distinct,
    lost: cfg.expected - distinct,
    dups,
    outOfOrder,
    firstUs,
    lastUs,
    latency:
      cfg.mode === "latency"
        ? {
            n: nLat,
            p50: percentileSorted(sorted, 50),
            p99: percentileSorted(sorted, 99),
            p999: percentileSorted(sorted, 99.9),
            max: sorted[nLat - 1] ?? NaN,
            mean: nLat ? sorted.reduce((s, x) => s + x, 0) / nLat : NaN,
            cpuUsPerDelivery: nLat > 1 ? cpuUs / (nLat - 1) : NaN,
          }
        : undefined,
    memory: {
      baseRssMB: base.rss / MB,
      maxRssMB: rssMax / MB,
      endRssMB: end.rss / MB,
      growthMB: (rssMax - base.rss) / MB,
      lateGrowthMB,
      baseHeapMB: base.heapUsed / MB,
      maxHeapMB: heapMax / MB,
      maxExternalMB: externalMax / MB,
      series: series.filter((_, i) => i % step === 0),
    },
    counters,
  });
});
