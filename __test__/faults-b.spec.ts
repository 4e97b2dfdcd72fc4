// Faults, part B: bad input (error codes, and the client keeps working), foreign entries written
// by redis-cli, streams deleted while read, disconnect() during a storm, and the offline buffer.
// Every server here is a private redis-server of this file.
import { execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { setLogger, StreamsClient, type StreamMessage, type StreamsClientConfig } from "../index.js";
import { startRedis, type RedisServer } from "./helpers/redis-server.js";
import { sleep, until } from "./helpers/until.js";

const here = dirname(fileURLToPath(import.meta.url));
const run = promisify(execFile);
const fresh = (): string => `t:faults-b:${randomUUID()}`;
const freshGroup = (): string => `g-${randomUUID().slice(0, 8)}`;

type Coded = Error & { code?: string };

const base = {
  commandTimeoutMs: 500,
  connectTimeoutMs: 500,
  reconnectInitialDelayMs: 20,
  reconnectMaxDelayMs: 300,
  enableAutoTrim: false,
  logLevel: "warn",
} as const;

let server: RedisServer;
let redis: Redis;
/** Every client a test created; afterEach disconnects them. */
const clients: StreamsClient[] = [];

beforeAll(async () => {
  server = await startRedis({ private: true });
  redis = new Redis(server.url);
});

afterEach(async () => {
  setLogger(null);
  await Promise.all(clients.splice(0).map((c) => c.disconnect()));
});

afterAll(async () => {
  redis?.disconnect();
  await server?.stop();
});

async function connected(extra: StreamsClientConfig = {}, url = server.url): Promise<StreamsClient> {
  const client = new StreamsClient({ redisUrl: url, ...base, ...extra });
  clients.push(client);
  await client.connect();
  return client;
}

function compareIds(a: string, b: string): number {
  const [am, as] = a.split("-").map(BigInt) as [bigint, bigint];
  const [bm, bs] = b.split("-").map(BigInt) as [bigint, bigint];
  return am < bm ? -1 : am > bm ? 1 : as < bs ? -1 : as > bs ? 1 : 0;
}

const xrangeIds = async (stream: string): Promise<string[]> => (await redis.xrange(stream, "-", "+")).map(([id]) => id);

/** The rejection of the Promise `call` returns; fails when `call` throws synchronously or the Promise resolves. */
async function rejection(call: () => unknown, label: string): Promise<Coded> {
  let p: unknown;
  try {
    p = call();
  } catch (e) {
    throw new Error(`${label}: threw synchronously (${String(e)}) instead of returning a rejected Promise`);
  }
  expect(p, label).toBeInstanceOf(Promise);
  const outcome = await (p as Promise<unknown>).then(
    (v) => ({ ok: true as const, v }),
    (e: unknown) => ({ ok: false as const, e }),
  );
  if (outcome.ok) throw new Error(`${label}: resolved ${JSON.stringify(outcome.v)} instead of rejecting`);
  expect(outcome.e, label).toBeInstanceOf(Error);
  return outcome.e as Coded;
}

/** The error `call` throws synchronously. */
function thrown(call: () => unknown, label: string): Coded {
  try {
    call();
  } catch (e) {
    expect(e, label).toBeInstanceOf(Error);
    return e as Coded;
  }
  throw new Error(`${label}: did not throw`);
}

describe("bad input: each call fails with its code and the same client keeps working", () => {
  let client: StreamsClient;
  let health: string;
  const healthy: StreamMessage<{ k: number }>[] = [];
  let k = 0;

  beforeAll(async () => {
    client = new StreamsClient({ redisUrl: server.url, ...base });
    await client.connect();
    health = fresh();
    await client.subscribe<{ k: number }>(health, (m) => void healthy.push(m));
  });

  afterAll(async () => {
    await client?.disconnect();
  });

  /** A normal publish is still delivered to the health subscription. */
  async function stillWorks(label: string): Promise<void> {
    const n = ++k;
    const id = await client.publishMessage(health, { k: n });
    expect(id, `${label}: publish afterwards`).toMatch(/^\d+-\d+$/);
    await until(() => healthy.some((m) => m.id === id && m.data.k === n), 5_000, `${label}: delivery afterwards`);
  }

  async function expectRejects(call: () => unknown, code: string, label: string): Promise<void> {
    const err = await rejection(call, label);
    expect(err.code, `${label}: ${err.message}`).toBe(code);
    await stillWorks(label);
  }

  const cb = (): void => {};

  test("bad stream names (empty, 20 KB, not a string) on every method; 16 KiB is still accepted", async () => {
    const group = freshGroup();
    const bad: [string, unknown][] = [
      ["empty", ""],
      ["20 KB", "s".repeat(20 * 1024)],
      ["number", 42],
      ["undefined", undefined],
      ["null", null],
      ["object", { name: "s" }],
    ];
    for (const [what, raw] of bad) {
      const s = raw as string;
      await expectRejects(() => client.publishMessage(s, { a: 1 }), "ERR_INVALID_ARG", `publishMessage(${what})`);
      await expectRejects(() => client.publishBatch(s, [{ a: 1 }]), "ERR_INVALID_ARG", `publishBatch(${what})`);
      await expectRejects(() => client.subscribe(s, cb), "ERR_INVALID_ARG", `subscribe(${what})`);
      await expectRejects(() => client.createConsumerGroup(s, group), "ERR_INVALID_ARG", `createConsumerGroup(${what})`);
      await expectRejects(() => client.consumeFromGroup(s, group, "c", cb), "ERR_INVALID_ARG", `consumeFromGroup(${what})`);
      await expectRejects(() => client.acknowledgeMessages(s, group, "1-0"), "ERR_INVALID_ARG", `acknowledgeMessages(${what})`);
      await expectRejects(() => client.trimStream(s, { maxLen: 1 }), "ERR_INVALID_ARG", `trimStream(${what})`);
      if (typeof raw !== "string") {
        expect(thrown(() => client.unsubscribe(s), `unsubscribe(${what})`).code).toBe("ERR_INVALID_ARG");
        await stillWorks(`unsubscribe(${what})`);
      }
    }
    expect(client.getStatus().subscriptions).toEqual([health]);
    expect(client.getStatus().consumerGroups).toEqual([]);
    // Nothing was written anywhere but the health stream.
    expect((await redis.keys("*")).sort()).toEqual([health]);

    const longest = "L".repeat(16 * 1024);
    const id = await client.publishMessage(longest, { a: 1 });
    expect(id).toMatch(/^\d+-\d+$/);
    expect(await xrangeIds(longest)).toEqual([id]);
    await redis.del(longest);
  });

  test("ids of every wrong shape, and ids not above the stream's top, reject with ERR_INVALID_ARG", async () => {
    const stream = fresh();
    const bad: unknown[] = ["", "abc", "-1", "1-2-3", "1.5-0", "0-0", " 1-0", "1-0 ", "*-1", "1-*-1", "-", "1-", "18446744073709551616-0", 123, {}, true];
    for (const id of bad) {
      await expectRejects(() => client.publishMessage(stream, { a: 1 }, id as string), "ERR_INVALID_ARG", `id ${JSON.stringify(id)}`);
    }
    expect(await redis.exists(stream)).toBe(0);

    const top = (await client.publishMessage(stream, { a: 1 }))!;
    const topMs = top.split("-")[0]!;
    for (const id of ["1-0", top, `${topMs}-0`, "1-*"]) {
      await expectRejects(() => client.publishMessage(stream, { a: 2 }, id), "ERR_INVALID_ARG", `id ${id} not above the top ${top}`);
    }
    // Accepted shapes still work after all that.
    const next = await client.publishMessage(stream, { a: 3 }, `${topMs}-*`);
    const exact = await client.publishMessage(stream, { a: 4 }, `${BigInt(topMs) + 1n}-7`);
    expect(exact).toBe(`${BigInt(topMs) + 1n}-7`);
    expect(await xrangeIds(stream)).toEqual([top, next, exact]);
  });

  test("data JSON cannot represent rejects; nested bigint, NaN and Infinity follow JSON rules", async () => {
    const stream = fresh();
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    const cyclicArray: unknown[] = [1];
    cyclicArray.push({ inner: cyclicArray });
    const bad: [string, unknown][] = [
      ["a cycle", cyclic],
      ["a cycle through an array", cyclicArray],
      ["a function", () => 1],
      ["undefined", undefined],
      ["a symbol", Symbol("s")],
      ["an object whose toJSON throws", { toJSON: () => { throw new Error("no"); } }],
    ];
    for (const [what, data] of bad) {
      await expectRejects(() => client.publishMessage(stream, data), "ERR_INVALID_ARG", `publishMessage(${what})`);
      await expectRejects(() => client.publishBatch(stream, [{ ok: 1 }, data]), "ERR_INVALID_ARG", `publishBatch([ok, ${what}])`);
    }
    expect(await redis.exists(stream)).toBe(0);

    const got: StreamMessage[] = [];
    await client.subscribe(stream, (m) => void got.push(m));
    const big = 2n ** 70n;
    const cases: [unknown, string][] = [
      [{ a: { b: [{ c: big }, [[-big]]] } }, `{"a":{"b":[{"c":"${big}"},[["-${big}"]]]}}`],
      [5n, '"5"'],
      [{ x: NaN, y: Infinity, z: -Infinity, arr: [NaN, 1] }, '{"x":null,"y":null,"z":null,"arr":[null,1]}'],
      [{ f: () => 1, u: undefined, s: Symbol("x"), keep: true }, '{"keep":true}'],
      [[() => 1, undefined], "[null,null]"],
      [NaN, "null"],
    ];
    const ids: string[] = [];
    for (const [data] of cases) ids.push((await client.publishMessage(stream, data))!);
    const stored = await redis.xrange(stream, "-", "+");
    expect(stored.map(([id]) => id)).toEqual(ids);
    expect(stored.map(([, fields]) => fields[1])).toEqual(cases.map(([, json]) => json));
    expect(stored.every(([, fields]) => fields[0] === "data" && fields[2] === "timestamp")).toBe(true);
    await until(() => got.length >= cases.length, 5_000, () => `delivered ${got.length}/${cases.length}`);
    expect(got.map((m) => m.data)).toEqual(cases.map(([, json]) => JSON.parse(json)));
    client.unsubscribe(stream);
    await stillWorks("after the JSON cases");
  });

  test("payload size: over maxPayloadBytes rejects (default 1 MiB), a raised limit accepts 10 MB", async () => {
    const stream = fresh();
    const exactlyOneMiB = "x".repeat(1024 * 1024 - 2); // JSON adds the two quotes
    const id = await client.publishMessage(stream, exactlyOneMiB);
    expect(id).toMatch(/^\d+-\d+$/);
    await expectRejects(() => client.publishMessage(stream, exactlyOneMiB + "x"), "ERR_INVALID_ARG", "1 MiB + 1 byte");
    const tenMB = "y".repeat(10 * 1024 * 1024);
    await expectRejects(() => client.publishMessage(stream, { blob: tenMB }), "ERR_INVALID_ARG", "10 MB");
    await expectRejects(() => client.publishBatch(stream, [{ small: 1 }, { blob: tenMB }]), "ERR_INVALID_ARG", "10 MB in a batch");
    expect(await xrangeIds(stream)).toEqual([id]);

    const roomy = await connected({ maxPayloadBytes: 20_000_000 });
    expect(roomy.getStatus().config.maxPayloadBytes).toBe(20_000_000);
    const bigId = await roomy.publishMessage(stream, { blob: tenMB });
    expect(bigId).toMatch(/^\d+-\d+$/);
    const [[storedId, fields]] = await redis.xrange(stream, bigId!, bigId!);
    expect(storedId).toBe(bigId);
    expect(fields[1]!.length).toBe(tenMB.length + '{"blob":""}'.length);
    await redis.del(stream);
  });

  test("non-function callbacks reject for subscribe and consumeFromGroup", async () => {
    const stream = fresh();
    const group = freshGroup();
    expect(await client.createConsumerGroup(stream, group, "0")).toBe(true);
    for (const bad of [null, undefined, 1, "x", {}, [], Symbol("cb")]) {
      const label = typeof bad === "symbol" ? "symbol" : JSON.stringify(bad) ?? "undefined";
      await expectRejects(() => client.subscribe(stream, bad as never), "ERR_INVALID_ARG", `subscribe callback ${label}`);
      await expectRejects(() => client.consumeFromGroup(stream, group, "c", bad as never), "ERR_INVALID_ARG", `consume callback ${label}`);
    }
    expect(client.getStatus().subscriptions).toEqual([health]);
    expect(client.getStatus().consumerGroups).toEqual([]);
  });

  test("invalid subscribe, consume, trim and acknowledge options reject with ERR_INVALID_ARG", async () => {
    const stream = fresh();
    const group = freshGroup();
    expect(await client.createConsumerGroup(stream, group, "0")).toBe(true);
    const ids = await client.publishBatch(stream, [1, 2, 3, 4, 5]);
    for (const options of [{ blockMs: -1 }, { blockMs: NaN }, { blockMs: 1.5 }, { count: 0 }, { count: -3 }, { startId: "x" }, { startId: "" }, "fast", 7]) {
      await expectRejects(() => client.subscribe(stream, cb, options as never), "ERR_INVALID_ARG", `subscribe ${JSON.stringify(options)}`);
    }
    for (const options of [{ concurrency: 0 }, { concurrency: 1.5 }, { maxDeliveries: 0 }, { claimIdleMs: NaN }, { claimIdleMs: -1 }, { count: 0 }, { blockMs: -5 }, { retryDelayMs: Infinity }, { deadLetterStream: "" }, "x"]) {
      await expectRejects(() => client.consumeFromGroup(stream, group, "c", cb, options as never), "ERR_INVALID_ARG", `consume ${JSON.stringify(options)}`);
    }
    for (const options of [{ maxLen: 1, minId: "1-0" }, {}, { maxLen: -1 }, { maxLen: NaN }, { minId: "abc" }, null]) {
      await expectRejects(() => client.trimStream(stream, options as never), "ERR_INVALID_ARG", `trimStream ${JSON.stringify(options)}`);
    }
    for (const bad of ["abc", "", "1-x"]) {
      await expectRejects(() => client.acknowledgeMessages(stream, group, bad), "ERR_INVALID_ARG", `ack id ${JSON.stringify(bad)}`);
    }
    for (const [g, c] of [["", "c"], [group, ""]] as const) {
      await expectRejects(() => client.consumeFromGroup(stream, g, c, cb), "ERR_INVALID_ARG", `consume names ${JSON.stringify([g, c])}`);
    }
    await expectRejects(() => client.createConsumerGroup(stream, group, "nope"), "ERR_INVALID_ARG", "createConsumerGroup startId");
    await expectRejects(() => client.consumeFromGroup(stream, freshGroup(), "c", cb), "ERR_NOGROUP", "consume a missing group");
    // Nothing was trimmed, subscribed or started by the rejected calls.
    expect(await xrangeIds(stream)).toEqual(ids);
    expect(client.getStatus().subscriptions).toEqual([health]);
    expect(client.getStatus().consumerGroups).toEqual([]);
  });

  test("a constructor with a bad config throws synchronously", () => {
    for (const config of [{ offlineBuffer: -1 }, { maxPayloadBytes: 0 }, { maxPayloadBytes: NaN }, { offlineBuffer: 1.5 }, { redisUrl: "http://x" }]) {
      const err = thrown(() => new StreamsClient({ ...base, ...config } as StreamsClientConfig), JSON.stringify(config));
      expect(err.code, JSON.stringify(config)).toBe("ERR_INVALID_ARG");
    }
  });
});

describe("after disconnect() writes fail open and reads reject with ERR_CLOSED; connect() makes them work again", () => {
  test("publishMessage, publishBatch, createConsumerGroup, acknowledgeMessages, trimStream fail open; subscribe, consumeFromGroup, stream, consume reject", async () => {
    const client = await connected();
    const stream = fresh();
    const group = freshGroup();
    expect(await client.createConsumerGroup(stream, group, "0")).toBe(true);
    const first = (await client.publishMessage(stream, { n: 0 }))!;
    await client.disconnect();
    const failedBefore = client.getStatus().counters.publishFailed;

    // A request still in flight during a shutdown gets the fail-open answer, not an error.
    expect(await client.publishMessage(stream, { n: 1 })).toBeNull();
    expect(await client.publishBatch(stream, [{ n: 1 }, { n: 2 }])).toEqual([null, null]);
    expect(await client.createConsumerGroup(stream, freshGroup())).toBe(false);
    expect(await client.acknowledgeMessages(stream, group, first)).toBe(0);
    expect(await client.trimStream(stream, { maxLen: 0 })).toBe(0);
    expect(client.getStatus().counters.publishFailed).toBe(failedBefore + 3);
    // The caller's own mistakes still reject.
    expect((await rejection(() => client.publishMessage("", { n: 1 }), "empty stream")).code).toBe("ERR_INVALID_ARG");

    const reads: [string, () => Promise<unknown>][] = [
      ["subscribe", () => client.subscribe(stream, () => {})],
      ["consumeFromGroup", () => client.consumeFromGroup(stream, group, "c", () => {})],
      ["stream", () => client.stream(stream).next()],
      ["consume", () => client.consume(stream, group, "c").next()],
    ];
    for (const [name, call] of reads) {
      const err = await rejection(call, name);
      expect(err.code, `${name}: ${err.message}`).toBe("ERR_CLOSED");
    }
    expect(client.getStatus().state).toBe("closed");
    expect(client.getStatus().subscriptions).toEqual([]);
    expect(client.getStatus().consumerGroups).toEqual([]);
    expect(await xrangeIds(stream)).toEqual([first]);

    await client.connect();
    const got: StreamMessage<{ n: number }>[] = [];
    const consumed: StreamMessage<{ n: number }>[] = [];
    await client.subscribe<{ n: number }>(stream, (m) => void got.push(m));
    const group2 = freshGroup();
    expect(await client.createConsumerGroup(stream, group2, "$")).toBe(true);
    await client.consumeFromGroup<{ n: number }>(stream, group2, "c", (m) => void consumed.push(m), { autoAck: false });
    const id = (await client.publishMessage(stream, { n: 1 }))!;
    const batch = (await client.publishBatch(stream, [{ n: 2 }])) as string[];
    expect(id).toMatch(/^\d+-\d+$/);
    expect(batch).toHaveLength(1);
    await until(() => got.length >= 2 && consumed.length >= 2, 5_000, () => `got ${got.length}/2, consumed ${consumed.length}/2`);
    expect(got.map((m) => m.id)).toEqual([id, batch[0]]);
    expect(consumed.map((m) => m.id)).toEqual([id, batch[0]]);
    expect(await client.acknowledgeMessages(stream, group2, id, batch[0]!)).toBe(2);
    // The stream has groups that have not consumed it: only an explicit keepUnacknowledged: false removes their entries.
    expect(await client.trimStream(stream, { maxLen: 1, approximate: false, keepUnacknowledged: false })).toBe(2);
    expect(await xrangeIds(stream)).toEqual([batch[0]]);
  });
});

describe("foreign entries written with redis-cli", () => {
  const cli = async (args: string[], input?: Buffer): Promise<string> => {
    const p = run("redis-cli", ["-p", String(server.port), ...args], { encoding: "utf8" });
    p.child.stdin!.end(input);
    return (await p).stdout.trim();
  };

  test("odd bytes, missing fields, numeric data and 1,000 fields reach a subscriber and a group consumer; the loops go on", async () => {
    const client = await connected();
    const stream = fresh();
    const group = freshGroup();
    const sub: StreamMessage[] = [];
    const work: StreamMessage[] = [];
    await client.subscribe(stream, (m) => void sub.push(m), { count: 3 });
    expect(await client.createConsumerGroup(stream, group, "$")).toBe(true);
    await client.consumeFromGroup(stream, group, "w", (m) => void work.push(m), { count: 3 });

    const manyFields = Array.from({ length: 1_000 }, (_, i) => [`f${i}`, `v${i}`]).flat();
    // Raw bytes straight from a shell ($'...'), and binary on stdin (-x takes the last argument from it).
    await run("bash", ["-c", `redis-cli -p ${server.port} XADD '${stream}' '*' data $'\\xff\\xfe' other x`]);
    const binary = Buffer.from([0x00, 0x41, 0x80, 0xc3, 0x28, 0xff, 0x0a]);
    await cli(["-x", "XADD", stream, "*", "other", "y", "data"], binary);
    await cli(["XADD", stream, "*", "foo", "bar"]);
    await cli(["XADD", stream, "*", "data", "42"]);
    await cli(["XADD", stream, "*", "data", "12abc"]);
    await cli(["XADD", stream, "*", "data", "hello world", "timestamp", "12345"]);
    await cli(["XADD", stream, "*", "data", '{"a":1}', "timestamp", "not-a-number"]);
    await cli(["XADD", stream, "*", "data", '{"a":', "timestamp", "-5"]);
    await cli(["XADD", stream, "*", "data", ""]);
    await cli(["XADD", stream, "*", ...manyFields]);
    const foreign = await xrangeIds(stream);
    expect(foreign).toHaveLength(10);
    const ms = (id: string): number => Number(id.split("-")[0]);
    const raw = await redis.xrangeBuffer(stream, "-", "+");
    expect(raw[1]![1][3]).toEqual(binary);

    const ours = (await client.publishMessage(stream, { ours: true }))!;
    const expected: [unknown, number][] = [
      [Buffer.from([0xff, 0xfe]).toString("utf8"), ms(foreign[0]!)],
      [binary.toString("utf8"), ms(foreign[1]!)],
      [{ foo: "bar" }, ms(foreign[2]!)],
      [42, ms(foreign[3]!)],
      ["12abc", ms(foreign[4]!)],
      ["hello world", 12345],
      [{ a: 1 }, ms(foreign[6]!)],
      ['{"a":', ms(foreign[7]!)],
      ["", ms(foreign[8]!)],
      [Object.fromEntries(Array.from({ length: 1_000 }, (_, i) => [`f${i}`, `v${i}`])), ms(foreign[9]!)],
    ];
    expect(expected[0]![0]).toBe("\uFFFD\uFFFD");

    for (const [who, got] of [["subscriber", sub], ["consumer", work]] as const) {
      await until(() => got.length >= 11, 5_000, () => `${who} received ${got.length}/11`);
      await sleep(50); // nothing more may arrive (a wait for something NOT to happen)
      expect(got.map((m) => m.id), who).toEqual([...foreign, ours]);
      expect(got.slice(0, 10).map((m) => [m.data, m.timestamp]), who).toEqual(expected);
      expect(got.every((m) => m.stream === stream), who).toBe(true);
      expect(got[10]!.data, who).toEqual({ ours: true });
    }
    await until(async () => Number(((await redis.xpending(stream, group)) as [number])[0]) === 0, 5_000, "every foreign entry acked");
    expect(client.getStatus().counters.callbackErrors).toBe(0);

    // The loops are alive: one more normal publish reaches both.
    const last = (await client.publishMessage(stream, { last: true }))!;
    await until(() => sub.at(-1)?.id === last && work.at(-1)?.id === last, 5_000, "a normal publish afterwards");
  });
});

describe("streams deleted while they are read", () => {
  const collect = (): { records: Record<string, unknown>[] } => {
    const records: Record<string, unknown>[] = [];
    setLogger((r) => void records.push(r));
    return { records };
  };
  const pending = async (stream: string, group: string): Promise<number> => Number(((await redis.xpending(stream, group)) as [number])[0]);

  test("a group consumer whose stream is DELeted waits (logged), and resumes once createConsumerGroup is called again", async () => {
    const { records } = collect();
    const client = await connected();
    const stream = fresh();
    const group = freshGroup();
    const got: StreamMessage<{ n: number }>[] = [];
    expect(await client.createConsumerGroup(stream, group, "$")).toBe(true);
    await client.consumeFromGroup<{ n: number }>(stream, group, "w", (m) => void got.push(m), { blockMs: 300 });
    const before = [(await client.publishMessage(stream, { n: 1 }))!, (await client.publishMessage(stream, { n: 2 }))!];
    await until(() => got.length >= 2, 5_000, "entries before the DEL");
    await until(async () => (await pending(stream, group)) === 0, 5_000, "acked before the DEL");

    expect(await redis.del(stream)).toBe(1);
    await until(
      () => records.some((r) => String(r.level).toLowerCase() === "warn" && r.stream === stream && r.group === group && r.consumer === "w"),
      5_000,
      () => `a warn record about the missing group; got ${JSON.stringify(records.slice(-3))}`,
    );
    // Published while the group is missing: the stream comes back without the group.
    const during = (await client.publishMessage(stream, { n: 3 }))!;
    await sleep(700); // it must NOT be delivered while the group is missing
    expect(got).toHaveLength(2);
    expect(client.getStatus().consumerGroups).toEqual([`${stream}:${group}:w`]);

    expect(await client.createConsumerGroup(stream, group, "0")).toBe(true);
    const after = (await client.publishMessage(stream, { n: 4 }))!;
    await until(() => got.length >= 4, 10_000, () => `resumed: ${got.length}/4`);
    await sleep(100); // nothing more may arrive (a wait for something NOT to happen)
    expect(got.map((m) => [m.id, m.data.n])).toEqual([
      [before[0], 1],
      [before[1], 2],
      [during, 3],
      [after, 4],
    ]);
    await until(async () => (await pending(stream, group)) === 0, 5_000, "acked after resuming");
  });

  test("with createIfMissing the consumer creates the group, recreates it after a DEL and consumes the new entries", async () => {
    const client = await connected();
    const stream = fresh();
    const group = freshGroup();
    const got: StreamMessage<{ n: number }>[] = [];
    // The group does not exist: without createIfMissing this is ERR_NOGROUP.
    const err = await rejection(() => client.consumeFromGroup(stream, group, "w", () => {}), "consume a missing group");
    expect(err.code).toBe("ERR_NOGROUP");
    await client.consumeFromGroup<{ n: number }>(stream, group, "w", (m) => void got.push(m), { blockMs: 300, createIfMissing: true });
    const groupsOf = async (): Promise<string[]> => ((await redis.xinfo("GROUPS", stream)) as unknown[][]).map((g) => String(g[1]));
    expect(await groupsOf()).toEqual([group]);
    const first = (await client.publishMessage(stream, { n: 1 }))!;
    await until(() => got.length >= 1, 5_000, "entry before the DEL");

    expect(await redis.del(stream)).toBe(1);
    await until(async () => (await redis.exists(stream)) === 1 && (await groupsOf()).includes(group), 10_000, "group recreated");
    const later = [(await client.publishMessage(stream, { n: 2 }))!, (await client.publishMessage(stream, { n: 3 }))!];
    await until(() => got.length >= 3, 10_000, () => `after the DEL: ${got.length}/3`);
    await sleep(100); // nothing more may arrive (a wait for something NOT to happen)
    expect(got.map((m) => [m.id, m.data.n])).toEqual([
      [first, 1],
      [later[0], 2],
      [later[1], 3],
    ]);
    await until(async () => (await pending(stream, group)) === 0, 5_000, "acked");
    expect(client.getStatus().consumerGroups).toEqual([`${stream}:${group}:w`]);
  });

  test("a subscriber whose stream is DELeted and recreated with smaller ids counts a reset and gets the new entries", async () => {
    const client = await connected();
    const stream = fresh();
    const got: StreamMessage<{ n: string }>[] = [];
    await client.subscribe<{ n: string }>(stream, (m) => void got.push(m), { blockMs: 500 });
    const old = [(await client.publishMessage(stream, { n: "a" }))!, (await client.publishMessage(stream, { n: "b" }))!];
    await until(() => got.length >= 2, 5_000, "entries before the DEL");
    expect(client.getStatus().counters.streamResets).toBe(0);

    await redis.del(stream);
    await redis.xadd(stream, "1-1", "data", JSON.stringify({ n: "x1" }), "timestamp", "1");
    await redis.xadd(stream, "1-2", "data", JSON.stringify({ n: "x2" }), "timestamp", "2");
    await until(() => got.length >= 4, 5_000, () => `after the recreation: ${got.length}/4`);
    expect(client.getStatus().counters.streamResets).toBeGreaterThanOrEqual(1);
    const next = (await client.publishMessage(stream, { n: "c" }))!;
    await until(() => got.length >= 5, 5_000, "a normal publish afterwards");
    await sleep(100); // nothing more may arrive (a wait for something NOT to happen)
    expect(got.map((m) => [m.id, m.data.n])).toEqual([
      [old[0], "a"],
      [old[1], "b"],
      ["1-1", "x1"],
      ["1-2", "x2"],
      [next, "c"],
    ]);
    expect(got[2]!.timestamp).toBe(1);
  });

  test("a subscriber whose stream lost its newest entries (a failover's lost tail) resumes after the new end: nothing is delivered twice", async () => {
    const client = await connected();
    const stream = fresh();
    const got: StreamMessage<{ n: number }>[] = [];
    await client.subscribe<{ n: number }>(stream, (m) => void got.push(m), { blockMs: 200 });
    const ids: string[] = [];
    for (let n = 0; n < 5; n++) ids.push((await client.publishMessage(stream, { n }))!);
    await until(() => got.length >= 5, 5_000, "the five entries");
    // What a promoted replica (or a restarted server without persistence that replayed the
    // first three) holds when the old primary acknowledged two entries it never replicated: the
    // first three, with the stream's last id the third one's. Built atomically the way every
    // server accepts (Redis 8.2 refuses an XSETID below the stream's max deleted id).
    const kept = await redis.xrange(stream, "-", ids[2]!);
    const rebuild = redis.multi().del(stream);
    for (const [id, fields] of kept) rebuild.xadd(stream, id, ...fields);
    await rebuild.exec();
    expect(await redis.xinfo("STREAM", stream)).toEqual(expect.arrayContaining(["last-generated-id", ids[2], "max-deleted-entry-id", "0-0"]));
    await until(() => client.getStatus().counters.streamResets >= 1, 10_000, "the lost tail noticed");
    const next = (await client.publishMessage(stream, { n: 5 }))!;
    await until(() => got.length >= 6, 5_000, "the publish after the failover");
    await sleep(300); // nothing more may arrive (a wait for something NOT to happen)
    expect(got.map((m) => m.id)).toEqual([...ids, next]);
    expect(client.getStatus().counters.gaps).toBe(0);
  });
});

describe("disconnect() during a storm", () => {
  test("every publish settles, running consumer callbacks finish and are acked, nothing is left unhandled", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const client = await connected({ commandTimeoutMs: 1_000 });
      const stream = fresh();
      const group = freshGroup();
      expect(await client.createConsumerGroup(stream, group, "$")).toBe(true);
      let delivered = 0;
      let deliveredAfterDisconnect = 0;
      let disconnected = false;
      await client.subscribe(stream, async () => {
        await sleep(1); // simulated work
        delivered++;
        if (disconnected) deliveredAfterDisconnect++;
      });
      const started = new Set<string>();
      const finished = new Set<string>();
      await client.consumeFromGroup(
        stream,
        group,
        "worker",
        async (m) => {
          started.add(m.id);
          await sleep(10); // simulated work
          finished.add(m.id);
        },
        { count: 10 },
      );

      const publishes: Promise<string | null>[] = [];
      let disconnecting: Promise<void> | undefined;
      for (let wave = 0; wave < 50; wave++) {
        for (let i = 0; i < 20; i++) {
          const p = client.publishMessage(stream, { n: wave * 20 + i });
          p.catch(() => {}); // examined below with allSettled; a rejection must not go unhandled meanwhile
          publishes.push(p);
        }
        if (wave === 20) {
          await until(() => started.size > 0, 5_000, "the consumer is busy");
          disconnecting = client.disconnect().then(() => void (disconnected = true));
        }
        await sleep(2); // paces the publishes
      }
      await disconnecting;

      const settled = await Promise.race([Promise.allSettled(publishes), sleep(10_000).then(() => null)]);
      expect(settled, "every publish promise settled within 10 s").not.toBeNull();
      expect(settled!).toHaveLength(1_000);
      // None rejects: those made after disconnect() began fail open (null), like an outage.
      expect(settled!.filter((s) => s.status === "rejected")).toEqual([]);
      const values = settled!.map((s) => (s.status === "fulfilled" ? s.value : undefined));
      const ids = values.filter((v): v is string => typeof v === "string");
      expect(ids.length).toBeGreaterThan(0);
      expect(values.filter((v) => v === null).length).toBeGreaterThan(0);

      // Every id a publish returned is in the stream, with its payload.
      const stored = new Map((await redis.xrange(stream, "-", "+")).map(([id, f]) => [id, f[1]]));
      for (const id of ids) expect(stored.has(id), id).toBe(true);
      settled!.forEach((s, n) => {
        if (s.status === "fulfilled" && s.value !== null) expect(JSON.parse(stored.get(s.value)!)).toEqual({ n });
      });

      // Callbacks that started have finished and are acked; only never-started entries stay pending.
      expect(started.size).toBeGreaterThan(0);
      expect([...started].filter((id) => !finished.has(id))).toEqual([]);
      const pendingIds = ((await redis.xpending(stream, group, "-", "+", 10_000)) as [string][]).map(([id]) => id);
      expect(pendingIds.filter((id) => started.has(id))).toEqual([]);
      expect(client.getStatus().counters.acked).toBe(started.size);

      // Nothing runs after disconnect() resolved.
      const startedAtClose = started.size;
      const deliveredAtClose = delivered;
      await sleep(300); // nothing may run after disconnect() resolved (a wait for something NOT to happen)
      expect(started.size).toBe(startedAtClose);
      expect(delivered).toBe(deliveredAtClose);
      expect(deliveredAfterDisconnect).toBe(0);
      expect(client.getStatus().state).toBe("closed");
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  test("the same storm in a child process: it exits by itself with code 0 within 10 s", async () => {
    const stream = fresh();
    const group = freshGroup();
    const fixture = resolve(here, "fixtures", "storm-disconnect.mjs");
    const child = spawn(process.execPath, [fixture, server.url, stream, group], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      child.kill("SIGKILL");
    }, 10_000);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) => child.once("exit", (c, s) => r([c, s])));
    clearTimeout(timer);
    expect(killed, `still running after 10 s; stdout=${stdout} stderr=${stderr}`).toBe(false);
    expect(signal).toBeNull();
    expect(code, stderr).toBe(0);
    const line = stdout.split("\n").find((l) => l.startsWith("summary "));
    expect(line, stdout).toBeDefined();
    const summary = JSON.parse(line!.slice("summary ".length)) as {
      settled: number; ids: number; nulls: number; closed: number; otherRejections: number; started: number; unfinished: number; startedIds: string[];
    };
    expect(summary.settled).toBe(1_000);
    expect(summary.ids + summary.nulls + summary.closed).toBe(1_000);
    expect(summary.otherRejections).toBe(0);
    expect(summary.ids).toBeGreaterThan(0);
    expect(summary.started).toBeGreaterThan(0);
    expect(summary.unfinished).toBe(0);
    expect(stdout).toContain("disconnected");
    const pendingIds = ((await redis.xpending(stream, group, "-", "+", 10_000)) as [string][]).map(([id]) => id);
    expect(pendingIds.filter((id) => summary.startedIds.includes(id))).toEqual([]);
  });
});

