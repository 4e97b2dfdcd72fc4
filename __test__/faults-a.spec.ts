// Fault injection, part A: real redis-server processes killed, stopped and restarted, and a
// TCP proxy (helpers/proxy.ts) that cuts or silently stalls connections. Every scenario checks
// the data (ids, counts, order) against what Redis holds afterwards.
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterEach, expect, test } from "vitest";
import { setLogger, StreamsClient, type StreamMessage, type StreamsClientConfig } from "../index.js";
import { startProxy, type Proxy } from "./helpers/proxy.js";
import { startRedis, type RedisServer } from "./helpers/redis-server.js";
import { sleep, until } from "./helpers/until.js";

const fresh = (): string => `t:faults-a:${randomUUID()}`;

/** Short timeouts and back-off so that faults are detected and healed within the test budget. */
const fast = {
  commandTimeoutMs: 500,
  connectTimeoutMs: 500,
  reconnectInitialDelayMs: 20,
  reconnectMaxDelayMs: 200,
  enableAutoTrim: false,
  logLevel: "error",
} as const satisfies StreamsClientConfig;

// ---------------------------------------------------------------------------------------------
// Cleanup: everything a test starts is registered here and torn down after it, last first,
// even when the test failed. Each step is bounded so that one stuck step cannot hang the file.

const cleanups: Array<{ what: string; run: () => unknown }> = [];
const onCleanup = (what: string, run: () => unknown): void => void cleanups.push({ what, run });

afterEach(async () => {
  const errors: string[] = [];
  while (cleanups.length > 0) {
    const { what, run } = cleanups.pop()!;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        Promise.resolve().then(run),
        new Promise((_, reject) => (timer = setTimeout(() => reject(new Error("timed out after 10 s")), 10_000))),
      ]);
    } catch (err) {
      errors.push(`${what}: ${String(err)}`);
    } finally {
      clearTimeout(timer);
    }
  }
  if (errors.length > 0) throw new Error(`cleanup failed:\n${errors.join("\n")}`);
});

async function privateRedis(args: string[] = []): Promise<RedisServer> {
  const server = await startRedis({ private: true, args });
  onCleanup("redis-server", () => server.stop());
  return server;
}

async function proxyTo(server: RedisServer): Promise<Proxy> {
  const proxy = await startProxy(server.port);
  onCleanup("proxy", () => proxy.close());
  return proxy;
}

/** A plain ioredis connection straight to the server, for seeding and checking. */
function checker(server: RedisServer): Redis {
  const redis = new Redis(server.url, { maxRetriesPerRequest: null, retryStrategy: () => 50 });
  redis.on("error", () => {}); // expected while the server is down
  onCleanup("checker", () => redis.disconnect());
  return redis;
}

async function client(config: StreamsClientConfig): Promise<StreamsClient> {
  const c = new StreamsClient(config);
  onCleanup("client", () => c.disconnect());
  await c.connect();
  return c;
}

/** Appends `{ n }` entries in the wire format with ioredis; returns their ids in order. */
async function seed(redis: Redis, stream: string, from: number, n: number): Promise<string[]> {
  const pipe = redis.pipeline();
  for (let i = from; i < from + n; i++) pipe.xadd(stream, "*", "data", JSON.stringify({ n: i }), "timestamp", String(Date.now()));
  return (await pipe.exec())!.map(([err, id]) => {
    if (err) throw err;
    return id as string;
  });
}

/** Every entry of `stream`: ids in order, and the parsed `data` field by id. */
async function entries(redis: Redis, stream: string): Promise<{ ids: string[]; data: Map<string, unknown> }> {
  const rows = await redis.xrange(stream, "-", "+");
  const data = new Map<string, unknown>();
  for (const [id, fields] of rows) {
    const at = fields.indexOf("data");
    data.set(id, at >= 0 ? JSON.parse(fields[at + 1]!) : undefined);
  }
  return { ids: rows.map(([id]) => id), data };
}

