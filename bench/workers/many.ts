// Scenario 8: one process holding `subs` subscriptions of ONE stream (the "thousand open tabs"
// case). Every subscription counts what it gets; the process reports deliveries/s and the CPU
// time it spent per delivery (process.cpuUsage(): every thread — the JS thread, libuv, the
// addon's tokio worker) from the first delivery to the last.
import { makeAdapter, type ImplName, type Msg } from "../lib/impls.js";
import { fromParent, hrUs, runWorker, sleep, toParent, workerConfig } from "../lib/util.js";

interface Cfg {
  impl: ImplName;
  url: string;
  stream: string;
  subs: number;
  expected: number;
  idleMs: number;
}

runWorker(async () => {
  const cfg = workerConfig<Cfg>();
  const a = await makeAdapter(cfg.impl, cfg.url);
  await a.connect();
  const total = cfg.subs * cfg.expected;
  let delivered = 0;
  let outOfOrder = 0;
  let firstUs = 0;
  let lastUs = 0;
  let cpu0: NodeJS.CpuUsage | null = null;
  let done!: () => void;
  const allIn = new Promise<void>((r) => (done = r));
  for (let i = 0; i < cfg.subs; i++) {
    let last = -1;
    await a.subscribe(cfg.stream, (m: Msg) => {
      if (delivered === 0) {
        firstUs = hrUs();
        cpu0 = process.cpuUsage();
      }
      const n = (m.data as { n: number }).n;
      if (n <= last) outOfOrder++;
      last = n;
      if (++delivered === total) {
        lastUs = hrUs();
        done();
      }
    });
  }
  await sleep(200); // let the readers settle
  await toParent({ type: "ready" });

  let published = false;
  void fromParent("published").then(() => (published = true));
  const stalled = (async () => {
    let seen = -1;
    let since = Date.now();
    for (;;) {
      await sleep(100);
      if (delivered !== seen) {
        seen = delivered;
        since = Date.now();
      } else if (published && Date.now() - since > cfg.idleMs) return;
    }
  })();
  await Promise.race([allIn, stalled]);
  if (lastUs === 0) lastUs = hrUs();
  const cpu = process.cpuUsage(cpu0 ?? undefined);
  const rssMB = process.memoryUsage().rss / 1024 / 1024;
  const counters = a.counters();
  await a.close();
  const seconds = (lastUs - firstUs) / 1e6;
  await toParent({
    type: "result",
    delivered,
    lost: total - delivered,
    outOfOrder,
    seconds,
    deliveriesPerSec: delivered / seconds,
    cpuUsPerDelivery: (cpu.user + cpu.system) / delivered,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    rssMB,
    counters,
  });
});
