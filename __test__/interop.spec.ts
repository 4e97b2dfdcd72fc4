import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import { trace } from "@opentelemetry/api";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { StreamsClient, type StreamMessage } from "../index.js";
import { closeRedis, connectedClient, openRedis, type Checker, type TestServer } from "./helpers/fixture.js";
import { startTracing } from "./helpers/otel.js";
import { sleep, until } from "./helpers/until.js";

const fresh = (): string => `t:interop:${randomUUID()}`;

let server: TestServer;
let redis: Checker;
let client: StreamsClient;

beforeAll(async () => {
  ({ server, redis } = await openRedis());
  client = await connectedClient(server.url);
});

afterAll(() => closeRedis(server, redis, client));

/** The original ioredis design, ported as-is: how the fleet's older instances write and read. */
const original = {
  publish(stream: string, data: unknown): Promise<string | null> {
    return redis.xadd(stream, "*", "data", JSON.stringify(data), "timestamp", Date.now().toString());
  },
  async readAll(stream: string): Promise<Array<{ id: string; data: unknown; timestamp: number }>> {
    const reply = (await redis.xread("COUNT", 1000, "STREAMS", stream, "0")) ?? [];
    const entries = reply.length > 0 ? reply[0]![1] : [];
    return entries.map(([id, fields]) => {
      const obj: Record<string, string> = {};
      for (let i = 0; i < fields.length; i += 2) obj[fields[i]!] = fields[i + 1]!;
      return { id, data: JSON.parse(obj.data!), timestamp: parseInt(obj.timestamp!, 10) };
    });
  },
};

async function subscribeCollect<T = unknown>(stream: string, startId?: string): Promise<StreamMessage<T>[]> {
  const messages: StreamMessage<T>[] = [];
  await client.subscribe<T>(stream, (m) => void messages.push(m), startId ? { startId } : undefined);
  return messages;
}

const msPart = (id: string): number => Number(id.split("-")[0]);

describe("foreign entries are delivered, never dropped", () => {
  test("non-JSON data falls back to the raw string; timestamp field is used", async () => {
    const stream = fresh();
    const messages = await subscribeCollect(stream);
    const id = await redis.xadd(stream, "*", "data", "notjson", "timestamp", "123");
    await until(() => messages.length >= 1, 5_000, "foreign entry delivered");
    expect(messages[0]).toEqual({ id, stream, data: "notjson", timestamp: 123 });
    client.unsubscribe(stream);
  });

  test("an entry without a data field becomes an object of all fields; timestamp from the id", async () => {
    const stream = fresh();
    const messages = await subscribeCollect(stream);
    const id = (await redis.xadd(stream, "*", "a", "1", "b", "x"))!;
    await until(() => messages.length >= 1, 5_000, "foreign entry delivered");
    expect(messages[0]).toEqual({ id, stream, data: { a: "1", b: "x" }, timestamp: msPart(id) });
    client.unsubscribe(stream);
  });

  test("JSON data without a timestamp field: data parsed, timestamp from the id", async () => {
    const stream = fresh();
    const messages = await subscribeCollect(stream);
    const id = (await redis.xadd(stream, "*", "data", '{"x":1}'))!;
    await until(() => messages.length >= 1, 5_000, "foreign entry delivered");
    expect(messages[0]).toEqual({ id, stream, data: { x: 1 }, timestamp: msPart(id) });
    client.unsubscribe(stream);
  });

  test("an explicit-id entry without timestamp gets the id's ms part", async () => {
    const stream = fresh();
    const messages = await subscribeCollect(stream, "0");
    await redis.xadd(stream, "424242-7", "data", '"s"');
    await until(() => messages.length >= 1, 5_000, "foreign entry delivered");
    expect(messages[0]).toEqual({ id: "424242-7", stream, data: "s", timestamp: 424242 });
    client.unsubscribe(stream);
  });

  test("non-UTF-8 bytes in data are delivered as a string and the loop continues", async () => {
    const stream = fresh();
    const messages = await subscribeCollect(stream);
    const bad = await redis.xadd(stream, "*", "data", Buffer.from([0xff, 0xfe, 0x7b, 0x80, 0x00, 0xc3]), "timestamp", "5");
    const bad2 = await redis.xadd(stream, "*", Buffer.from([0xff, 0x01]), Buffer.from([0x80]));
    const good = await client.publishMessage(stream, { after: "binary" });
    await until(() => messages.length >= 3, 5_000, () => `delivered ${messages.length}/3`);
    expect(messages.map((m) => m.id)).toEqual([bad, bad2, good]);
    expect(typeof messages[0]!.data).toBe("string");
    expect(messages[0]!.timestamp).toBe(5);
    expect(typeof messages[1]!.data).toBe("object");
    expect(messages[1]!.timestamp).toBe(msPart(bad2!));
    expect(messages[2]!.data).toEqual({ after: "binary" });
    client.unsubscribe(stream);
  });
});