async function pendingCount(redis: Redis, stream: string, group: string): Promise<number> {
  const [count] = (await redis.xpending(stream, group)) as [number];
  return Number(count);
}

async function lastDeliveredId(redis: Redis, stream: string, group: string): Promise<string> {
  const groups = (await redis.xinfo("GROUPS", stream)) as unknown[][];
  for (const g of groups) {
    const fields = new Map<string, unknown>();
    for (let i = 0; i + 1 < g.length; i += 2) fields.set(String(g[i]), g[i + 1]);
    if (fields.get("name") === group) return String(fields.get("last-delivered-id"));
  }
  throw new Error(`group ${group} not found on ${stream}`);
}

/** The pid of the redis-server process (for SIGSTOP/SIGCONT: RedisServer.kill waits for an exit). */
async function serverPid(redis: Redis): Promise<number> {
  const match = /process_id:(\d+)/.exec(await redis.info("server"));
  if (!match) throw new Error("INFO server has no process_id");
  return Number(match[1]);
}

const duplicatesOf = (ids: string[]): number => ids.length - new Set(ids).size;
const reconnectsOf = (...clients: StreamsClient[]): number =>
  clients.reduce((sum, c) => sum + c.getStatus().counters.reconnects, 0);

/** Asserts that `received` is exactly `expected` (same ids, same order), with a short diff on failure. */
function expectSameIds(received: string[], expected: string[], what: string): void {
  if (received.length === expected.length && received.every((id, i) => id === expected[i])) return;
  const want = new Set(expected);
  const got = new Set(received);
  const missing = expected.filter((id) => !got.has(id));
  const extra = received.filter((id) => !want.has(id));
  const firstDiff = received.findIndex((id, i) => id !== expected[i]);
  throw new Error(
    `${what}: received ${received.length}, expected ${expected.length}; duplicates ${duplicatesOf(received)}, ` +
      `missing ${missing.length} (first ${missing.slice(0, 3).join(",")}), extra ${extra.length} (first ${extra.slice(0, 3).join(",")}), ` +
      `first difference at index ${firstDiff}`,
  );
}

// ---------------------------------------------------------------------------------------------

