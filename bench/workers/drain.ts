// Scenario 4, in a fresh process per run: `consumers` consumers of one group in this process
// drain `n` pre-loaded entries with auto-ack. The clock runs from the first consumeFromGroup
// call until every entry was delivered and nothing is pending any more (XPENDING = 0).
import Redis from "ioredis";
import { makeAdapter, type ImplName, type Msg } from "../lib/impls.js";
import { hrUs, runWorker, sleep, toParent, workerConfig } from "../lib/util.js";

interface Cfg {
  impl: ImplName;
  url: string;
  stream: string;
  group: string;
  consumers: number;
  n: number;
  timeoutMs: number;
}

runWorker(async () => {
  const cfg = workerConfig<Cfg>();
  const check = new Redis(cfg.url);
  const a = await makeAdapter(cfg.impl, cfg.url);
  await a.connect();
  await a.createGroup(cfg.stream, cfg.group, "0");

  const seen = new Uint8Array(cfg.n);
  let delivered = 0;
  let dups = 0;
  const perConsumer = new Array<number>(cfg.consumers).fill(0);
  let allIn!: () => void;
  const done = new Promise<void>((r) => (allIn = r));

  const t0 = hrUs();
  for (let c = 0; c < cfg.consumers; c++) {
    await a.consume(cfg.stream, cfg.group, `c${c}`, (m: Msg) => {
      const n = (m.data as { n: number }).n;
      if (seen[n]) dups++;
      seen[n] = 1;
      perConsumer[c]!++;
      if (++delivered >= cfg.n) allIn();
    });
  }
  const timedOut = await Promise.race([done.then(() => false), sleep(cfg.timeoutMs).then(() => true)]);
  const tDelivered = hrUs();
  let pending = -1;
  const deadline = Date.now() + 10_000;
  while (!timedOut && Date.now() < deadline) {
    const summary = (await check.xpending(cfg.stream, cfg.group)) as [number, ...unknown[]];
    pending = Number(summary[0]);
    if (pending === 0) break;
    await sleep(2);
  }
  const t1 = hrUs();
  const counters = a.counters();
  await a.close();
  check.disconnect();
  let distinct = 0;
  for (let i = 0; i < seen.length; i++) distinct += seen[i]!;
  await toParent({
    type: "result",
    timedOut,
    msgsPerSec: (distinct / (t1 - t0)) * 1e6,
    seconds: (t1 - t0) / 1e6,
    deliverSeconds: (tDelivered - t0) / 1e6,
    delivered,
    distinct,
    dups,
    pending,
    perConsumer,
    counters,
  });
});
