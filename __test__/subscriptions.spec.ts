// Subscriptions as values: handles, independent subscriptions of one stream, one reader and one
// decode for many subscriptions.
import { randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { StreamsClient, Subscription, type StreamMessage } from "../index.js";
import { blockedIn, clientPool, closeRedis, openRedis, type Checker, type TestServer } from "./helpers/fixture.js";
import { sleep, until } from "./helpers/until.js";

const fresh = (): string => `t:subscriptions:${randomUUID()}`;

let server: TestServer;
let redis: Checker;
const pool = clientPool(() => server.url);

beforeAll(async () => {
  // Private: the test counts the connections blocked in XREAD.
  ({ server, redis } = await openRedis({ private: true }));
});
afterEach(() => pool.disconnectAll());
afterAll(() => closeRedis(server, redis));

/** Connections blocked in XREAD (on all nodes of a cluster together). */
const blockedReaders = (): Promise<number> => blockedIn(server, "xread");

function ids(messages: StreamMessage[]): string[] {
  return messages.map((m) => m.id);
}

describe("Subscription handles", () => {
  test("subscribe() resolves to a Subscription with id, stream and active; unsubscribe() ends only it", async () => {
    const client = await pool.connected();
    const stream = fresh();
    const a: StreamMessage[] = [];
    const b: StreamMessage[] = [];
    const subA = await client.subscribe(stream, (m) => void a.push(m));
    const subB = await client.subscribe(stream, (m) => void b.push(m));
    expect(subA).toBeInstanceOf(Subscription);
    expect(subA.stream).toBe(stream);
    expect(subA.id).not.toBe(subB.id);
    expect(subA.active && subB.active).toBe(true);
    expect(client.getStatus().subscriptions).toEqual([stream]);
    expect(client.getStatus().subscriptionDetails.map((d) => d.id).sort()).toEqual([subA.id, subB.id].sort());

    const first = await client.publishMessage(stream, { n: 1 });
    await until(() => a.length === 1 && b.length === 1, 5_000, "both receive the first message");

    subA.unsubscribe();
    subA.unsubscribe(); // idempotent
    expect(subA.active).toBe(false);
    expect(subB.active).toBe(true);
    expect(client.getStatus().subscriptionDetails.map((d) => d.id)).toEqual([subB.id]);
    const second = await client.publishMessage(stream, { n: 2 });
    await until(() => b.length === 2, 5_000, "the other subscription goes on");
    expect(ids(b)).toEqual([first, second]);
    await sleep(100); // nothing may reach the ended subscription
    expect(ids(a)).toEqual([first]);

    client.unsubscribe(stream);
    expect(subB.active).toBe(false);
    expect(client.getStatus().subscriptionDetails).toEqual([]);
  });

  test("a slow subscription does not hold up a fast one of the same stream; each gets every message in order", async () => {
    const client = await pool.connected();
    const stream = fresh();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow: StreamMessage[] = [];
    const fast: StreamMessage[] = [];
    await client.subscribe(stream, async (m) => {
      await gate;
      slow.push(m);
    }, { count: 5 });
    await client.subscribe(stream, (m) => void fast.push(m), { count: 5 });
    const published = (await client.publishBatch(stream, Array.from({ length: 200 }, (_, i) => ({ i })))) as string[];
    await until(() => fast.length === 200, 10_000, () => `fast subscription got ${fast.length}/200 while the slow one waits`);
    expect(slow).toEqual([]);
    expect(ids(fast)).toEqual(published);
    release();
    await until(() => slow.length === 200, 10_000, () => `slow subscription got ${slow.length}/200 after the gate opened`);
    expect(ids(slow)).toEqual(published);
  });

  test("subscriptions of one stream may start at different ids", async () => {
    const client = await pool.connected();
    const stream = fresh();
    const history = (await client.publishBatch(stream, [{ n: 0 }, { n: 1 }, { n: 2 }])) as string[];
    const all: StreamMessage[] = [];
    const tail: StreamMessage[] = [];
    const live: StreamMessage[] = [];
    await client.subscribe(stream, (m) => void all.push(m), { startId: "0" });
    await client.subscribe(stream, (m) => void tail.push(m), { startId: history[1] });
    await client.subscribe(stream, (m) => void live.push(m));
    const next = await client.publishMessage(stream, { n: 3 });
    await until(() => all.length === 4 && tail.length === 2 && live.length === 1, 5_000, "each from its own start");
    expect(ids(all)).toEqual([...history, next]);
    expect(ids(tail)).toEqual([history[2], next]);
    expect(ids(live)).toEqual([next]);
  });

  test("unsubscribe() before subscribe() resolved: the subscription ends and never delivers", async () => {
    const client = await pool.connected();
    const stream = fresh();
    const got: StreamMessage[] = [];
    const pending = client.subscribe(stream, (m) => void got.push(m));
    client.unsubscribe(stream);
    const subscription = await pending;
    expect(subscription.active).toBe(false);
    await client.publishMessage(stream, { n: 1 });
    const other: StreamMessage[] = [];
    await client.subscribe(stream, (m) => void other.push(m), { startId: "0" });
    await until(() => other.length === 1, 5_000, "a later subscription sees the message");
    expect(got).toEqual([]);
    expect(client.getStatus().subscriptionDetails).toHaveLength(1);
  });

  test("1,000 subscriptions of one stream: every one receives every message, in order, through one reader connection", async () => {
    const client = await pool.connected({ defaultBlockMs: 10_000 });
    const stream = fresh();
    const n = 1_000;
    const received: string[][] = Array.from({ length: n }, () => []);
    const subs: Subscription[] = [];
    for (let i = 0; i < n; i++) subs.push(await client.subscribe(stream, (m) => void received[i]!.push(m.id)));
    await until(async () => (await blockedReaders()) === 1, 5_000, "one blocked reader");
    const published = (await client.publishBatch(stream, Array.from({ length: 50 }, (_, i) => ({ i })))) as string[];
    await until(() => received.every((r) => r.length === 50), 20_000, () => `complete: ${received.filter((r) => r.length === 50).length}/${n}`);
    for (const r of received) expect(r).toEqual(published);
    expect(await blockedReaders()).toBe(1);
    expect(client.getStatus().counters.delivered).toBe(n * 50);
    for (const s of subs.slice(0, 500)) s.unsubscribe();
    expect(client.getStatus().subscriptionDetails).toHaveLength(500);
  });

  test("a subscription keeps Node alive; unsubscribing the last one lets it exit", async () => {
    const { spawn } = await import("node:child_process");
    const { resolve, dirname } = await import("node:path");
    const { fileURLToPath } = await import("node:url");
    const addon = resolve(dirname(fileURLToPath(import.meta.url)), "..", "index.js");
    const stream = fresh();
    // The subscription is the only thing holding the process; the message ends it.
    const code = `const { StreamsClient } = require(${JSON.stringify(addon)});
      const c = new StreamsClient({ redisUrl: ${JSON.stringify(server.url)}, logLevel: "error" });
      let sub;
      c.subscribe(${JSON.stringify(stream)}, (m) => { console.log("got " + m.data.stop); sub.unsubscribe(); })
        .then((s) => { sub = s; console.log("subscribed"); });`;
    const child = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
    try {
      await until(() => out.includes("subscribed"), 10_000, "child subscribed");
      await redis.xadd(stream, "*", "data", '{"stop":1}', "timestamp", "1");
      expect(await Promise.race([exited, sleep(10_000).then(() => "still running")])).toBe(0);
      expect(out).toContain("got 1");
    } finally {
      child.kill("SIGKILL");
    }
  });
});

describe("a client created without connect()", () => {
  test("subscribe() on a fresh client connects it", async () => {
    const client = pool.track(new StreamsClient({ redisUrl: server.url, logLevel: "error", enableAutoTrim: false }));
    const stream = fresh();
    const got: StreamMessage[] = [];
    await client.subscribe(stream, (m) => void got.push(m));
    const id = await redis.xadd(stream, "*", "data", "{}", "timestamp", "1");
    await until(() => got.length === 1, 5_000, "delivered");
    expect(got[0]!.id).toBe(id);
  });
});