test("1. SIGKILL + restart (appendfsync always) during 5,000 paced publishes: nothing acknowledged is lost, the subscriber sees it all in order", async () => {
  const server = await privateRedis(["--appendonly", "yes", "--appendfsync", "always"]);
  const redis = checker(server);
  const stream = fresh();
  const publisher = await client({ redisUrl: server.url, ...fast });
  const subscriber = await client({ redisUrl: server.url, ...fast });

  // The stream does not exist yet: the subscription point is its very beginning.
  const received: string[] = [];
  await subscriber.subscribe(stream, (m) => void received.push(m.id), { blockMs: 1000, count: 200 });

  const TOTAL = 5_000;
  const IN_FLIGHT = 4;
  const results: Array<string | null> = new Array<string | null>(TOTAL).fill(null);
  let slowest = 0;
  let next = 0;
  const t0 = Date.now();
  // A steady 1 publish/ms, at most IN_FLIGHT outstanding, each awaited.
  const worker = async (): Promise<void> => {
    for (let i = next++; i < TOTAL; i = next++) {
      const wait = t0 + i - Date.now();
      if (wait > 0) await sleep(wait); // paces the publishes (1 per ms)
      const started = Date.now();
      results[i] = await publisher.publishMessage(stream, { n: i });
      slowest = Math.max(slowest, Date.now() - started);
    }
  };
  const outage = { from: 0, to: 0 };
  const chaos = async (): Promise<void> => {
    await until(() => next >= 2_000, 15_000, "2,000 publishes started");
    outage.from = next;
    await server.kill("SIGKILL");
    await sleep(300); // the outage itself
    await server.restart();
    outage.to = next;
  };
  await Promise.all([...Array.from({ length: IN_FLIGHT }, worker), chaos()]);
  const elapsed = Date.now() - t0;

  const ok = results.filter((id): id is string => id !== null);
  const nulls = TOTAL - ok.length;
  const stored = await entries(redis, stream);
  await until(() => received.length >= stored.ids.length, 15_000, () => `subscriber received ${received.length}/${stored.ids.length}`);
  await sleep(200); // nothing more may arrive (no duplicates late)
  const counters = publisher.getStatus().counters;
  console.log(
    `[1] published ${TOTAL} in ${elapsed} ms: ok ${ok.length}, null ${nulls} (publishFailed ${counters.publishFailed}), ` +
      `killed around #${outage.from}, restarted by #${outage.to}; in stream ${stored.ids.length}; subscriber received ${received.length}, ` +
      `duplicates ${duplicatesOf(received)}; reconnects pub ${counters.reconnects} sub ${subscriber.getStatus().counters.reconnects}; slowest publish ${slowest} ms`,
  );

  // Every acknowledged publish survived the kill, with its own payload.
  for (let i = 0; i < TOTAL; i++) {
    const id = results[i];
    if (id !== null) expect(stored.data.get(id), `entry ${id} of publish #${i}`).toEqual({ n: i });
  }
  // The outage was real and reported as nulls (never as a rejection). Every publish settled
  // (Promise.all above), so none hung on the dead connection; how long each took is only logged.
  expect(nulls).toBeGreaterThan(0);
  expect(counters.publishFailed).toBe(nulls);
  // Entries whose reply was lost in the kill may exist too, but never more than were sent.
  expect(stored.ids.length).toBeGreaterThanOrEqual(ok.length);
  expect(stored.ids.length).toBeLessThanOrEqual(TOTAL);
  // The subscriber saw the whole stream, in order, each once.
  expectSameIds(received, stored.ids, "subscriber");
  expect(subscriber.getStatus().counters.reconnects).toBeGreaterThanOrEqual(1);
  expect(counters.reconnects).toBeGreaterThanOrEqual(1);
}, 60_000);

test("2. 20 proxy cuts during a two-consumer group run of 5,000 entries: each handled at least once, nothing left pending", async () => {
  const server = await privateRedis();
  const proxy = await proxyTo(server);
  const redis = checker(server);
  const stream = fresh();
  const ids = await seed(redis, stream, 0, 5_000);
  await redis.xgroup("CREATE", stream, "g", "0");

  const handled: string[] = [];
  const consumers = [await client({ redisUrl: proxy.url(), ...fast }), await client({ redisUrl: proxy.url(), ...fast })];
  const t0 = Date.now();
  for (const [i, c] of consumers.entries()) {
    await c.consumeFromGroup(
      stream,
      "g",
      `c${i}`,
      async (m: StreamMessage) => {
        handled.push(m.id);
        await sleep(1); // paces the run (~2,500 per consumer) over the 3 s of cuts
      },
      { count: 50, blockMs: 500 },
    );
  }

  let cuts = 0;
  const handledAtCut: number[] = [];
  for (; cuts < 20; cuts++) {
    await sleep(150); // paces the cuts over the run
    handledAtCut.push(handled.length);
    proxy.cutAll();
  }

  const all = new Set(ids);
  const missing = (): number => {
    const seen = new Set(handled);
    let n = 0;
    for (const id of all) if (!seen.has(id)) n++;
    return n;
  };
  await until(() => missing() === 0, 30_000, () => `all handled (missing ${missing()})`);
  await until(async () => (await pendingCount(redis, stream, "g")) === 0, 15_000, "XPENDING 0");
  const elapsed = Date.now() - t0;
  const unique = new Set(handled).size;
  console.log(
    `[2] ${cuts} cuts; handled ${handled.length} (unique ${unique}, duplicates ${handled.length - unique}) of ${ids.length} in ${elapsed} ms; ` +
      `handled at cuts ${handledAtCut.join(",")}; reconnects ${reconnectsOf(...consumers)}; acked ${consumers.map((c) => c.getStatus().counters.acked).join("+")}`,
  );

  expect(unique).toBe(ids.length);
  expect(handled.every((id) => all.has(id))).toBe(true);
  expect(await lastDeliveredId(redis, stream, "g")).toBe(ids.at(-1));
  // The cuts happened while entries were being handled, and the clients noticed them.
  expect(handledAtCut[9]!).toBeLessThan(ids.length);
  expect(reconnectsOf(...consumers)).toBeGreaterThanOrEqual(cuts);
}, 60_000);

