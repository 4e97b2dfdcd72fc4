// Scenario 9: a process subscribed to `subs` existing streams (`<prefix><i>`, one subscription
// each) that nothing publishes to. Handshake: "ready" once subscribed and settled; the parent
// snapshots the server's INFO commandstats and answers "go"; the worker measures its own CPU
// over measureMs and reports "result"; the parent snapshots again right away.
import { makeAdapter, type ImplName } from "../lib/impls.js";
import { fromParent, runWorker, sleep, toParent, workerConfig } from "../lib/util.js";

interface Cfg {
  impl: ImplName;
  url: string;
  prefix: string;
  subs: number;
  settleMs: number;
  measureMs: number;
}

/** Subscriptions started at once while setting up (the port opens a connection for each). */
const SUBSCRIBE_WINDOW = 200;

runWorker(async () => {
  const cfg = workerConfig<Cfg>();
  const a = await makeAdapter(cfg.impl, cfg.url);
  await a.connect();
  const t0 = Date.now();
  for (let from = 0; from < cfg.subs; from += SUBSCRIBE_WINDOW) {
    const to = Math.min(cfg.subs, from + SUBSCRIBE_WINDOW);
    const batch: Promise<void>[] = [];
    for (let i = from; i < to; i++) batch.push(a.subscribe(`${cfg.prefix}${i}`, () => {}));
    await Promise.all(batch);
  }
  const subscribeMs = Date.now() - t0;
  await sleep(cfg.settleMs);
  await toParent({ type: "ready", subscribeMs });
  await fromParent("go");
  const c0 = process.cpuUsage();
  const w0 = process.hrtime.bigint();
  await sleep(cfg.measureMs);
  const cpu = process.cpuUsage(c0);
  const wallUs = Number((process.hrtime.bigint() - w0) / 1000n);
  const rssMB = process.memoryUsage().rss / 1024 / 1024;
  await toParent({
    type: "result",
    cpuPercent: ((cpu.user + cpu.system) / wallUs) * 100,
    wallMs: wallUs / 1000,
    rssMB,
    subscribeMs,
  });
  await fromParent("close");
  await a.close();
});
