import { randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { StreamsClient, type StreamMessage } from "../index.js";
import { blockedIn, closeRedis, commandCalls, connectedClient, connectionsPerNode, openRedis, type Checker, type TestServer } from "./helpers/fixture.js";
import { sleep, until } from "./helpers/until.js";

const fresh = (): string => `t:subscribe:${randomUUID()}`;

/** Collects the messages a subscription receives. */
function collector<T = unknown>(): { messages: StreamMessage<T>[]; callback: (m: StreamMessage<T>) => void } {
  const messages: StreamMessage<T>[] = [];
  return { messages, callback: (m) => void messages.push(m) };
}

function isStrictlyIncreasing(ids: string[]): boolean {
  const key = (id: string): [bigint, bigint] => {
    const [ms, seq] = id.split("-");
    return [BigInt(ms!), BigInt(seq!)];
  };
  for (let i = 1; i < ids.length; i++) {
    const [a1, a2] = key(ids[i - 1]!);
    const [b1, b2] = key(ids[i]!);
    if (!(b1 > a1 || (b1 === a1 && b2 > a2))) return false;
  }
  return true;
}


/** The longest blockMs accepted: an hour. */
const AN_HOUR = 3_600_000;


describe("subscribe (shared or private server)", () => {
  let server: TestServer;
  let redis: Checker;
  let client: StreamsClient;

  beforeAll(async () => {
    ({ server, redis } = await openRedis());
    client = await connectedClient(server.url);
  });

  afterAll(() => closeRedis(server, redis, client));

  // A failed test must not leave a subscription behind that changes the next test's counters.
  afterEach(() => {
    for (const stream of client.getStatus().subscriptions) client.unsubscribe(stream);
  });

  test("delivers 10,000 concurrently published messages in id order, equal to XRANGE", async () => {
    const stream = fresh();
    const { messages, callback } = collector<{ i: number }>();
    await client.subscribe(stream, callback);

    const total = 10_000;
    const chunk = 1_000;
    const published: (string | null)[] = [];
    for (let start = 0; start < total; start += chunk) {
      const ids = await Promise.all(
        Array.from({ length: chunk }, (_, k) => client.publishMessage(stream, { i: start + k })),
      );
      published.push(...ids);
    }
    expect(published.every((id) => typeof id === "string")).toBe(true);

    await until(() => messages.length >= total, 60_000, () => `received ${messages.length}/${total}`);
    await sleep(100); // nothing extra (duplicates) may follow
    expect(messages).toHaveLength(total);

    const received = messages.map((m) => m.id);
    expect(isStrictlyIncreasing(received)).toBe(true);
    const xrange = (await redis.xrange(stream, "-", "+")).map(([id]) => id);
    expect(received).toEqual(xrange);
    const iById = new Map(published.map((id, i) => [id!, i]));
    for (const m of messages) {
      expect(m.stream).toBe(stream);
      expect(m.data.i).toBe(iById.get(m.id));
    }
  });

  test('"$" has no race: a publish right after subscribe resolves is always delivered (200 times)', async () => {
    // A long-lived subscription keeps the reader blocked (blockMs 5000) between the iterations, so
    // every subscribe/unsubscribe must interrupt a running XREAD; a lost wake-up shows as a delivery
    // that waits for the 5 s block to end, beyond the 3 s allowed below.
    await client.subscribe(fresh(), () => {}, { blockMs: 5_000 });
    for (let i = 0; i < 200; i++) {
      const stream = fresh();
      // Every other stream already has history, which "$" must not replay.
      const old = i % 2 === 0 ? await redis.xadd(stream, "*", "data", '{"old":true}', "timestamp", "1") : null;
      const { messages, callback } = collector<{ i: number }>();
      await client.subscribe(stream, callback);
      const id = await client.publishMessage(stream, { i });
      await until(() => messages.length >= 1, 3_000, `iteration ${i}: message published after subscribe delivered`);
      expect(messages[0]!.id).toBe(id);
      expect(messages[0]!.id).not.toBe(old);
      expect(messages[0]!.data).toEqual({ i });
      client.unsubscribe(stream);
    }
  });

  test('startId "0" replays the existing history in order, then continues live', async () => {
    const stream = fresh();
    const history = await client.publishBatch(stream, [0, 1, 2, 3, 4].map((i) => ({ i })));
    const { messages, callback } = collector<{ i: number }>();
    await client.subscribe(stream, callback, { startId: "0" });
    await until(() => messages.length >= 5, 5_000, () => `history replayed (${messages.length}/5)`);
    expect(messages.map((m) => m.id)).toEqual(history);
    expect(messages.map((m) => m.data.i)).toEqual([0, 1, 2, 3, 4]);

    const live = await client.publishMessage(stream, { i: 5 });
    await until(() => messages.length >= 6, 5_000, "live message after replay");
    expect(messages[5]!.id).toBe(live);
    client.unsubscribe(stream);
  });

  test("a concrete startId delivers only the entries after it", async () => {
    const stream = fresh();
    const ids = await client.publishBatch(stream, [0, 1, 2, 3].map((i) => ({ i })));
    const { messages, callback } = collector<{ i: number }>();
    await client.subscribe(stream, callback, { startId: ids[1]! });
    await until(() => messages.length >= 2, 5_000, "entries after startId");
    await sleep(100); // nothing more may arrive (a wait for something NOT to happen)
    expect(messages.map((m) => m.id)).toEqual([ids[2], ids[3]]);
    client.unsubscribe(stream);
  });

  test("a message carries id, stream, parsed data and a numeric timestamp", async () => {
    const stream = fresh();
    const { messages, callback } = collector();
    await client.subscribe(stream, callback);
    const before = Date.now();
    const id = await client.publishMessage(stream, { hello: "world", n: [1, 2] });
    const after = Date.now();
    await until(() => messages.length >= 1, 5_000, "message delivered");
    const m = messages[0]!;
    expect(m.id).toBe(id);
    expect(m.stream).toBe(stream);
    expect(m.data).toEqual({ hello: "world", n: [1, 2] });
    expect(typeof m.timestamp).toBe("number");
    expect(m.timestamp).toBeGreaterThanOrEqual(before);
    expect(m.timestamp).toBeLessThanOrEqual(after);
    client.unsubscribe(stream);
  });

  test("unsubscribe: nothing is delivered after it returns, and status stops listing it", async () => {
    const stream = fresh();
    const { messages, callback } = collector();
    await client.subscribe(stream, callback);
    expect(client.getStatus().subscriptions).toContain(stream);
    await client.publishMessage(stream, { n: 1 });
    await until(() => messages.length >= 1, 5_000, "first message delivered");

    client.unsubscribe(stream);
    expect(client.getStatus().subscriptions).not.toContain(stream);
    await client.publishBatch(stream, [{ n: 2 }, { n: 3 }, { n: 4 }]);
    expect(await redis.xlen(stream)).toBe(4);
    await sleep(300); // nothing may be delivered after unsubscribe (a wait for something NOT to happen)
    expect(messages).toHaveLength(1);
  });

  test("one callback at a time: an async callback is awaited before the next message", async () => {
    const stream = fresh();
    let inFlight = 0;
    let maxInFlight = 0;
    const seen: number[] = [];
    await client.subscribe<{ i: number }>(stream, async (m) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await sleep(5); // simulated work
      seen.push(m.data.i);
      inFlight--;
    });
    const n = 30;
    await client.publishBatch(stream, Array.from({ length: n }, (_, i) => ({ i })));
    await until(() => seen.length >= n, 10_000, () => `async callbacks completed (${seen.length}/${n})`);
    expect(maxInFlight).toBe(1);
    expect(seen).toEqual(Array.from({ length: n }, (_, i) => i));
    client.unsubscribe(stream);
  });

  test("a callback that throws synchronously is counted and delivery goes on", async () => {
    const stream = fresh();
    const before = client.getStatus().counters.callbackErrors;
    const seen: number[] = [];
    await client.subscribe<{ i: number }>(stream, (m) => {
      seen.push(m.data.i);
      if (m.data.i === 1) throw new Error("sync boom");
    });
    await client.publishBatch(stream, [0, 1, 2, 3].map((i) => ({ i })));
    await until(() => seen.length >= 4, 5_000, () => `all messages seen (${seen.length}/4)`);
    expect(seen).toEqual([0, 1, 2, 3]);
    await until(() => client.getStatus().counters.callbackErrors >= before + 1, 2_000, "callbackErrors counted");
    expect(client.getStatus().counters.callbackErrors).toBe(before + 1);
    // Still alive after the error.
    await client.publishMessage(stream, { i: 4 });
    await until(() => seen.length >= 5, 5_000, "message after the error");
    client.unsubscribe(stream);
  });

  test("a callback that rejects is counted and delivery goes on", async () => {
    const stream = fresh();
    const before = client.getStatus().counters.callbackErrors;
    const seen: number[] = [];
    await client.subscribe<{ i: number }>(stream, async (m) => {
      seen.push(m.data.i);
      await sleep(1); // simulated work
      if (m.data.i === 0 || m.data.i === 2) throw new Error("async boom");
    });
    await client.publishBatch(stream, [0, 1, 2, 3].map((i) => ({ i })));
    await until(() => seen.length >= 4, 5_000, () => `all messages seen (${seen.length}/4)`);
    expect(seen).toEqual([0, 1, 2, 3]);
    await until(() => client.getStatus().counters.callbackErrors >= before + 2, 2_000, "callbackErrors counted");
    expect(client.getStatus().counters.callbackErrors).toBe(before + 2);
    client.unsubscribe(stream);
  });

  test("two subscriptions on one stream each receive every message; unsubscribe removes both", async () => {
    const stream = fresh();
    const a = collector();
    const b = collector();
    await client.subscribe(stream, a.callback);
    await client.subscribe(stream, b.callback);
    const ids = await client.publishBatch(stream, [1, 2, 3].map((n) => ({ n })));
    await until(() => a.messages.length >= 3 && b.messages.length >= 3, 5_000, "both subscriptions received 3");
    await sleep(100); // nothing more may arrive (a wait for something NOT to happen)
    expect(a.messages.map((m) => m.id)).toEqual(ids);
    expect(b.messages.map((m) => m.id)).toEqual(ids);

    client.unsubscribe(stream);
    expect(client.getStatus().subscriptions).not.toContain(stream);
    await client.publishMessage(stream, { n: 4 });
    await sleep(200); // nothing may be delivered after unsubscribe (a wait for something NOT to happen)
    expect(a.messages).toHaveLength(3);
    expect(b.messages).toHaveLength(3);
  });

  test("publish and delivery counters increase", async () => {
    const stream = fresh();
    const before = client.getStatus().counters;
    const { messages, callback } = collector();
    await client.subscribe(stream, callback);
    await client.publishBatch(stream, [1, 2]);
    await client.publishMessage(stream, 3);
    await until(() => messages.length >= 3, 5_000, "3 delivered");
    await until(() => client.getStatus().counters.delivered >= before.delivered + 3, 2_000, "delivered counter");
    const after = client.getStatus().counters;
    expect(after.published).toBe(before.published + 3);
    expect(after.delivered).toBe(before.delivered + 3);
    client.unsubscribe(stream);
  });

  test("rejects a non-function callback and an empty stream name with ERR_INVALID_ARG", async () => {
    const subscribe = client.subscribe.bind(client) as unknown as (s: unknown, cb: unknown, o?: unknown) => Promise<void>;
    await expect(Promise.resolve().then(() => subscribe(fresh(), "not a function"))).rejects.toMatchObject({
      code: "ERR_INVALID_ARG",
    });
    await expect(Promise.resolve().then(() => subscribe("", () => {}))).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
  });
});