test("3. SIGSTOP: publishes resolve null while Redis is stopped, then recover; the subscriber gets everything", async () => {
  const server = await privateRedis();
  const redis = checker(server);
  const pid = await serverPid(redis);
  const stream = fresh();
  const publisher = await client({ redisUrl: server.url, ...fast });
  const subscriber = await client({ redisUrl: server.url, ...fast });
  const received: string[] = [];
  await subscriber.subscribe(stream, (m) => void received.push(m.id), { blockMs: 500 });

  const before: string[] = [];
  for (let n = 0; n < 5; n++) before.push((await publisher.publishMessage(stream, { n }))!);
  await until(() => received.length >= 5, 5_000, "messages before the stop");
  expect(received).toEqual(before);
  const failedBefore = publisher.getStatus().counters.publishFailed;

  // Stopped last, so it is resumed first: the other cleanups need a live server.
  let stopped = true;
  process.kill(pid, "SIGSTOP");
  onCleanup("SIGCONT", () => stopped && process.kill(pid, "SIGCONT"));
  const states: string[] = [];
  const latencies: number[] = [];
  let duringStop = 0;
  let nullsDuringStop = 0;
  // Ten publishes one after the other, each awaited: all of them settle while the server is
  // still stopped (SIGCONT only comes after the loop), which only the command timeout allows.
  for (let n = 100; n < 110; n++) {
    const started = Date.now();
    const id = await publisher.publishMessage(stream, { n });
    latencies.push(Date.now() - started);
    duringStop++;
    if (id === null) nullsDuringStop++;
    states.push(publisher.getStatus().connection.state);
  }
  const failedDuring = publisher.getStatus().counters.publishFailed - failedBefore;
  process.kill(pid, "SIGCONT");
  stopped = false;

  const tRecover = Date.now();
  let firstAfter: string | null = null;
  await until(async () => (firstAfter = await publisher.publishMessage(stream, { n: 20_000 })) !== null, 15_000, "a publish succeeds after SIGCONT");
  const recoveredIn = Date.now() - tRecover;
  const after: string[] = [firstAfter!];
  for (let n = 20_001; n < 20_020; n++) {
    const id = await publisher.publishMessage(stream, { n });
    expect(id, "publish after the recovery").not.toBeNull();
    after.push(id!);
  }
  const stored = await entries(redis, stream);
  await until(() => received.length >= stored.ids.length, 15_000, () => `subscriber received ${received.length}/${stored.ids.length}`);
  await sleep(200); // nothing more may arrive (a wait for something NOT to happen)
  console.log(
    `[3] during the stop: ${duringStop} publishes, ${nullsDuringStop} null (publishFailed +${failedDuring}), slowest ${Math.max(...latencies)} ms, ` +
      `states seen ${states.join("/")}; recovered in ${recoveredIn} ms; in stream ${stored.ids.length}; subscriber received ${received.length}, ` +
      `reconnects pub ${publisher.getStatus().counters.reconnects} sub ${subscriber.getStatus().counters.reconnects}`,
  );

  expect(duringStop).toBe(10);
  expect(nullsDuringStop).toBe(duringStop);
  // Three command timeouts in a row (the third publish's at the latest) presume the
  // connection dead: from then on status says so, although no attempt to reconnect has
  // finished yet.
  expect(states.slice(2), `state after each publish: ${states.join(",")}`).not.toContain("connected");
  expect(failedDuring).toBe(nullsDuringStop);
  // Everything published after the recovery is stored and delivered; the subscriber's view is
  // the whole stream (XADDs that timed out during the stop may have run on SIGCONT), in order.
  for (const id of after) expect(stored.ids).toContain(id);
  expectSameIds(received, stored.ids, "subscriber");
}, 60_000);

