// getStatus() for operating at scale: each consumed group's lag and pending count (XINFO GROUPS),
// and how far each subscription trails its stream, checked against what Redis itself says.
import { randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import type { Status, StreamMessage } from "../index.js";
import { clientPool, closeRedis, openRedis, type Checker, type TestServer } from "./helpers/fixture.js";
import { until } from "./helpers/until.js";

const fresh = (): string => `t:status:${randomUUID()}`;

let server: TestServer;
let redis: Checker;
const pool = clientPool(() => server.url);

beforeAll(async () => {
  ({ server, redis } = await openRedis());
});
afterEach(() => pool.disconnectAll());
afterAll(() => closeRedis(server, redis));

/** A promise the test resolves when it wants a callback to finish. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

/** `XINFO GROUPS` of `stream` as a map per group, from the test's own connection. */
async function xinfoGroups(stream: string): Promise<Map<string, Record<string, unknown>>> {
  const reply = (await redis.call("XINFO", "GROUPS", stream)) as unknown[][];
  const groups = new Map<string, Record<string, unknown>>();
  for (const flat of reply) {
    const g: Record<string, unknown> = {};
    for (let i = 0; i < flat.length; i += 2) g[String(flat[i])] = flat[i + 1];
    groups.set(String(g.name), g);
  }
  return groups;
}

function detailsOf(status: Status, stream: string) {
  const d = status.subscriptionDetails.find((s) => s.stream === stream);
  if (!d) throw new Error(`no subscription of ${stream} in getStatus()`);
  return d;
}

describe("the server in getStatus()", () => {
  test("names the family and the server's own version (Valkey's, not the redis_version it reports)", async () => {
    const client = await pool.connected();
    const info = String(await redis.info("server"));
    const field = (name: string): string | undefined => info.match(new RegExp(`^${name}:(.*)$`, "m"))?.[1]?.trim();
    const valkey = field("valkey_version");
    const server = client.getStatus().server!;
    expect(server.family).toBe(valkey ? "valkey" : "redis");
    expect(server.version).toBe(valkey ?? field("redis_version"));
    const [major, minor] = server.version.split(".").map(Number) as [number, number];
    const redis82 = server.family === "redis" && (major > 8 || (major === 8 && minor >= 2));
    expect(server.features.includes("XACKDEL")).toBe(redis82);
  });
});

describe("consumer groups in getStatus()", () => {
  test("lag and pending of a group this client consumes match XINFO GROUPS, and follow the work", async () => {
    const client = await pool.connected();
    const stream = fresh();
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push((await client.publishMessage(stream, { i }))!);
    expect(await client.createConsumerGroup(stream, "workers", "0")).toBe(true);

    const held = gate();
    const handled: string[] = [];
    await client.consumeFromGroup(
      stream,
      "workers",
      "w1",
      async (m: StreamMessage) => {
        if (m.id === ids[0]) await held.wait;
        handled.push(m.id);
      },
      { count: 1 },
    );
    // The first entry is delivered and held: Redis counts it pending, nine not delivered yet.
    await until(async () => (await xinfoGroups(stream)).get("workers")?.pending === 1, 10_000, "first entry delivered");

    const status = await client.refreshStatus();
    expect(status.groups).toHaveLength(1);
    const g = status.groups[0];
    const redisSays = (await xinfoGroups(stream)).get("workers")!;
    expect(g).toMatchObject({ stream, group: "workers", pending: 1, lag: 9, lastDeliveredId: ids[0], consumers: 1 });
    expect(g.lag).toBe(redisSays.lag);
    expect(g.lastDeliveredId).toBe(redisSays["last-delivered-id"]);
    expect(g.checkedAt).toBeGreaterThan(0);

    held.open();
    await until(() => handled.length === 10, 10_000, "all ten handled");
    await until(async () => (await xinfoGroups(stream)).get("workers")?.pending === 0, 10_000, "all acknowledged");
    const done = (await client.refreshStatus()).groups[0];
    expect(done).toMatchObject({ pending: 0, lag: 0, lastDeliveredId: ids[9] });
    await client.stopConsumer(stream, "workers", "w1");
  });

  test("getStatus() never waits for Redis: it shows the last refresh and starts the next in the background", async () => {
    const client = await pool.connected();
    const stream = fresh();
    await client.publishMessage(stream, { a: 1 });
    await client.createConsumerGroup(stream, "g", "$");
    await client.consumeFromGroup(stream, "g", "c", () => {});
    // No refresh asked for yet: whatever the first call shows, later calls pick up the background one.
    client.getStatus();
    await until(() => client.getStatus().groups.length === 1, 10_000, "a background refresh filled groups");
    expect(client.getStatus().groups[0]).toMatchObject({ stream, group: "g", lag: 0, pending: 0 });
  });

  test("groups this client does not consume are not reported, on a stream it does consume or not", async () => {
    const client = await pool.connected();
    const stream = fresh();
    const elsewhere = fresh();
    await client.createConsumerGroup(stream, "mine", "$");
    await client.createConsumerGroup(stream, "other", "$");
    await client.createConsumerGroup(elsewhere, "other", "$");
    await client.consumeFromGroup(stream, "mine", "c", () => {});
    // XINFO GROUPS of the consumed stream names both groups; only the consumed one is ours.
    expect([...(await xinfoGroups(stream)).keys()].sort()).toEqual(["mine", "other"]);
    const groups = (await client.refreshStatus()).groups;
    expect(groups.map((g) => `${g.stream} ${g.group}`)).toEqual([`${stream} mine`]);
    await client.stopConsumer(stream, "mine", "c");
  });
});

describe("subscriptions in getStatus()", () => {
  test("behind counts the entries a slow subscription has not handled, queued or still in Redis", async () => {
    const client = await pool.connected();
    const stream = fresh();
    const held = gate();
    const got: string[] = [];
    await client.subscribe(stream, async (m: StreamMessage) => {
      await held.wait;
      got.push(m.id);
    });
    const idle = detailsOf(client.getStatus(), stream);
    expect(idle.behind).toBe(0);
    expect(idle.queued).toBe(0);

    const published: string[] = [];
    for (let i = 0; i < 30; i++) published.push((await client.publishMessage(stream, { i }))!);
    // Some of them are in the callback or queued, the rest wait in Redis while it is busy.
    await until(() => detailsOf(client.getStatus(), stream).queued > 0, 10_000, "entries handed to the callback");
    const busy = detailsOf(await client.refreshStatus(), stream);
    expect(busy.streamLastId).toBe(published[29]);
    expect(busy.behind).toBe(30);
    expect(busy.queued).toBeGreaterThan(0);

    held.open();
    await until(() => got.length === 30, 10_000, "all thirty handled");
    await until(() => detailsOf(client.getStatus(), stream).behind === 0, 10_000, "caught up");
    const caughtUp = detailsOf(client.getStatus(), stream);
    expect(caughtUp).toMatchObject({ lastId: published[29], streamLastId: published[29], queued: 0 });
  });
});