describe("offlineBuffer", () => {
  let own: RedisServer;
  let ownRedis: Redis;

  beforeAll(async () => {
    own = await startRedis({ private: true });
    ownRedis = new Redis(own.url, { maxRetriesPerRequest: null, retryStrategy: () => 50 });
    ownRedis.on("error", () => {}); // expected while the server is down
  });

  afterAll(async () => {
    ownRedis?.disconnect();
    await own?.stop();
  });

  /** Kills the server and waits until the client has noticed (a command failed, state no longer connected). */
  async function killAndNotice(client: StreamsClient): Promise<void> {
    await own.kill("SIGKILL");
    // createConsumerGroup is never parked: it fails on the dead connection, which marks it lost.
    expect(await client.createConsumerGroup(fresh(), "probe")).toBe(false);
    await until(() => !client.getStatus().connected, 5_000, "the client noticed the lost connection");
  }

  test("150 publishes while Redis is down: 100 are kept and written after the restart, 50 resolve null at once; disconnect() resolves parked ones null", async () => {
    const client = await connected({ offlineBuffer: 100 }, own.url);
    expect(client.getStatus().config.offlineBuffer).toBe(100);
    const stream = fresh();
    expect(await client.publishMessage(stream, { n: -1 })).toMatch(/^\d+-\d+$/);
    await killAndNotice(client);

    const outcome: ({ id: string | null } | undefined)[] = new Array(150).fill(undefined);
    const calls = Array.from({ length: 150 }, (_, n) =>
      client.publishMessage(stream, { n }).then((id) => {
        outcome[n] = { id };
        return id;
      }),
    );
    // The 50 beyond the buffer resolve null while the server is still down (it is restarted
    // only below); the first 100 stay parked.
    await until(() => outcome.filter((o) => o !== undefined).length >= 50, 10_000, "50 publishes resolved");
    await sleep(300); // no parked publish may settle while Redis is down (a wait for something NOT to happen)
    expect(outcome.slice(0, 100).filter((o) => o !== undefined)).toEqual([]);
    expect(outcome.slice(100)).toEqual(new Array(50).fill({ id: null }));
    expect(client.getStatus().counters.publishFailed).toBe(50);

    await own.restart();
    await until(() => outcome.every((o) => o !== undefined), 10_000, () => `${outcome.filter((o) => o?.id).length}/100 parked publishes written`);
    await Promise.all(calls);
    const kept = outcome.map((o, n) => ({ n, id: o!.id })).filter((o) => o.id !== null) as { n: number; id: string }[];
    expect(kept).toHaveLength(100);
    // Call order is kept: the first 100 calls are the ones parked, and their ids increase
    // in call order.
    expect(kept.map((k) => k.n)).toEqual(Array.from({ length: 100 }, (_, n) => n));
    expect(kept.map((k) => k.id)).toEqual(kept.map((k) => k.id).sort(compareIds));
    // The restarted server (no persistence) holds exactly the kept publishes, each under the id
    // its promise resolved to.
    const stored = await ownRedis.xrange(stream, "-", "+");
    expect(stored).toHaveLength(100);
    const idOfN = new Map(kept.map((k) => [k.n, k.id]));
    for (const [id, fields] of stored) {
      const { n } = JSON.parse(fields[1]!) as { n: number };
      expect(idOfN.get(n), `entry ${id} (n=${n})`).toBe(id);
    }
    expect(stored.map(([id]) => id)).toEqual(kept.map((k) => k.id).sort(compareIds));
    expect(client.getStatus().counters.published).toBe(101);
    await until(() => client.getStatus().connected, 5_000, "connected again");

    // Parked publishes resolve null when the client disconnects.
    await killAndNotice(client);
    const parked = Array.from({ length: 10 }, (_, n) => client.publishMessage(stream, { parked: n }));
    let settledEarly = false;
    void Promise.race(parked).then(() => (settledEarly = true));
    await sleep(300); // parked publishes must NOT settle while Redis is down
    expect(settledEarly).toBe(false);
    await client.disconnect();
    // disconnect() settles them (null); were they left parked, this would hang until the test's timeout.
    expect(await Promise.all(parked)).toEqual(new Array(10).fill(null));
    expect(client.getStatus().counters.publishFailed).toBe(60);
  });
});