/**
 * Scenario 4: a subscriber reads 5 entries through the proxy, its link goes silent, 10 more are
 * added and then removed by `remove` directly on Redis; once the reader's watchdog reconnects,
 * the removed entries must be counted as a gap and later entries delivered.
 */
async function gapWhileDisconnected(label: string, remove: (redis: Redis, stream: string) => Promise<number>): Promise<void> {
  const server = await privateRedis();
  const proxy = await proxyTo(server);
  const redis = checker(server);
  const stream = fresh();
  const subscriber = await client({ redisUrl: proxy.url(), ...fast });
  const received: string[] = [];
  await subscriber.subscribe(stream, (m) => void received.push(m.id), { blockMs: 500 });

  const first = await seed(redis, stream, 0, 5);
  await until(() => received.length >= 5, 5_000, "first messages");
  const reconnectsBefore = subscriber.getStatus().counters.reconnects;

  proxy.stall(); // the reader's XREAD (and the command connection) go silent, without FIN
  const t0 = Date.now();
  const lost = await seed(redis, stream, 5, 10);
  const removed = await remove(redis, stream);
  // The reader comes back through the proxy (watchdog: 500 + 500 + 2000 ms).
  await until(() => subscriber.getStatus().counters.reconnects > reconnectsBefore, 10_000, "the reader reconnects");
  const reconnectedIn = Date.now() - t0;
  const later = await seed(redis, stream, 15, 5);
  await until(() => received.length >= 10, 10_000, () => `later messages (received ${received.length}/10)`);
  await sleep(200); // nothing more may arrive (a wait for something NOT to happen)
  const status = subscriber.getStatus();
  console.log(
    `[4${label}] removed ${removed} (${lost.length} never read); reader reconnected after ${reconnectedIn} ms; gaps ${status.counters.gaps}, ` +
      `streamResets ${status.counters.streamResets}, reconnects ${status.counters.reconnects - reconnectsBefore}; received ${received.length}`,
  );

  expectSameIds(received, [...first, ...later], "subscriber");
  expect(status.counters.streamResets).toBe(0);
  expect(status.counters.gaps, "gaps counted for the removed entries").toBe(1);
}

test("4a. entries XDELed while the reader's link is dead are reported as a gap; later messages still arrive", async () => {
  await gapWhileDisconnected("a", async (redis, stream) => {
    const unread = (await redis.xrange(stream, "-", "+")).slice(5).map(([id]) => id);
    return redis.xdel(stream, ...unread);
  });
}, 60_000);

test("4b. entries trimmed away (XTRIM MAXLEN 0) while the reader's link is dead are reported as a gap; later messages still arrive", async () => {
  await gapWhileDisconnected("b", async (redis, stream) => Number(await redis.xtrim(stream, "MAXLEN", 0)));
}, 60_000);