describe("interop with the original ioredis implementation", () => {
  test("entries written by the original design are read by streamcast", async () => {
    const stream = fresh();
    const messages = await subscribeCollect(stream);
    const payloads = [{ event: "user.login", data: { userId: 7 } }, "text", 3.5, [1, 2], { nested: { deep: [null, true] } }];
    const before = Date.now();
    const ids: (string | null)[] = [];
    for (const p of payloads) ids.push(await original.publish(stream, p));
    const after = Date.now();
    await until(() => messages.length >= payloads.length, 5_000, () => `delivered ${messages.length}/${payloads.length}`);
    expect(messages.map((m) => m.id)).toEqual(ids);
    expect(messages.map((m) => m.data)).toEqual(payloads);
    for (const m of messages) {
      expect(typeof m.timestamp).toBe("number");
      expect(m.timestamp).toBeGreaterThanOrEqual(before);
      expect(m.timestamp).toBeLessThanOrEqual(after);
    }
    client.unsubscribe(stream);
  });

  test("entries published by streamcast are read by the original design", async () => {
    const stream = fresh();
    const payloads = [{ metric: "cpu", value: 0.42, tags: ["a", "b"] }, "text", 0, null, { big: 9007199254740993n }];
    const before = Date.now();
    const ids = [
      ...(await client.publishBatch(stream, payloads.slice(0, 2))),
      ...(await Promise.all(payloads.slice(2).map((p) => client.publishMessage(stream, p)))),
    ];
    const after = Date.now();
    const read = await original.readAll(stream);
    expect(read.map((r) => r.id).sort()).toEqual([...(ids as string[])].sort());
    const byId = new Map(read.map((r) => [r.id, r]));
    const expected = [...payloads.slice(0, 4), { big: "9007199254740993" }];
    ids.forEach((id, i) => {
      const r = byId.get(id!)!;
      expect(r.data).toEqual(expected[i]);
      expect(r.timestamp).toBeGreaterThanOrEqual(before);
      expect(r.timestamp).toBeLessThanOrEqual(after);
    });
  });

  test("a mixed fleet: interleaved writers, one streamcast subscriber sees all in order", async () => {
    const stream = fresh();
    const messages = await subscribeCollect<{ from: string; n: number }>(stream);
    const ids: (string | null)[] = [];
    for (let n = 0; n < 10; n++) {
      ids.push(n % 2 === 0 ? await original.publish(stream, { from: "ioredis", n }) : await client.publishMessage(stream, { from: "streamcast", n }));
    }
    await until(() => messages.length >= 10, 5_000, () => `delivered ${messages.length}/10`);
    await sleep(100); // nothing more may arrive (a wait for something NOT to happen)
    expect(messages.map((m) => m.id)).toEqual(ids);
    expect(messages.map((m) => m.data.n)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const read = await original.readAll(stream);
    expect(read.map((r) => r.data)).toEqual(messages.map((m) => m.data));
    client.unsubscribe(stream);
  });
});

describe("interop with the original design while tracing is on", () => {
  test("entries published inside a trace carry one extra field the original readers ignore, and both directions still work", async () => {
    const tracing = startTracing();
    const otel = createRequire(import.meta.url)("../otel.js") as typeof import("../otel.js");
    const spans = otel.instrument();
    try {
      const stream = fresh();
      const messages = await subscribeCollect(stream);
      const payloads = [{ event: "order.created", id: 1 }, "text", [1, 2]];
      const ids: (string | null)[] = [];
      await trace.getTracer("test").startActiveSpan("request", async (span) => {
        ids.push(await client.publishMessage(stream, payloads[0]));
        ids.push(...(await client.publishBatch(stream, payloads.slice(1))));
        span.end();
      });
      const foreign = await original.publish(stream, { from: "ioredis" });
      const read = await original.readAll(stream);
      expect(read.map((r) => r.id)).toEqual([...ids, foreign]);
      expect(read.map((r) => r.data)).toEqual([...payloads, { from: "ioredis" }]);
      const raw = await redis.xrange(stream, "-", "+");
      expect(raw.map(([, f]) => f.filter((_, i) => i % 2 === 0))).toEqual([
        ["data", "timestamp", "trace"],
        ["data", "timestamp", "trace"],
        ["data", "timestamp", "trace"],
        ["data", "timestamp"],
      ]);
      await until(() => messages.length >= 4, 5_000, () => `delivered ${messages.length}/4`);
      expect(messages.map((m) => m.data)).toEqual([...payloads, { from: "ioredis" }]);
      expect(messages.slice(0, 3).every((m) => typeof m.traceparent === "string")).toBe(true);
      expect(messages[3]).toEqual({ id: foreign, stream, data: { from: "ioredis" }, timestamp: expect.any(Number) });
      client.unsubscribe(stream);
    } finally {
      spans.disable();
      await tracing.stop();
    }
  });
});
