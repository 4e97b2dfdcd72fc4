import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { StreamsClient } from "../index.js";
import { closeRedis, connectedClient, openRedis, type Checker, type TestServer } from "./helpers/fixture.js";

let server: TestServer;
let redis: Checker;
let client: StreamsClient;

const fresh = (): string => `t:publish:${randomUUID()}`;

beforeAll(async () => {
  ({ server, redis } = await openRedis());
  client = await connectedClient(server.url);
});

afterAll(() => closeRedis(server, redis, client));

describe("publishMessage", () => {
  test("keeps call order: 3,000 concurrent publishes (and a batch among them) land in the stream in the order of the calls", async () => {
    const stream = fresh();
    const calls: Promise<string | null | (string | null)[]>[] = [];
    for (let n = 0; n < 3_000; n++) {
      calls.push(client.publishMessage(stream, { n }));
      if (n === 1_500) calls.push(client.publishBatch(stream, [{ n: "b0" }, { n: "b1" }]));
    }
    const ids = (await Promise.all(calls)).flat();
    const stored = await redis.xrange(stream, "-", "+");
    // The stream's order is the call order: entry k holds the k-th call's payload and id.
    expect(stored.map(([id]) => id)).toEqual(ids);
    const order = stored.map(([, f]) => (JSON.parse(f[1]!) as { n: number | string }).n);
    const expected: (number | string)[] = [];
    for (let n = 0; n < 3_000; n++) {
      expected.push(n);
      if (n === 1_500) expected.push("b0", "b1");
    }
    expect(order).toEqual(expected);
  });

  test("writes exactly the fields data then timestamp, and returns the XADD id", async () => {
    const stream = fresh();
    const payload = { a: 1, s: "x", nested: { arr: [1, 2, "three"], yes: true, none: null } };
    const before = Date.now();
    const id = await client.publishMessage(stream, payload);
    const after = Date.now();

    expect(id).toMatch(/^\d+-\d+$/);
    const entries = await redis.xrange(stream, "-", "+");
    expect(entries).toHaveLength(1);
    const [entryId, fields] = entries[0]!;
    expect(entryId).toBe(id);
    expect(fields).toHaveLength(4);
    expect(fields[0]).toBe("data");
    expect(JSON.parse(fields[1]!)).toEqual(payload);
    expect(fields[2]).toBe("timestamp");
    expect(fields[3]).toMatch(/^\d+$/);
    const ts = Number(fields[3]);
    expect(ts).toBeGreaterThanOrEqual(before);
    expect(ts).toBeLessThanOrEqual(after);
  });

  test("accepts primitives and arrays as the whole payload", async () => {
    const stream = fresh();
    const payloads: unknown[] = ["plain string", 42, true, null, [1, { b: 2 }]];
    for (const p of payloads) await client.publishMessage(stream, p);
    const entries = await redis.xrange(stream, "-", "+");
    expect(entries.map(([, f]) => JSON.parse(f[1]!))).toEqual(payloads);
  });

  test("writes a bigint as a decimal string", async () => {
    const stream = fresh();
    await client.publishMessage(stream, { n: 12345678901234567890n, small: 1n });
    const entries = await redis.xrange(stream, "-", "+");
    expect(entries[0]![1][1]).toBe('{"n":"12345678901234567890","small":"1"}');
  });

  test("honours JSON.stringify semantics (toJSON, Date, undefined members)", async () => {
    const stream = fresh();
    const date = new Date(0);
    await client.publishMessage(stream, { d: date, gone: undefined, custom: { toJSON: () => "custom" } });
    const entries = await redis.xrange(stream, "-", "+");
    expect(JSON.parse(entries[0]![1][1]!)).toEqual({ d: "1970-01-01T00:00:00.000Z", custom: "custom" });
  });

  test("uses a custom id: explicit <ms>-<seq>, <ms>-* and *", async () => {
    const stream = fresh();
    expect(await client.publishMessage(stream, { n: 1 }, "1000-0")).toBe("1000-0");
    expect(await client.publishMessage(stream, { n: 2 }, "2000-*")).toBe("2000-0");
    expect(await client.publishMessage(stream, { n: 3 }, "2000-*")).toBe("2000-1");
    const auto = await client.publishMessage(stream, { n: 4 }, "*");
    expect(auto).toMatch(/^\d+-\d+$/);
    expect(Number(auto!.split("-")[0])).toBeGreaterThan(2000);
    const entries = await redis.xrange(stream, "-", "+");
    expect(entries.map(([id]) => id)).toEqual(["1000-0", "2000-0", "2000-1", auto]);
    expect(entries.map(([, f]) => JSON.parse(f[1]!).n)).toEqual([1, 2, 3, 4]);
  });

  test.each(["abc", "1-2-3", "-1", "1000-x", "x-1"])("rejects the malformed id %j with ERR_INVALID_ARG and writes nothing", async (badId) => {
    const stream = fresh();
    await expect(client.publishMessage(stream, { n: 1 }, badId)).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
    expect(await redis.exists(stream)).toBe(0);
  });

  test("rejects an id not greater than the stream's top with ERR_INVALID_ARG", async () => {
    const stream = fresh();
    expect(await client.publishMessage(stream, { n: 1 }, "5000-0")).toBe("5000-0");
    await expect(client.publishMessage(stream, { n: 2 }, "5000-0")).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
    await expect(client.publishMessage(stream, { n: 3 }, "4000-0")).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
    expect(await redis.xlen(stream)).toBe(1);
    // The client is still usable afterwards.
    expect(await client.publishMessage(stream, { n: 4 }, "6000-0")).toBe("6000-0");
  });

  test("rejects an empty stream name with ERR_INVALID_ARG", async () => {
    await expect(client.publishMessage("", { n: 1 })).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
  });

  test("rejects data JSON cannot represent with ERR_INVALID_ARG and writes nothing", async () => {
    const stream = fresh();
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    await expect(client.publishMessage(stream, cyclic)).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
    await expect(client.publishMessage(stream, () => 1)).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
    await expect(client.publishMessage(stream, undefined)).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
    expect(await redis.exists(stream)).toBe(0);
  });

  test("concurrent publishes all land, each with a distinct id", async () => {
    const stream = fresh();
    const ids = await Promise.all(Array.from({ length: 200 }, (_, i) => client.publishMessage(stream, { i })));
    expect(ids.every((id) => typeof id === "string")).toBe(true);
    expect(new Set(ids).size).toBe(200);
    const entries = await redis.xrange(stream, "-", "+");
    expect(entries.map(([id]) => id).sort()).toEqual([...(ids as string[])].sort());
    const byId = new Map(entries.map(([id, f]) => [id, JSON.parse(f[1]!).i as number]));
    ids.forEach((id, i) => expect(byId.get(id!)).toBe(i));
  });
});