test("5. a silently stalled link (no FIN) is detected by the reader watchdog; nothing published during the stall is skipped", async () => {
  const server = await privateRedis();
  const proxy = await proxyTo(server);
  const redis = checker(server);
  const stream = fresh();
  const blockMs = 1000;
  // The watchdog logs a warn (with watchdog_ms) when a blocked read outlives its BLOCK time.
  const watchdog: Record<string, unknown>[] = [];
  setLogger((r) => {
    if ("watchdog_ms" in r) watchdog.push(r);
  });
  onCleanup("logger", () => setLogger(null));
  const subscriber = await client({ redisUrl: proxy.url(), ...fast, logLevel: "warn" });
  const received: string[] = [];
  await subscriber.subscribe(stream, (m) => void received.push(m.id), { blockMs });

  const before = await seed(redis, stream, 0, 3);
  await until(() => received.length >= 3, 5_000, "messages before the stall");
  const reconnectsBefore = subscriber.getStatus().counters.reconnects;

  proxy.stall(); // only the sockets open now; new connections go through
  const t0 = Date.now();
  const during: string[] = [];
  for (let n = 3; n < 23; n++) {
    during.push(...(await seed(redis, stream, n, 1)));
    await sleep(100); // a steady publisher over ~2 s of the stall
  }
  await until(() => watchdog.length > 0, 15_000, "the reader's watchdog fires");
  await until(() => subscriber.getStatus().counters.reconnects > reconnectsBefore, 15_000, "the reader reconnects");
  const detectedIn = Date.now() - t0;
  const after = await seed(redis, stream, 23, 10);
  const expected = [...before, ...during, ...after];
  await until(() => received.length >= expected.length, 10_000, () => `received ${received.length}/${expected.length}`);
  await sleep(200); // nothing more may arrive (a wait for something NOT to happen)
  const stored = await entries(redis, stream);
  console.log(
    `[5] stall detected and reconnected after ${detectedIn} ms (watchdog ${blockMs + fast.commandTimeoutMs + 2000} ms); ` +
      `published ${before.length}+${during.length}+${after.length}; received ${received.length}, duplicates ${duplicatesOf(received)}; ` +
      `reconnects ${subscriber.getStatus().counters.reconnects - reconnectsBefore}`,
  );

  expect(stored.ids).toEqual(expected);
  expectSameIds(received, expected, "subscriber");
  expect(subscriber.getStatus().counters.reconnects).toBeGreaterThanOrEqual(1);
  // Detected by the watchdog (its warn record), not by luck; how long it took is only logged.
  expect(watchdog[0]!.watchdog_ms as number).toBeGreaterThan(blockMs);
}, 60_000);

