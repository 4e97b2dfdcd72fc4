import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { setLogger, StreamsClient, type StreamMessage } from "../index.js";
import { blockedIn, clientPool, closeRedis, openRedis, takeDown, unreachableUrl, type Checker, type TestServer } from "./helpers/fixture.js";
import { sleep, until } from "./helpers/until.js";

const here = dirname(fileURLToPath(import.meta.url));
const fresh = (): string => `t:groups:${randomUUID()}`;
const freshGroup = (): string => `g-${randomUUID().slice(0, 8)}`;

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

/** Appends `{ i }` entries in the wire format (data, timestamp) with ioredis; returns their ids in order. */
async function seed(stream: string, from: number, n: number): Promise<string[]> {
  const pipe = redis.pipeline();
  for (let i = from; i < from + n; i++) pipe.xadd(stream, "*", "data", JSON.stringify({ i }), "timestamp", String(Date.now()));
  const replies = (await pipe.exec())!;
  return replies.map(([err, id]) => {
    if (err) throw err;
    return id as string;
  });
}

/** XPENDING summary count of `group`. */
async function pendingCount(stream: string, group: string): Promise<number> {
  const [count] = (await redis.xpending(stream, group)) as [number];
  return Number(count);
}

/** XPENDING rows of `group` (optionally of one consumer), in id order. */
async function pendingRows(
  stream: string,
  group: string,
  consumer?: string,
): Promise<Array<{ id: string; consumer: string; deliveries: number }>> {
  const raw = (
    consumer === undefined
      ? await redis.xpending(stream, group, "-", "+", 100_000)
      : await redis.xpending(stream, group, "-", "+", 100_000, consumer)
  ) as Array<[string, string, number, number]>;
  return raw.map(([id, c, , deliveries]) => ({ id, consumer: c, deliveries: Number(deliveries) }));
}

const pendingIds = async (stream: string, group: string, consumer?: string): Promise<string[]> =>
  (await pendingRows(stream, group, consumer)).map((r) => r.id);

/** XINFO GROUPS as objects. */
async function groupsInfo(stream: string): Promise<Array<Record<string, unknown>>> {
  const raw = (await redis.xinfo("GROUPS", stream)) as unknown[][];
  return raw.map((flat) => {
    const o: Record<string, unknown> = {};
    for (let k = 0; k + 1 < flat.length; k += 2) o[String(flat[k])] = flat[k + 1];
    return o;
  });
}

/** A flat field list as an object. */
function fieldsOf(flat: string[]): Record<string, string> {
  const o: Record<string, string> = {};
  for (let k = 0; k + 1 < flat.length; k += 2) o[flat[k]!] = flat[k + 1]!;
  return o;
}

/** Collects the messages a consumer receives. */
function collector<T = { i: number }>(): { messages: StreamMessage<T>[]; callback: (m: StreamMessage<T>) => void } {
  const messages: StreamMessage<T>[] = [];
  return { messages, callback: (m) => void messages.push(m) };
}

const isUnique = (ids: string[]): boolean => new Set(ids).size === ids.length;
const byId = (a: string, b: string): number => {
  const [a1, a2] = a.split("-").map(BigInt) as [bigint, bigint];
  const [b1, b2] = b.split("-").map(BigInt) as [bigint, bigint];
  return a1 !== b1 ? (a1 < b1 ? -1 : 1) : a2 === b2 ? 0 : a2 < b2 ? -1 : 1;
};