describe("publishBatch", () => {
  test("keeps the order, returns one id per item, and writes every item", async () => {
    const stream = fresh();
    // Items of every JSON kind, and strings with line breaks (the batch crosses into Rust
    // as one newline-joined text, so a raw newline in an item would split it).
    const items: unknown[] = Array.from({ length: 25 }, (_, i) => ({ i, label: `item-${i}` }));
    items.push({ text: "two\nlines\r\n", sep: "\u2028\u2029" }, "a\nstring", 7, null, [1, "\n"], { big: 12345678901234567890n });
    const before = Date.now();
    const ids = await client.publishBatch(stream, items);
    const after = Date.now();

    expect(ids).toHaveLength(items.length);
    for (const id of ids) expect(id).toMatch(/^\d+-\d+$/);
    const entries = await redis.xrange(stream, "-", "+");
    expect(entries.map(([id]) => id)).toEqual(ids);
    entries.forEach(([, fields], i) => {
      expect(fields[0]).toBe("data");
      const expected = JSON.parse(JSON.stringify(items[i], (_k, v) => (typeof v === "bigint" ? v.toString() : v)));
      expect(JSON.parse(fields[1]!)).toEqual(expected);
      expect(fields[2]).toBe("timestamp");
      const ts = Number(fields[3]);
      expect(ts).toBeGreaterThanOrEqual(before);
      expect(ts).toBeLessThanOrEqual(after);
    });
  });

  test("an empty batch writes nothing and resolves to an empty array", async () => {
    const stream = fresh();
    expect(await client.publishBatch(stream, [])).toEqual([]);
    expect(await redis.exists(stream)).toBe(0);
  });

  test("rejects an empty stream name with ERR_INVALID_ARG", async () => {
    await expect(client.publishBatch("", [{ a: 1 }])).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
  });
});