test("6. soak: 2 publishers, 2 subscribers and a 2-consumer group through a proxy that cuts at random for ~25 s", async () => {
  const server = await privateRedis();
  const proxy = await proxyTo(server);
  const redis = checker(server);
  const stream = fresh();
  await redis.xgroup("CREATE", stream, "g", "0", "MKSTREAM");
  const viaProxy = { redisUrl: proxy.url(), ...fast };

  // Subscribed while the stream is empty: every entry it will ever hold is after their start.
  const subscribers = [await client(viaProxy), await client(viaProxy)];
  const seen: string[][] = subscribers.map(() => []);
  for (const [i, s] of subscribers.entries()) await s.subscribe(stream, (m) => void seen[i]!.push(m.id), { blockMs: 500, count: 100 });

  const consumers = [await client(viaProxy), await client(viaProxy)];
  const handled: string[] = [];
  for (const [i, c] of consumers.entries()) {
    await c.consumeFromGroup(stream, "g", `c${i}`, (m: StreamMessage) => void handled.push(m.id), { count: 50, blockMs: 500 });
  }

  const publishers = [await client({ ...viaProxy, offlineBuffer: 1000 }), await client({ ...viaProxy, offlineBuffer: 1000 })];
  const CHAOS_MS = 25_000;
  const PER_PUBLISHER_MAX = 6_000;
  const deadline = Date.now() + CHAOS_MS;
  const sent: Array<{ p: number; s: number; id: Promise<string | null> }> = [];
  const publish = async (p: number): Promise<void> => {
    // Two publishes every 10 ms, not awaited: while disconnected they wait in the offline buffer.
    for (let s = 0; Date.now() < deadline && s < PER_PUBLISHER_MAX; s += 2) {
      for (const k of [s, s + 1]) sent.push({ p, s: k, id: publishers[p]!.publishMessage(stream, { p, s: k }) });
      await sleep(10); // paces the publishes
    }
  };
  let cuts = 0;
  const cutter = async (): Promise<void> => {
    for (;;) {
      await sleep(200 + Math.random() * 1300); // random time between cuts
      if (Date.now() >= deadline) return;
      proxy.cutAll();
      cuts++;
    }
  };
  await Promise.all([publish(0), publish(1), cutter()]);

  // Quiet period: every publish settles (parked ones once their client reconnected).
  let settled = false;
  const results = await Promise.race([
    Promise.all(sent.map((x) => x.id)).finally(() => (settled = true)),
    sleep(20_000).then(() => {
      throw new Error("publishes did not settle within 20 s after the chaos");
    }),
  ]);
  expect(settled).toBe(true);
  const ok = results.filter((id): id is string => id !== null);
  const stored = await entries(redis, stream);
  const all = new Set(stored.ids);
  await until(() => seen.every((ids) => ids.length >= stored.ids.length), 30_000, () => `subscribers ${seen.map((x) => x.length).join("/")} of ${stored.ids.length}`);
  const handledMissing = (): number => {
    const got = new Set(handled);
    return stored.ids.filter((id) => !got.has(id)).length;
  };
  await until(() => handledMissing() === 0, 30_000, () => `group missing ${handledMissing()}`);
  await until(async () => (await pendingCount(redis, stream, "g")) === 0, 15_000, "XPENDING 0");
  await sleep(200); // nothing more may arrive (a wait for something NOT to happen)

  // Entries written twice: a parked batch resent after its reply was lost in a cut.
  const payloads = new Map<string, number>();
  for (const d of stored.data.values()) {
    const key = JSON.stringify(d);
    payloads.set(key, (payloads.get(key) ?? 0) + 1);
  }
  const doubled = [...payloads.values()].filter((n) => n > 1).length;
  const nulls = results.length - ok.length;
  const uniqueHandled = new Set(handled).size;
  console.log(
    `[6] ${cuts} cuts over ${CHAOS_MS} ms; published ${results.length}: ok ${ok.length}, null ${nulls} ` +
      `(publishFailed ${publishers.map((p) => p.getStatus().counters.publishFailed).join("+")}); in stream ${stored.ids.length} ` +
      `(payloads stored twice ${doubled}); received per subscriber ${seen.map((x) => `${x.length} (dup ${duplicatesOf(x)})`).join(", ")}; ` +
      `group handled ${handled.length} (unique ${uniqueHandled}, duplicates ${handled.length - uniqueHandled}); ` +
      `reconnects pub ${reconnectsOf(...publishers)} sub ${reconnectsOf(...subscribers)} group ${reconnectsOf(...consumers)}`,
  );

  // Every acknowledged publish is stored with its payload.
  for (const [i, id] of results.entries()) {
    if (id !== null) expect(stored.data.get(id), `publish p${sent[i]!.p}#${sent[i]!.s}`).toEqual({ p: sent[i]!.p, s: sent[i]!.s });
  }
  expect(ok.length).toBeGreaterThan(results.length / 2);
  expect(new Set(ok).size).toBe(ok.length);
  // Each subscriber saw the whole stream, in order, each entry once.
  for (const [i, ids] of seen.entries()) expectSameIds(ids, stored.ids, `subscriber ${i}`);
  // The group handled every entry at least once, nothing else, and acknowledged everything.
  expect(uniqueHandled).toBe(stored.ids.length);
  expect(handled.every((id) => all.has(id))).toBe(true);
  expect(await lastDeliveredId(redis, stream, "g")).toBe(stored.ids.at(-1));
  expect(cuts).toBeGreaterThanOrEqual(10);
  expect(reconnectsOf(...subscribers)).toBeGreaterThanOrEqual(cuts);
}, 85_000);