describe("createConsumerGroup", () => {
  test("a new group resolves true and XINFO GROUPS shows it; creating it again resolves true", async () => {
    const client = await connected();
    const stream = fresh();
    const group = freshGroup();
    await expect(client.createConsumerGroup(stream, group)).resolves.toBe(true);
    expect(await redis.exists(stream)).toBe(1); // MKSTREAM
    expect((await groupsInfo(stream)).map((g) => g.name)).toEqual([group]);

    await expect(client.createConsumerGroup(stream, group)).resolves.toBe(true);
    await expect(client.createConsumerGroup(stream, group, "0")).resolves.toBe(true);
    expect((await groupsInfo(stream)).map((g) => g.name)).toEqual([group]);
  });

  test('startId "0" delivers the existing entries, "$" (and the default) only new ones', async () => {
    const client = await connected();
    const stream = fresh();
    const old = await seed(stream, 0, 3);
    const [gAll, gNew, gDefault] = [freshGroup(), freshGroup(), freshGroup()];
    expect(await client.createConsumerGroup(stream, gAll, "0")).toBe(true);
    expect(await client.createConsumerGroup(stream, gNew, "$")).toBe(true);
    expect(await client.createConsumerGroup(stream, gDefault)).toBe(true);
    const info = new Map((await groupsInfo(stream)).map((g) => [g.name, g["last-delivered-id"]]));
    expect(info.get(gAll)).toBe("0-0");
    expect(info.get(gNew)).toBe(old[2]);
    expect(info.get(gDefault)).toBe(old[2]);

    const all = collector();
    const onlyNew = collector();
    await client.consumeFromGroup(stream, gAll, "c", all.callback);
    await client.consumeFromGroup(stream, gNew, "c", onlyNew.callback);
    const [live] = await seed(stream, 3, 1);
    await until(() => all.messages.length >= 4 && onlyNew.messages.length >= 1, 10_000, () => `"0" got ${all.messages.length}/4, "$" got ${onlyNew.messages.length}/1`);
    await sleep(100); // nothing more may follow
    expect(all.messages.map((m) => m.id)).toEqual([...old, live]);
    expect(all.messages.map((m) => m.data.i)).toEqual([0, 1, 2, 3]);
    expect(onlyNew.messages.map((m) => m.id)).toEqual([live]);
  });

  test("an empty group or stream name rejects with ERR_INVALID_ARG", async () => {
    const client = await connected();
    const stream = fresh();
    await expect(client.createConsumerGroup(stream, "")).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
    await expect(client.createConsumerGroup("", freshGroup())).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
    expect(await redis.exists(stream)).toBe(0);
  });

  test("a key that is not a stream rejects with ERR_REFUSED (redisCode WRONGTYPE) and stays untouched", async () => {
    const client = await connected();
    const key = fresh();
    await redis.set(key, "not a stream");
    await expect(client.createConsumerGroup(key, freshGroup())).rejects.toMatchObject({ code: "ERR_REFUSED", redisCode: "WRONGTYPE" });
    expect(await redis.get(key)).toBe("not a stream");
  });

  test("resolves false when Redis is unreachable, without waiting for the command timeout", async () => {
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
    await expect(client.createConsumerGroup(fresh(), freshGroup())).resolves.toBe(false);
  });
});

