// Scenarios 1 and 2, in a fresh process per run: publish throughput of one implementation.
//   single: n × publishMessage of a ~200-byte object, `inflight` outstanding at any time;
//   batch:  `batches` × publishBatch of `batchSize` objects, one batch at a time.
// A short warm-up on another stream comes first (same calls), so JIT and connections are warm.
import { makeAdapter, type ImplName } from "../lib/impls.js";
import { hrUs, payload, runWorker, toParent, windowed, workerConfig } from "../lib/util.js";

interface Cfg {
  impl: ImplName;
  url: string;
  stream: string;
  mode: "single" | "batch";
  n: number;
  inflight: number;
  batchSize: number;
  batches: number;
  warmup: number;
}

runWorker(async () => {
  const cfg = workerConfig<Cfg>();
  const a = await makeAdapter(cfg.impl, cfg.url);
  await a.connect();
  let nulls = 0;
  const count = (id: string | null): void => {
    if (id === null) nulls++;
  };
  let total: number;
  let us: number;
  if (cfg.mode === "single") {
    await windowed(cfg.warmup, cfg.inflight, (i) => a.publish(`${cfg.stream}:warm`, payload(i)));
    const t0 = hrUs();
    await windowed(cfg.n, cfg.inflight, (i) => a.publish(cfg.stream, payload(i)).then(count));
    us = hrUs() - t0;
    total = cfg.n;
  } else {
    const make = (b: number) => Array.from({ length: cfg.batchSize }, (_, k) => payload(b * cfg.batchSize + k));
    for (let b = 0; b < cfg.warmup; b++) await a.publishBatch(`${cfg.stream}:warm`, make(b));
    const t0 = hrUs();
    for (let b = 0; b < cfg.batches; b++) (await a.publishBatch(cfg.stream, make(b))).forEach(count);
    us = hrUs() - t0;
    total = cfg.batches * cfg.batchSize;
  }
  const counters = a.counters();
  await a.close();
  await toParent({ type: "result", msgsPerSec: (total / us) * 1e6, seconds: us / 1e6, total, nulls, counters });
});
