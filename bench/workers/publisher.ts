// The publishing process of scenarios 3, 5 and 6.
//   rate:  `rate` msg/s for warmSeconds (marked w, not measured) + seconds; paced by a 1 ms
//          timer that sends whatever is due; each payload carries its send time t (µs, monotonic);
//   flood: n messages as fast as possible, `inflight` outstanding (t = send time too);
//   raw:   n messages with plain ioredis pipelines of 1,000 XADDs (same wire format), the same
//          fast publisher for every implementation (scenario 6 measures the subscriber only).
import Redis from "ioredis";
import { makeAdapter, type ImplName } from "../lib/impls.js";
import { hrUs, payload, runWorker, toParent, windowed, workerConfig } from "../lib/util.js";

interface Cfg {
  impl: ImplName;
  url: string;
  stream: string;
  mode: "rate" | "flood" | "raw";
  rate: number;
  seconds: number;
  warmSeconds: number;
  n: number;
  inflight: number;
}

runWorker(async () => {
  const cfg = workerConfig<Cfg>();
  if (cfg.mode === "raw") {
    const r = new Redis(cfg.url);
    const t0 = hrUs();
    for (let i = 0; i < cfg.n; i += 1000) {
      const p = r.pipeline();
      for (let k = i; k < Math.min(cfg.n, i + 1000); k++) p.xadd(cfg.stream, "*", "data", JSON.stringify(payload(k)), "timestamp", Date.now().toString());
      await p.exec();
    }
    const t1 = hrUs();
    r.disconnect();
    await toParent({ type: "result", sent: cfg.n, tStartUs: t0, tEndUs: t1, seconds: (t1 - t0) / 1e6 });
    return;
  }
  const a = await makeAdapter(cfg.impl, cfg.url);
  await a.connect();
  let nulls = 0;
  const count = (id: string | null): void => {
    if (id === null) nulls++;
  };
  if (cfg.mode === "flood") {
    const t0 = hrUs();
    await windowed(cfg.n, cfg.inflight, (i) => a.publish(cfg.stream, payload(i, hrUs())).then(count));
    const t1 = hrUs();
    await a.close();
    await toParent({ type: "result", sent: cfg.n, nulls, tStartUs: t0, tEndUs: t1, seconds: (t1 - t0) / 1e6 });
    return;
  }
  // rate
  const warm = Math.round(cfg.rate * cfg.warmSeconds);
  const total = warm + Math.round(cfg.rate * cfg.seconds);
  const pending: Promise<void>[] = [];
  let sent = 0;
  const t0 = hrUs();
  let tMeasure = 0;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const due = Math.min(total, Math.floor(((hrUs() - t0) / 1e6) * cfg.rate) + 1);
      while (sent < due) {
        const i = sent++;
        if (i === warm) tMeasure = hrUs();
        pending.push(a.publish(cfg.stream, payload(i, hrUs(), i < warm)).then(count));
      }
      if (sent >= total) {
        clearInterval(timer);
        resolve();
      }
    };
    const timer = setInterval(tick, 1);
    tick();
  });
  const t1 = hrUs();
  await Promise.all(pending);
  const tResolved = hrUs();
  await a.close();
  const measured = total - warm;
  await toParent({
    type: "result",
    sent: total,
    warm,
    nulls,
    achievedRate: tMeasure ? (measured / (t1 - tMeasure)) * 1e6 : NaN,
    seconds: (t1 - t0) / 1e6,
    /** How long the last publishes took to resolve after the last one was sent (a publisher that fell behind). */
    resolveLagMs: (tResolved - t1) / 1000,
  });
});
