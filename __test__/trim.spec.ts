import { randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { setLogger, StreamsClient } from "../index.js";
import { clientPool, closeRedis, openRedis, unreachableUrl, type Checker, type TestServer } from "./helpers/fixture.js";
import { sleep, until } from "./helpers/until.js";

const fresh = (): string => `t:trim:${randomUUID()}`;

let server: TestServer;
let redis: Checker;
/** Every client a test created; afterEach disconnects them. */
const clients = clientPool(() => server.url, { logLevel: "warn" });
const connected = clients.connected;

beforeAll(async () => {
  ({ server, redis } = await openRedis());
});

afterEach(() => clients.disconnectAll());

afterAll(() => closeRedis(server, redis));

/** Appends `n` entries in the wire format with ioredis; returns their ids in order. */
async function seed(stream: string, n: number): Promise<string[]> {
  const pipe = redis.pipeline();
  for (let i = 0; i < n; i++) pipe.xadd(stream, "*", "data", JSON.stringify({ i }), "timestamp", String(Date.now()));
  const replies = (await pipe.exec())!;
  return replies.map(([err, id]) => {
    if (err) throw err;
    return id as string;
  });
}

const byId = (a: string, b: string): number => {
  const [a1, a2] = a.split("-").map(BigInt) as [bigint, bigint];
  const [b1, b2] = b.split("-").map(BigInt) as [bigint, bigint];
  return a1 !== b1 ? (a1 < b1 ? -1 : 1) : a2 === b2 ? 0 : a2 < b2 ? -1 : 1;
};

const ids = async (stream: string): Promise<string[]> => (await redis.xrange(stream, "-", "+")).map(([id]) => id);

describe("trimStream", () => {
  test("exact maxLen keeps exactly the newest maxLen entries and resolves to the number removed", async () => {
    const client = await connected();
    const stream = fresh();
    const all = await seed(stream, 50);
    await expect(client.trimStream(stream, { maxLen: 10, approximate: false })).resolves.toBe(40);
    expect(await redis.xlen(stream)).toBe(10);
    expect(await ids(stream)).toEqual(all.slice(40));
    await expect(client.trimStream(stream, { maxLen: 10, approximate: false })).resolves.toBe(0);
  });

  test("exact minId removes exactly the entries below the id", async () => {
    const client = await connected();
    const stream = fresh();
    const all = await seed(stream, 30);
    await expect(client.trimStream(stream, { minId: all[20]!, approximate: false })).resolves.toBe(20);
    expect(await ids(stream)).toEqual(all.slice(20));
  });

  test("approximate trimming (the default) never removes more than asked", async () => {
    const client = await connected();
    const stream = fresh();
    const all = await seed(stream, 1_000);
    const removed = await client.trimStream(stream, { maxLen: 150 });
    const len = await redis.xlen(stream);
    expect(len).toBeGreaterThanOrEqual(150);
    expect(removed).toBeGreaterThan(0);
    expect(removed).toBe(1_000 - len);
    expect(await ids(stream)).toEqual(all.slice(removed));

    const removedById = await client.trimStream(stream, { minId: all[900]!, approximate: true });
    expect(await redis.xlen(stream)).toBeGreaterThanOrEqual(100);
    expect(removedById).toBe(len - (await redis.xlen(stream)));
    expect((await ids(stream)).at(-1)).toBe(all[999]);
  });

  test("publishMessage with maxLen trims in the same XADD (exact: XLEN stays 5)", async () => {
    const client = await connected();
    const stream = fresh();
    const published: string[] = [];
    for (let i = 0; i < 20; i++) {
      const id = await client.publishMessage(stream, { i }, null, { maxLen: 5, approximate: false });
      expect(id).toMatch(/^\d+-\d+$/);
      published.push(id!);
      expect(await redis.xlen(stream)).toBe(Math.min(i + 1, 5));
    }
    expect(await ids(stream)).toEqual(published.slice(15));
  });

  test("neither maxLen nor minId (or both) rejects with ERR_INVALID_ARG and removes nothing", async () => {
    const client = await connected();
    const stream = fresh();
    const all = await seed(stream, 5);
    await expect(client.trimStream(stream, {})).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
    await expect(client.trimStream(stream, { approximate: false })).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
    await expect(client.trimStream(stream, { maxLen: 1, minId: all[4]! })).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
    expect(await redis.xlen(stream)).toBe(5);
  });

  test("resolves 0 when Redis is unreachable, without waiting for the command timeout", async () => {
    // Nothing listens on port 1. With a ten-minute command timeout, resolving within the test's
    // timeout means the call failed open at once instead of waiting.
    const client = new StreamsClient({
      redisUrl: unreachableUrl(),
      connectTimeoutMs: 500,
      commandTimeoutMs: 600_000,
      enableAutoTrim: false,
      logLevel: "error",
    });
    clients.track(client);
    // Nothing listens there: the connection is refused, not timed out.
    await expect(client.connect()).rejects.toMatchObject({ code: "ERR_UNAVAILABLE" });
    await expect(client.trimStream(fresh(), { maxLen: 1, approximate: false })).resolves.toBe(0);
  });
});

describe("auto-trim", () => {
  test("trims a stream the client published to down to about defaultMaxLen", async () => {
    const client = await connected({ enableAutoTrim: true, autoTrimInterval: 200, defaultMaxLen: 10 });
    const stream = fresh();
    const published = await Promise.all(Array.from({ length: 500 }, (_, i) => client.publishMessage(stream, { i })));
    expect(published.every((id) => typeof id === "string")).toBe(true);
    // Approximate: Redis removes whole macro nodes (up to 100 entries each) only.
    await until(async () => (await redis.xlen(stream)) <= 150, 5_000, "XLEN ≤ 150");
    const len = await redis.xlen(stream);
    expect(len).toBeGreaterThanOrEqual(10);
    // The newest entries are the ones kept.
    const sorted = (published as string[]).sort(byId);
    expect(await ids(stream)).toEqual(sorted.slice(sorted.length - len));
  });

  test("with enableAutoTrim false the stream keeps every entry after several intervals", async () => {
    const client = await connected({ enableAutoTrim: false, autoTrimInterval: 200, defaultMaxLen: 10 });
    const stream = fresh();
    const published = await Promise.all(Array.from({ length: 500 }, (_, i) => client.publishMessage(stream, { i })));
    expect(published.every((id) => typeof id === "string")).toBe(true);
    await sleep(600); // three intervals: no trim may happen (a wait for something NOT to happen)
    expect(await redis.xlen(stream)).toBe(500);
  });

  test("a stream the client never touched is not trimmed", async () => {
    // Each auto-trim pass logs one info record (with max_len); count them.
    const passes: Record<string, unknown>[] = [];
    setLogger((record) => {
      if (record.max_len === 10 && "streams" in record) passes.push(record);
    });
    try {
      const client = await connected({ enableAutoTrim: true, autoTrimInterval: 200, defaultMaxLen: 10, logLevel: "info" });
      const touched = fresh();
      const untouched = fresh();
      await seed(untouched, 300);
      await Promise.all(Array.from({ length: 300 }, (_, i) => client.publishMessage(touched, { i })));
      await until(async () => (await redis.xlen(touched)) <= 150, 5_000, "the touched stream is trimmed");
      const seen = passes.length;
      await until(() => passes.length >= seen + 2, 10_000, "two more auto-trim passes");
      expect(await redis.xlen(untouched)).toBe(300);
    } finally {
      setLogger(null);
    }
  });
});

describe("trimming never deletes work a consumer group has not finished", () => {
  test("trimStream stops at the group's first pending entry; keepUnacknowledged: false does not", async () => {
    const client = await connected();
    const stream = fresh();
    await redis.xgroup("CREATE", stream, "g", "0", "MKSTREAM");
    const all = await seed(stream, 100);
    // 30 delivered to a consumer, the first 20 acknowledged: entries 20.. are work not done.
    await redis.xreadgroup("GROUP", "g", "w", "COUNT", 30, "STREAMS", stream, ">");
    await redis.xack(stream, "g", ...all.slice(0, 20));
    await expect(client.trimStream(stream, { maxLen: 10, approximate: false })).resolves.toBe(20);
    expect((await ids(stream))[0]).toBe(all[20]);
    await expect(client.trimStream(stream, { minId: all[90]!, approximate: false })).resolves.toBe(0);
    await expect(client.trimStream(stream, { maxLen: 10, approximate: false, keepUnacknowledged: false })).resolves.toBe(70);
    expect(await ids(stream)).toEqual(all.slice(90));
  });

  test("approximate trimStream removes whole nodes up to the group's first pending entry (on every server)", async () => {
    const client = await connected();
    const stream = fresh();
    await redis.xgroup("CREATE", stream, "g", "0", "MKSTREAM");
    const all = await seed(stream, 1_000);
    // 500 delivered, the first 300 acknowledged: entry 300 (0-based) on is work not done.
    await redis.xreadgroup("GROUP", "g", "w", "COUNT", 500, "STREAMS", stream, ">");
    await redis.xack(stream, "g", ...all.slice(0, 300));
    const removed = await client.trimStream(stream, { maxLen: 100 });
    expect(removed).toBeGreaterThan(0);
    expect(removed).toBeLessThanOrEqual(300);
    expect(await ids(stream)).toEqual(all.slice(removed));
    // Every entry finished: the threshold decides, whole nodes go.
    await redis.xreadgroup("GROUP", "g", "w", "COUNT", 1_000, "STREAMS", stream, ">");
    await redis.xack(stream, "g", ...all.slice(removed));
    const more = await client.trimStream(stream, { maxLen: 100 });
    expect(removed + more).toBeGreaterThanOrEqual(800);
    expect(await redis.xlen(stream)).toBe(1_000 - removed - more);
  });

  test("a client that only reads a stream does not auto-trim it, unless autoTrimStreams is 'touched'", async () => {
    const passes: Record<string, unknown>[] = [];
    setLogger((record) => {
      if (record.max_len === 10 && "streams" in record) passes.push(record);
    });
    try {
      const reader = await connected({ enableAutoTrim: true, autoTrimInterval: 100, defaultMaxLen: 10, logLevel: "info" });
      const readOnly = fresh();
      await seed(readOnly, 300);
      await reader.subscribe(readOnly, () => {}, { startId: "0" });
      const seen = passes.length;
      await until(() => passes.length >= seen + 3, 10_000, "three auto-trim passes");
      expect(await redis.xlen(readOnly)).toBe(300);
      expect(reader.getStatus().config.autoTrimStreams).toBe("published");

      const toucher = await connected({ enableAutoTrim: true, autoTrimInterval: 100, defaultMaxLen: 10, autoTrimStreams: "touched" });
      await toucher.subscribe(readOnly, () => {}, { startId: "0" });
      await until(async () => (await redis.xlen(readOnly)) <= 150, 5_000, "the read stream is trimmed by the 'touched' client");
    } finally {
      setLogger(null);
    }
  });

  test("autoTrimStreams must be 'published' or 'touched'", () => {
    expect(() => new StreamsClient({ autoTrimStreams: "all" as never })).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARG" }));
  });
});
