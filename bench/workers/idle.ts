// Scenario 7: CPU of a process holding `subs` idle subscriptions (nothing is published), over
// measureMs after a settle time. process.cpuUsage() counts every thread of the process
// (the JS thread, libuv, the addon's tokio threads, glide's core).
import { makeAdapter, type ImplName } from "../lib/impls.js";
import { runWorker, sleep, toParent, workerConfig } from "../lib/util.js";

interface Cfg {
  impl: ImplName;
  url: string;
  subs: number;
  settleMs: number;
  measureMs: number;
}

runWorker(async () => {
  const cfg = workerConfig<Cfg>();
  const a = await makeAdapter(cfg.impl, cfg.url);
  await a.connect();
  for (let i = 0; i < cfg.subs; i++) await a.subscribe(`idle:${cfg.impl}:${i}`, () => {});
  await sleep(cfg.settleMs);
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await sleep(cfg.measureMs);
  const cpu = process.cpuUsage(c0);
  const wallUs = Number((process.hrtime.bigint() - t0) / 1000n);
  const rssMB = process.memoryUsage().rss / 1024 / 1024;
  const counters = a.counters();
  await a.close();
  await toParent({
    type: "result",
    cpuPercent: ((cpu.user + cpu.system) / wallUs) * 100,
    userMs: cpu.user / 1000,
    systemMs: cpu.system / 1000,
    wallMs: wallUs / 1000,
    rssMB,
    counters,
  });
});
