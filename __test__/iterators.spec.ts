// client.stream() and client.consume(): async iterators with backpressure, AbortSignal and
// ending, against a real Redis.
import { randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { type ConsumedMessage, type StreamMessage } from "../index.js";
import { clientPool, closeRedis, commandCalls, openRedis, type Checker, type TestServer } from "./helpers/fixture.js";
import { sleep, until } from "./helpers/until.js";

const fresh = (): string => `t:iterators:${randomUUID()}`;

let server: TestServer;
let redis: Checker;
const pool = clientPool(() => server.url);

beforeAll(async () => {
  ({ server, redis } = await openRedis());
});
afterEach(() => pool.disconnectAll());
afterAll(() => closeRedis(server, redis));

/** Index of `id` in the stream's ids (the subscription's position as a count). */
function position(all: string[], id: string | null | undefined): number {
  return id ? all.indexOf(id) + 1 : 0;
}

describe("client.stream()", () => {
  test("yields every message in order; break ends the subscription", async () => {
    const client = await pool.connected();
    const stream = fresh();
    const published = (await client.publishBatch(stream, Array.from({ length: 30 }, (_, i) => ({ i })))) as string[];
    const seen: StreamMessage<{ i: number }>[] = [];
    for await (const m of client.stream<{ i: number }>(stream, { startId: "0" })) {
      seen.push(m);
      if (seen.length === 30) break;
    }
    expect(seen.map((m) => m.id)).toEqual(published);
    expect(seen.map((m) => m.data.i)).toEqual(published.map((_, i) => i));
    expect(client.getStatus().subscriptionDetails).toEqual([]);
  });

  test('"$" (default): messages published after the iterator was created', async () => {
    const client = await pool.connected();
    const stream = fresh();
    await client.publishMessage(stream, { old: true });
    const it = client.stream<{ n: number }>(stream);
    await until(() => client.getStatus().subscriptionDetails.some((d) => d.lastId !== null), 5_000, "subscribed");
    const id = await client.publishMessage(stream, { n: 1 });
    const { value } = await it.next();
    expect(value!.id).toBe(id);
    await it.return!();
  });

  test("aborting the signal ends the loop normally and the subscription with it", async () => {
    const client = await pool.connected();
    const stream = fresh();
    const ac = new AbortController();
    const seen: number[] = [];
    const loop = (async () => {
      for await (const m of client.stream<{ n: number }>(stream, { signal: ac.signal })) {
        seen.push(m.data.n);
        if (seen.length === 3) ac.abort();
      }
      return "ended";
    })();
    await until(() => client.getStatus().subscriptionDetails.length === 1, 5_000, "subscribed");
    for (let n = 0; n < 10; n++) await client.publishMessage(stream, { n });
    expect(await loop).toBe("ended");
    expect(seen).toEqual([0, 1, 2]);
    await until(() => client.getStatus().subscriptionDetails.length === 0, 5_000, "the subscription is gone");
  });

  test("an already aborted signal yields nothing and subscribes to nothing", async () => {
    const client = await pool.connected();
    const it = client.stream(fresh(), { signal: AbortSignal.abort() });
    expect(await it.next()).toEqual({ value: undefined, done: true });
    expect(client.getStatus().subscriptionDetails).toEqual([]);
  });

  test("backpressure: a slow loop holds the reader back to a bounded distance, then gets everything", async () => {
    const client = await pool.connected();
    const stream = fresh();
    const total = 3_000;
    const published: string[] = [];
    for (let i = 0; i < total; i += 500) {
      published.push(...((await client.publishBatch(stream, Array.from({ length: 500 }, (_, k) => ({ i: i + k })))) as string[]));
    }
    const highWaterMark = 16;
    const count = 10;
    // Unread messages: the iterator's buffer (highWaterMark), the batches the trampoline holds
    // (4) and the one waiting in Rust's queue, each up to `count`.
    const bound = highWaterMark + 5 * count;
    const it = client.stream<{ i: number }>(stream, { startId: "0", count, highWaterMark });
    const taken: number[] = [];
    for (let k = 0; k < 20; k++) taken.push((await it.next()).value!.data.i);
    const lastId = (): string | null | undefined => client.getStatus().subscriptionDetails[0]!.lastId;
    await until(() => position(published, lastId()) >= 20, 5_000, "the reader went ahead of the loop");
    // The loop stops taking: the reader must stop too. Asserting that something does not
    // happen needs a window; 300 ms is many reads' worth on this machine.
    await sleep(300);
    expect(position(published, lastId()) - taken.length).toBeLessThanOrEqual(bound);
    for (;;) {
      const { value, done } = await it.next();
      expect(done).toBe(false);
      taken.push(value!.data.i);
      if (taken.length === total) break;
    }
    expect(taken).toEqual(published.map((_, i) => i));
    await it.return!();
    expect(client.getStatus().subscriptionDetails).toEqual([]);
  });

  test("disconnect() ends a running loop; stream() after disconnect() throws ERR_CLOSED from next()", async () => {
    const client = await pool.connected();
    const stream = fresh();
    const loop = (async () => {
      let n = 0;
      for await (const _ of client.stream(stream)) n++;
      return n;
    })();
    await until(() => client.getStatus().subscriptionDetails.length === 1, 5_000, "subscribed");
    await client.publishMessage(stream, { n: 1 });
    await until(() => client.getStatus().counters.delivered === 1, 5_000, "delivered");
    await client.disconnect();
    expect(await loop).toBe(1);
    await expect(client.stream(stream).next()).rejects.toMatchObject({ code: "ERR_CLOSED" });
  });

  test("bad options throw ERR_INVALID_ARG at once", async () => {
    const client = await pool.connected();
    expect(() => client.stream(fresh(), { highWaterMark: 0 })).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARG" }));
    expect(() => client.stream(fresh(), { signal: {} as AbortSignal })).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARG" }));
    await expect(client.stream("", {}).next()).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
  });
});

describe("client.consume()", () => {
  test("messages carry ack(); un-acked ones stay pending and come back first to the next consume()", async () => {
    const client = await pool.connected();
    const stream = fresh();
    expect(await client.createConsumerGroup(stream, "g", "0")).toBe(true);
    const published = (await client.publishBatch(stream, Array.from({ length: 10 }, (_, i) => ({ i })))) as string[];
    const seen: ConsumedMessage<{ i: number }>[] = [];
    for await (const m of client.consume<{ i: number }>(stream, "g", "c1", { count: 4 })) {
      seen.push(m);
      if (m.data.i % 2 === 0) await m.ack();
      if (seen.length === 10) break;
    }
    expect(seen.map((m) => m.id)).toEqual(published);
    expect(client.getStatus().consumerGroups).toEqual([]);
    const pending = ((await redis.xpending(stream, "g", "-", "+", 100)) as [string][]).map(([id]) => id);
    expect(pending).toEqual(published.filter((_, i) => i % 2 === 1));

    // A restart of the same consumer gets its pending entries again, first.
    const again: string[] = [];
    for await (const m of client.consume(stream, "g", "c1")) {
      again.push(m.id);
      await m.ack();
      if (again.length === 5) break;
    }
    expect(again).toEqual(pending);
    expect(await redis.xpending(stream, "g")).toEqual([0, null, null, null]);
  });

  test("deleteOnAck: ack() also deletes the entry from the stream (on every server)", async () => {
    const client = await pool.connected();
    const stream = fresh();
    await client.createConsumerGroup(stream, "g", "0");
    const published = (await client.publishBatch(stream, [1, 2, 3, 4])) as string[];
    const seen: string[] = [];
    for await (const m of client.consume(stream, "g", "c", { deleteOnAck: true })) {
      seen.push(m.id);
      if (seen.length <= 2) await m.ack();
      if (seen.length === 4) break;
    }
    // The two acknowledged are gone, the two others stay (and pending).
    expect((await redis.xrange(stream, "-", "+")).map(([id]) => id)).toEqual(published.slice(2));
    expect(await redis.xpending(stream, "g")).toEqual([2, published[2], published[3], [["c", "2"]]]);
  });

  test("acks of one tick go out in one XACK", async () => {
    const client = await pool.connected();
    const stream = fresh();
    await client.createConsumerGroup(stream, "g", "0");
    await client.publishBatch(stream, [1, 2, 3]);
    const batch: ConsumedMessage[] = [];
    const it = client.consume(stream, "g", "c", { count: 3 });
    for (let i = 0; i < 3; i++) batch.push((await it.next()).value!);
    const before = await commandCalls(server, "xack");
    await Promise.all(batch.map((m) => m.ack()));
    const after = await commandCalls(server, "xack");
    expect(after - before).toBe(1);
    expect(client.getStatus().counters.acked).toBe(3);
    await it.return!();
  });

  test("aborting the signal stops the consumer; a missing group rejects next() with ERR_NOGROUP", async () => {
    const client = await pool.connected();
    const stream = fresh();
    await client.createConsumerGroup(stream, "g", "0");
    const ac = new AbortController();
    const loop = (async () => {
      let n = 0;
      for await (const m of client.consume(stream, "g", "c", { signal: ac.signal })) {
        n++;
        await m.ack();
        ac.abort();
      }
      return n;
    })();
    await client.publishMessage(stream, { n: 1 });
    expect(await loop).toBe(1);
    await until(() => client.getStatus().consumerGroups.length === 0, 5_000, "the consumer stopped");
    await expect(client.consume(fresh(), "nope", "c").next()).rejects.toMatchObject({ code: "ERR_NOGROUP" });
  });
});