describe("subscribe (private server or cluster: connection accounting and blocked reads)", () => {
  let server: TestServer;
  let redis: Checker;
  /** Connections blocked in XREAD (on all nodes of a cluster together). */
  const blockedInXread = (): Promise<number> => blockedIn(server, "xread");

  beforeAll(async () => {
    ({ server, redis } = await openRedis({ private: true }));
  });

  afterAll(() => closeRedis(server, redis));

  // Connections of a client disconnected by the previous test close asynchronously on the server;
  // wait until only the checker's (and the fixture's) are left so that counts and "blocked"
  // baselines belong to this test.
  beforeEach(async () => {
    await until(async () => (await connectionsPerNode(server)).every((n) => n === 0), 5_000, "only the checker's connections left on the nodes");
  });

  test("50 subscriptions on one client all receive their message over at most 3 connections (per node)", async () => {
    const client = new StreamsClient({ redisUrl: server.url, enableAutoTrim: false, logLevel: "error" });
    try {
      await client.connect();
      const streams = Array.from({ length: 50 }, fresh);
      const got = new Map<string, StreamMessage[]>(streams.map((s) => [s, []]));
      for (const s of streams) await client.subscribe(s, (m) => void got.get(s)!.push(m));
      expect([...client.getStatus().subscriptions].sort()).toEqual([...streams].sort());

      const ids = await Promise.all(streams.map((s) => client.publishMessage(s, { s })));
      await until(
        () => streams.every((s) => got.get(s)!.length >= 1),
        10_000,
        () => `${streams.filter((s) => got.get(s)!.length >= 1).length}/50 subscriptions delivered`,
      );
      streams.forEach((s, i) => {
        expect(got.get(s)!.map((m) => m.id)).toEqual([ids[i]]);
        expect(got.get(s)![0]!.data).toEqual({ s });
      });

      // One server: the reader and the command connection(s). A cluster: the same on each
      // master (its reader and the command connection to it); 50 random streams have keys on
      // all three.
      const used = await connectionsPerNode(server);
      expect(used.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(1);
      for (const n of used) expect(n).toBeLessThanOrEqual(3);
    } finally {
      await client.disconnect();
    }
  });

  // The reads below block for an hour (the longest blockMs): a change that did not wake the
  // reader could only take effect when that BLOCK ended, long after until()'s deadline.
  test("subscribe takes effect while the reader is blocked for an hour", async () => {
    const blockedBefore = await blockedInXread();
    const client = new StreamsClient({ redisUrl: server.url, enableAutoTrim: false, logLevel: "error" });
    try {
      await client.connect();
      const a = collector();
      await client.subscribe(fresh(), a.callback, { blockMs: AN_HOUR });
      await until(async () => (await blockedInXread()) > blockedBefore, 5_000, "reader blocked in XREAD on stream A");

      const streamB = fresh();
      const b = collector();
      await client.subscribe(streamB, b.callback, { blockMs: AN_HOUR });
      const id = await client.publishMessage(streamB, { b: 1 });
      await until(() => b.messages.length >= 1, 10_000, "stream B delivered");
      expect(b.messages[0]!.id).toBe(id);
      expect(a.messages).toHaveLength(0);
    } finally {
      await client.disconnect();
    }
  });

  test("unsubscribe while the reader is blocked for an hour: the other stream still delivers, the unsubscribed one never", async () => {
    const blockedBefore = await blockedInXread();
    const client = new StreamsClient({ redisUrl: server.url, enableAutoTrim: false, logLevel: "error" });
    try {
      await client.connect();
      const streamA = fresh();
      const streamB = fresh();
      const a = collector();
      const b = collector();
      await client.subscribe(streamA, a.callback, { blockMs: AN_HOUR });
      await client.subscribe(streamB, b.callback, { blockMs: AN_HOUR });
      await until(async () => (await blockedInXread()) > blockedBefore, 5_000, "reader blocked in XREAD");

      client.unsubscribe(streamA);
      // B still works (the reader was woken and re-planned), A no longer delivers.
      await client.publishMessage(streamA, { a: 1 });
      const idB = await client.publishMessage(streamB, { b: 1 });
      await until(() => b.messages.length >= 1, 10_000, "stream B delivered");
      expect(b.messages[0]!.id).toBe(idB);
      await sleep(200); // A's message must NOT arrive (a wait for something not to happen)
      expect(a.messages).toHaveLength(0);
    } finally {
      await client.disconnect();
    }
  });

  test("publish is not delayed by a blocked read", async () => {
    const blockedBefore = await blockedInXread();
    const client = new StreamsClient({ redisUrl: server.url, enableAutoTrim: false, logLevel: "error" });
    try {
      await client.connect();
      const idle = fresh();
      const { messages, callback } = collector();
      await client.subscribe(idle, callback, { blockMs: AN_HOUR });
      await until(async () => (await blockedInXread()) > blockedBefore, 5_000, "reader blocked in XREAD");

      // Queued behind the hour-long read, these would not settle within the test's timeout.
      const id = await client.publishMessage(fresh(), { quick: true });
      expect(id).toMatch(/^\d+-\d+$/);
      const ids = await client.publishBatch(fresh(), [1, 2, 3]);
      expect(ids).toHaveLength(3);
      expect(ids.every((x) => typeof x === "string")).toBe(true);

      // The blocked subscription still works.
      const own = await client.publishMessage(idle, { own: true });
      await until(() => messages.length >= 1, 5_000, "idle stream delivered");
      expect(messages[0]!.id).toBe(own);
    } finally {
      await client.disconnect();
    }
  });
});

describe("a startId beyond the stream's end (private server)", () => {
  let server: TestServer;
  let redis: Checker;
  let client: StreamsClient;

  beforeAll(async () => {
    ({ server, redis } = await openRedis({ private: true }));
    client = await connectedClient(server.url);
  });

  afterAll(() => closeRedis(server, redis, client));

  afterEach(() => {
    for (const stream of client.getStatus().subscriptions) client.unsubscribe(stream);
  });

  // The ids are explicit, so no clock is waited for: 60 s behind the start id the old code took
  // the stream for a recreated one (history replayed from 0-0), 5 s behind for one that lost its
  // tail in a failover (resumed after its last entry, below the start id).
  const T = 1_000_000_000_000;
  test.each([60_000, 5_000])("a start id %i ms beyond the last entry delivers only later entries", async (behindMs) => {
    const stream = fresh();
    for (let k = 0; k < 5; k++) await redis.xadd(stream, `${T - behindMs + k}-0`, "data", String(k));
    const before = client.getStatus().counters;
    const checksBefore = await commandCalls(server, "xinfo\\|stream");
    const { messages, callback } = collector();
    await client.subscribe(stream, callback, { startId: `${T}-0`, blockMs: 50 });
    // Idle BLOCKs end and the reader checks the position against XINFO STREAM (two calls: one
    // may still belong to the previous test's plan); entries added afterwards are read from
    // the position those checks left.
    await until(async () => (await commandCalls(server, "xinfo\\|stream")) >= checksBefore + 2, 5_000, "idle position checks");
    await redis.xadd(stream, `${T - 1_000}-0`, "data", '"below the start id"');
    const after = await redis.xadd(stream, `${T + 1_000}-0`, "data", '"after the start id"');
    await until(() => messages.length >= 1, 5_000, "the entry after the start id");
    expect(messages.map((m) => [m.id, m.data])).toEqual([[after, "after the start id"]]);
    await sleep(200);
    expect(messages).toHaveLength(1);
    const counters = client.getStatus().counters;
    expect([counters.streamResets - before.streamResets, counters.gaps - before.gaps]).toEqual([0, 0]);
  });
});