describe("consumeFromGroup", () => {
  test("rejects with ERR_NOGROUP for a missing group or a missing stream, and runs no consumer", async () => {
    const client = await connected();
    const stream = fresh();
    await seed(stream, 0, 1);
    await expect(client.consumeFromGroup(stream, "nope", "c", () => {})).rejects.toMatchObject({ code: "ERR_NOGROUP" });
    await expect(client.consumeFromGroup(fresh(), "nope", "c", () => {})).rejects.toMatchObject({ code: "ERR_NOGROUP" });
    expect(client.getStatus().consumerGroups).toEqual([]);
  });

  test('getStatus().consumerGroups lists "stream:group:consumer" while consuming, not after stopConsumer', async () => {
    const client = await connected();
    const stream = fresh();
    const group = freshGroup();
    await client.createConsumerGroup(stream, group);
    await client.consumeFromGroup(stream, group, "alice", () => {});
    await client.consumeFromGroup(stream, group, "bob", () => {});
    expect(client.getStatus().consumerGroups).toEqual(expect.arrayContaining([`${stream}:${group}:alice`, `${stream}:${group}:bob`]));
    expect(client.getStatus().consumerGroups).toHaveLength(2);
    await client.stopConsumer(stream, group, "alice");
    expect(client.getStatus().consumerGroups).toEqual([`${stream}:${group}:bob`]);
  });

  test("two consumers on two clients share 2,000 messages: each handled exactly once, XPENDING 0", async () => {
    const a = await connected();
    const b = await connected();
    const stream = fresh();
    const group = freshGroup();
    expect(await a.createConsumerGroup(stream, group)).toBe(true);
    const gotA = collector();
    const gotB = collector();
    await a.consumeFromGroup(stream, group, "a", gotA.callback, { count: 20 });
    await b.consumeFromGroup(stream, group, "b", gotB.callback, { count: 20 });

    const total = 2_000;
    const published: string[] = [];
    for (let from = 0; from < total; from += 100) published.push(...(await seed(stream, from, 100)));

    const handled = (): number => gotA.messages.length + gotB.messages.length;
    await until(() => handled() >= total, 30_000, () => `handled ${handled()}/${total}`);
    await until(async () => (await pendingCount(stream, group)) === 0, 5_000, "XPENDING count 0");
    await sleep(200); // no duplicate may follow
    const ids = [...gotA.messages, ...gotB.messages].map((m) => m.id);
    expect(ids).toHaveLength(total);
    expect(isUnique(ids)).toBe(true);
    expect([...ids].sort(byId)).toEqual(published);
    expect(gotA.messages.length).toBeGreaterThan(0);
    expect(gotB.messages.length).toBeGreaterThan(0);
    expect(a.getStatus().counters.acked + b.getStatus().counters.acked).toBe(total);
  });

  test("autoAck (default): every handled entry is acknowledged", async () => {
    const client = await connected();
    const stream = fresh();
    const group = freshGroup();
    const ids = await seed(stream, 0, 5);
    await client.createConsumerGroup(stream, group, "0");
    const got = collector();
    await client.consumeFromGroup(stream, group, "c", got.callback);
    await until(() => got.messages.length >= 5, 5_000, "5 messages handled");
    await until(async () => (await pendingCount(stream, group)) === 0, 5_000, "XPENDING count 0");
    expect(got.messages.map((m) => m.id)).toEqual(ids);
    expect(client.getStatus().counters.acked).toBe(5);
  });

  test("autoAck false leaves every entry pending until acknowledgeMessages (rest ids or one array)", async () => {
    const client = await connected();
    const stream = fresh();
    const group = freshGroup();
    const first = await seed(stream, 0, 5);
    await client.createConsumerGroup(stream, group, "0");
    const got = collector();
    await client.consumeFromGroup(stream, group, "c", got.callback, { autoAck: false });
    await until(() => got.messages.length >= 5, 5_000, "5 messages handled");
    await sleep(200); // no ack may follow
    expect(await pendingCount(stream, group)).toBe(5);
    expect(await pendingIds(stream, group, "c")).toEqual(first);

    await expect(client.acknowledgeMessages(stream, group, ...first)).resolves.toBe(5);
    expect(await pendingCount(stream, group)).toBe(0);
    await expect(client.acknowledgeMessages(stream, group, ...first)).resolves.toBe(0);

    const second = await seed(stream, 5, 3);
    await until(() => got.messages.length >= 8, 5_000, "3 more messages handled");
    await sleep(100); // nothing more may arrive (a wait for something NOT to happen)
    expect(await pendingIds(stream, group)).toEqual(second);
    // The JSDoc promises the array form too, though the generated type only declares rest ids.
    const ackArray = client.acknowledgeMessages as unknown as (this: StreamsClient, s: string, g: string, ids: string[]) => Promise<number>;
    await expect(ackArray.call(client, stream, group, second)).resolves.toBe(3);
    expect(await pendingCount(stream, group)).toBe(0);
    expect(got.messages.map((m) => m.id)).toEqual([...first, ...second]);
  });

  test("a throwing callback leaves exactly those entries pending; a restarted consumer gets them first, then acks them", async () => {
    const client = await connected();
    const stream = fresh();
    const group = freshGroup();
    const ids = await seed(stream, 0, 8);
    const failing = new Set([1, 4, 6]);
    const thrown = ids.filter((_, i) => failing.has(i));
    await client.createConsumerGroup(stream, group, "0");
    const seen: string[] = [];
    await client.consumeFromGroup<{ i: number }>(stream, group, "worker", (m) => {
      seen.push(m.id);
      if (failing.has(m.data.i)) throw new Error(`fail ${m.data.i}`);
    });
    await until(() => seen.length >= 8, 5_000, () => `handled ${seen.length}/8`);
    await until(async () => (await pendingCount(stream, group)) === 3, 5_000, "only the 3 failed entries pending");
    expect(await pendingIds(stream, group, "worker")).toEqual(thrown);
    expect(client.getStatus().counters.callbackErrors).toBe(3);

    await client.stopConsumer(stream, group, "worker");
    const again = collector();
    await client.consumeFromGroup(stream, group, "worker", again.callback);
    const newer = await seed(stream, 8, 2);
    await until(() => again.messages.length >= 5, 5_000, () => `after restart got ${again.messages.length}/5`);
    await until(async () => (await pendingCount(stream, group)) === 0, 5_000, "XPENDING count 0 after the redelivery");
    await sleep(100); // nothing more may arrive (a wait for something NOT to happen)
    expect(again.messages.map((m) => m.id)).toEqual([...thrown, ...newer]);
  });

  test("after a SIGKILL mid-batch, a consumer with claimIdleMs takes over the dead consumer's pending entries", async () => {
    const client = await connected();
    const stream = fresh();
    const group = freshGroup();
    const published = await seed(stream, 0, 20);
    await client.createConsumerGroup(stream, group, "0");

    const fixture = resolve(here, "fixtures", "group-consumer-hang.mjs");
    const held = 5;
    const child = spawn(process.execPath, [fixture, server.url, stream, group, "doomed", String(held)], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    const got = (): string[] => stdout.split("\n").filter((l) => l.startsWith("got ")).map((l) => l.slice(4).trim());
    try {
      await until(() => got().length >= held, 15_000, () => `child got ${got().length}/${held}; stderr=${stderr}`);
      expect(got()).toEqual(published.slice(0, held));
      expect(await pendingIds(stream, group, "doomed")).toEqual(got());
    } finally {
      child.kill("SIGKILL");
      await exited;
    }

    const rescuer = collector();
    await client.consumeFromGroup(stream, group, "rescuer", rescuer.callback, { claimIdleMs: 200 });
    await until(() => new Set(rescuer.messages.map((m) => m.id)).size >= published.length, 10_000, () => `rescuer handled ${rescuer.messages.length}/${published.length}`);
    await until(async () => (await pendingCount(stream, group)) === 0, 5_000, "XPENDING count 0");
    await sleep(300); // no redelivery may follow
    const ids = rescuer.messages.map((m) => m.id);
    expect(isUnique(ids)).toBe(true);
    expect([...ids].sort(byId)).toEqual(published);
    expect(client.getStatus().counters.claimed).toBeGreaterThanOrEqual(held);
  });

  test("maxDeliveries: a poison entry runs the callback exactly 3 times, then goes to <stream>:dead and is acked", async () => {
    const client = await connected();
    const stream = fresh();
    const group = freshGroup();
    const ids = await seed(stream, 0, 3);
    const poison = ids[1]!;
    const [original] = await redis.xrange(stream, poison, poison);
    await client.createConsumerGroup(stream, group, "0");
    const calls = new Map<string, number>();
    await client.consumeFromGroup<{ i: number }>(
      stream,
      group,
      "c",
      (m) => {
        calls.set(m.id, (calls.get(m.id) ?? 0) + 1);
        if (m.id === poison) throw new Error("poison");
      },
      { maxDeliveries: 3, retryDelayMs: 50 },
    );
    const dead = `${stream}:dead`;
    await until(async () => (await redis.xlen(dead)) >= 1, 10_000, () => `dead letter written (poison calls ${calls.get(poison) ?? 0})`);
    await sleep(300); // no further delivery of the poison entry
    expect(calls.get(poison)).toBe(3);
    expect(calls.get(ids[0]!)).toBe(1);
    expect(calls.get(ids[2]!)).toBe(1);

    const entries = await redis.xrange(dead, "-", "+");
    expect(entries).toHaveLength(1);
    const origFields = fieldsOf(original![1]);
    expect(fieldsOf(entries[0]![1])).toEqual({
      data: origFields.data,
      timestamp: origFields.timestamp,
      originalStream: stream,
      originalId: poison,
      group,
      consumer: "c",
      deliveries: "4",
    });
    expect(await pendingCount(stream, group)).toBe(0);
    const counters = client.getStatus().counters;
    expect(counters.deadLettered).toBe(1);
    expect(counters.callbackErrors).toBe(3);
  });

  test("maxDeliveries with a custom deadLetterStream", async () => {
    const client = await connected();
    const stream = fresh();
    const group = freshGroup();
    const custom = `${stream}:custom-dlq`;
    const [poison] = await seed(stream, 0, 1);
    await client.createConsumerGroup(stream, group, "0");
    let calls = 0;
    await client.consumeFromGroup(
      stream,
      group,
      "c",
      () => {
        calls++;
        throw new Error("always");
      },
      { maxDeliveries: 1, retryDelayMs: 50, deadLetterStream: custom },
    );
    await until(async () => (await redis.xlen(custom)) >= 1, 10_000, "dead letter written to the custom stream");
    await sleep(200); // no further delivery may follow (a wait for something NOT to happen)
    expect(calls).toBe(1);
    const entries = await redis.xrange(custom, "-", "+");
    expect(entries).toHaveLength(1);
    expect(fieldsOf(entries[0]![1])).toMatchObject({ originalStream: stream, originalId: poison, group, consumer: "c", deliveries: "2" });
    expect(await redis.exists(`${stream}:dead`)).toBe(0);
    expect(await pendingCount(stream, group)).toBe(0);
    expect(client.getStatus().counters.deadLettered).toBe(1);
  });

  test("deleteOnAck: handled entries are acknowledged and deleted, a dead-lettered one too; other streams keep theirs (on every server)", async () => {
    const client = await connected({ logLevel: "error" });
    const stream = fresh();
    const group = freshGroup();
    const ids = await seed(stream, 0, 10);
    await client.createConsumerGroup(stream, group, "0");
    await client.consumeFromGroup(
      stream,
      group,
      "c",
      (m) => {
        if (m.id === ids[4]) throw new Error("poison");
      },
      { deleteOnAck: true, maxDeliveries: 1, retryDelayMs: 10 },
    );
    await until(async () => (await redis.xlen(stream)) === 0, 10_000, "the stream emptied");
    await until(() => client.getStatus().counters.deadLettered === 1, 10_000, "the poison entry dead-lettered");
    expect(await pendingCount(stream, group)).toBe(0);
    expect(await redis.xlen(`${stream}:dead`)).toBe(1);
    // Without deleteOnAck, acknowledged entries stay.
    const plain = fresh();
    await seed(plain, 0, 5);
    await client.createConsumerGroup(plain, group, "0");
    await client.consumeFromGroup(plain, group, "c", () => {});
    await until(async () => (await pendingCount(plain, group)) === 0 && client.getStatus().counters.acked >= 14, 10_000, "the plain stream acknowledged");
    expect(await redis.xlen(plain)).toBe(5);
  });

  test("auto-trim trims the dead-letter stream the consumer writes to (it does not grow without bound)", async () => {
    const client = await connected({ enableAutoTrim: true, autoTrimInterval: 200, defaultMaxLen: 10, logLevel: "off" }); // 400 dead-letter errors
    const stream = fresh();
    const group = freshGroup();
    await seed(stream, 0, 400);
    await client.createConsumerGroup(stream, group, "0");
    await client.consumeFromGroup(
      stream,
      group,
      "c",
      () => {
        throw new Error("always");
      },
      { maxDeliveries: 1, retryDelayMs: 1, count: 100 },
    );
    const dead = `${stream}:dead`;
    await until(async () => client.getStatus().counters.deadLettered === 400, 20_000, () => `all 400 dead-lettered (${client.getStatus().counters.deadLettered})`);
    // Approximate: whole nodes of up to 100 entries go.
    await until(async () => (await redis.xlen(dead)) <= 110, 10_000, "the dead-letter stream is trimmed to about defaultMaxLen");
    // The source stream is only read by this client: auto-trim leaves it alone.
    expect(await redis.xlen(stream)).toBe(400);
  });

  test("concurrency 4 runs up to 4 callbacks at once (count 16), all acked; the default runs one at a time", async () => {
    const client = await connected();
    const run = async (concurrency: number | undefined): Promise<number> => {
      const stream = fresh();
      const group = freshGroup();
      await seed(stream, 0, 16);
      await client.createConsumerGroup(stream, group, "0");
      let running = 0;
      let max = 0;
      let done = 0;
      await client.consumeFromGroup(
        stream,
        group,
        "c",
        async () => {
          running++;
          max = Math.max(max, running);
          await sleep(30); // simulated work
          running--;
          done++;
        },
        concurrency === undefined ? { count: 16 } : { count: 16, concurrency },
      );
      await until(() => done >= 16, 10_000, () => `concurrency ${concurrency}: done ${done}/16`);
      await until(async () => (await pendingCount(stream, group)) === 0, 5_000, `concurrency ${concurrency}: XPENDING 0`);
      await client.stopConsumer(stream, group, "c");
      expect(done).toBe(16);
      return max;
    };
    expect(await run(4)).toBe(4);
    expect(await run(undefined)).toBe(1);
  });

  test("stopConsumer waits for the running callback and acks it; nothing more is delivered to it", async () => {
    const client = await connected();
    const stream = fresh();
    const group = freshGroup();
    const ids = await seed(stream, 0, 3);
    await client.createConsumerGroup(stream, group, "0");
    const seen: string[] = [];
    let finished = false;
    await client.consumeFromGroup(stream, group, "slow", async (m) => {
      seen.push(m.id);
      await sleep(300); // simulated work
      finished = true;
    });
    await until(() => seen.length >= 1, 5_000, "slow callback started");
    expect(finished).toBe(false);
    await client.stopConsumer(stream, group, "slow");
    expect(finished).toBe(true);
    // The finished one is acked; the rest of the batch (read, never handed over) stays pending.
    const pending = await pendingIds(stream, group);
    expect(pending).not.toContain(ids[0]);
    expect(pending).toEqual(ids.slice(1));
    expect(client.getStatus().consumerGroups).not.toContain(`${stream}:${group}:slow`);

    await seed(stream, 3, 1);
    await sleep(500); // it must NOT be delivered to the stopped consumer
    expect(seen).toEqual([ids[0]]);
  });

  test("disconnect() waits for a running consumer callback and acks it", async () => {
    const client = await connected();
    const stream = fresh();
    const group = freshGroup();
    const [id] = await seed(stream, 0, 1);
    await client.createConsumerGroup(stream, group, "0");
    let started = false;
    let finished = false;
    await client.consumeFromGroup(stream, group, "slow", async () => {
      started = true;
      await sleep(300); // simulated work
      finished = true;
    });
    await until(() => started, 5_000, "slow callback started");
    await client.disconnect();
    expect(finished).toBe(true);
    expect(await pendingIds(stream, group)).not.toContain(id);
    expect(await pendingCount(stream, group)).toBe(0);
    expect(client.getStatus().consumerGroups).toEqual([]);
  });

  test("disconnect() wakes three consumers blocked in XREADGROUP for an hour: they end normally, no deadline is hit", async () => {
    const { server: own, redis: check } = await openRedis({ private: true });
    const records: Record<string, unknown>[] = [];
    try {
      const client = await connected({ redisUrl: own.url });
      const stream = fresh();
      const group = freshGroup();
      await client.createConsumerGroup(stream, group);
      for (const name of ["c1", "c2", "c3"]) await client.consumeFromGroup(stream, group, name, () => {}, { blockMs: 3_600_000 });
      await until(async () => (await blockedIn(own, "xreadgroup")) === 3, 10_000, "all three consumers blocked in XREADGROUP");

      setLogger((record) => void records.push(record));
      await client.disconnect();
      // Not woken, the consumers would have kept disconnect() waiting until its deadline, which
      // it logs (with deadline_ms) before giving up on them.
      expect(records.filter((r) => "deadline_ms" in r)).toEqual([]);
      expect(await blockedIn(own, "xreadgroup")).toBe(0);
      expect(client.getStatus().consumerGroups).toEqual([]);
    } finally {
      setLogger(null);
      await closeRedis(own, check);
    }
  });

  test("a consumer survives its group being destroyed and consumes again once the group is recreated", async () => {
    const client = await connected();
    const stream = fresh();
    const group = freshGroup();
    await client.createConsumerGroup(stream, group);
    const got = collector();
    await client.consumeFromGroup(stream, group, "c", got.callback, { blockMs: 300 });
    const [first] = await seed(stream, 0, 1);
    await until(() => got.messages.length >= 1, 5_000, "first message");

    // The consumer logs (at warn) when it meets the missing group; wait for that record.
    const records: Record<string, unknown>[] = [];
    setLogger((record) => void records.push(record));
    try {
      expect(await redis.xgroup("DESTROY", stream, group)).toBe(1);
      await until(
        () => records.some((r) => r.stream === stream && r.group === group && r.consumer === "c" && String(r.level).toLowerCase() === "warn"),
        10_000,
        () => `a warn record of the consumer meeting the missing group; got ${JSON.stringify(records.slice(-3))}`,
      );
    } finally {
      setLogger(null);
    }
    expect(client.getStatus().consumerGroups).toContain(`${stream}:${group}:c`);

    expect(await client.createConsumerGroup(stream, group, "$")).toBe(true);
    const [second] = await seed(stream, 1, 1);
    await until(() => got.messages.length >= 2, 10_000, "message after the group was recreated");
    expect(got.messages.map((m) => m.id)).toEqual([first, second]);
    await until(async () => (await pendingCount(stream, group)) === 0, 5_000, "XPENDING 0 in the new group");
  });
});

describe("consumer connection status", () => {
  test("getStatus().consumers shows each consumer's connection: reconnecting while Redis is down, connected again after", async () => {
    const { server: own, redis: check } = await openRedis({ private: true });
    const client = new StreamsClient({
      redisUrl: own.url,
      enableAutoTrim: false,
      logLevel: "error",
      reconnectInitialDelayMs: 20,
      reconnectMaxDelayMs: 200,
      commandTimeoutMs: 500,
      connectTimeoutMs: 500,
    });
    clients.track(client);
    try {
      await client.connect();
      const stream = fresh();
      expect(await client.createConsumerGroup(stream, "g", "0")).toBe(true);
      const got: string[] = [];
      await client.consumeFromGroup(stream, "g", "w", (m) => void got.push(m.id), { blockMs: 200 });
      const name = `${stream}:g:w`;
      const state = () => client.getStatus().consumers.find((c) => c.name === name)?.connection;
      await until(() => state()?.state === "connected", 5_000, "consumer connected");

      // One server is killed and restarted; in a cluster the stream's master is killed and
      // its replica takes over.
      const outage = await takeDown(own, stream);
      await until(() => state()?.state === "reconnecting" && (state()?.attempt ?? 0) >= 1, 5_000, "consumer reconnecting");
      expect(state()?.lastError).toBeTruthy();
      expect(state()?.nextRetryAt).toBeGreaterThan(0);

      await outage.end();
      await until(() => state()?.state === "connected", 10_000, "consumer connected again");
      // The command connection noticed the restart on its own (probe), and is back too.
      await until(() => client.getStatus().connected, 5_000, "command connection back");
      expect(await client.createConsumerGroup(stream, "g", "0")).toBe(true);
      const id = await client.publishMessage(stream, { after: true });
      expect(id).toMatch(/^\d+-\d+$/);
      await until(() => got.includes(id!), 5_000, "the message published after the restart is consumed");
    } finally {
      await client.disconnect();
      await closeRedis(own, check);
    }
  });
});

describe("consumer identity (REVIEW A16)", () => {
  test("stream a:b / group c and stream a / group b:c are two consumers: both start, stopping one leaves the other consuming", async () => {
    const client = await connected();
    const base = fresh();
    // Joined with ":", both read `${base}:b:c:x`: a key built that way cannot tell them apart.
    const one = { stream: `${base}:b`, group: "c" };
    const two = { stream: base, group: "b:c" };
    for (const k of [one, two]) expect(await client.createConsumerGroup(k.stream, k.group, "$")).toBe(true);
    const got = { one: [] as string[], two: [] as string[] };
    await client.consumeFromGroup(one.stream, one.group, "x", (m) => void got.one.push(m.id), { blockMs: 200 });
    await client.consumeFromGroup(two.stream, two.group, "x", (m) => void got.two.push(m.id), { blockMs: 200 });
    // getStatus keeps the documented "stream:group:consumer" strings.
    const name = `${base}:b:c:x`;
    expect(client.getStatus().consumerGroups).toEqual([name, name]);

    const before = [await client.publishMessage(one.stream, { n: 1 }), await client.publishMessage(two.stream, { n: 2 })];
    await until(() => got.one.includes(before[0]!) && got.two.includes(before[1]!), 5_000, "both consumers consume");

    await client.stopConsumer(one.stream, one.group, "x");
    expect(client.getStatus().consumerGroups).toEqual([name]);
    const after = await client.publishMessage(two.stream, { n: 3 });
    await until(() => got.two.includes(after!), 5_000, "the consumer that was not stopped still consumes");
    // Stopping the other one now finds it (it was not stopped by the first call).
    await client.stopConsumer(two.stream, two.group, "x");
    expect(client.getStatus().consumerGroups).toEqual([]);
  });
});
