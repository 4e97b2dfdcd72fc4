// Acknowledgements that Redis could not take when they were made: with a consumer of the
// group running in this client, they are not dropped (the entry would stay pending forever,
// since the consumer only re-reads its own pending entries after a restart or reconnect).
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, expect, test } from "vitest";
import { StreamsClient, type ConsumedMessage } from "../index.js";
import { startRedis, type RedisServer } from "./helpers/redis-server.js";
import { until } from "./helpers/until.js";

let server: RedisServer;
let redis: Redis;

beforeAll(async () => {
  server = await startRedis({ private: true });
  redis = new Redis(server.url);
});

afterAll(async () => {
  redis?.disconnect();
  await server?.stop();
});

const pendingCount = async (stream: string, group: string): Promise<number> => Number(((await redis.xpending(stream, group)) as unknown[])[0]);

/** CLIENT LIST as one record per connection. */
async function clients(): Promise<Record<string, string>[]> {
  const list = String(await redis.call("CLIENT", "LIST"));
  return list.trim().split("\n").map((line) => Object.fromEntries(line.trim().split(" ").map((kv) => kv.split("=", 2) as [string, string])));
}

// Found by the chaos run (seed 2129724106, single: 16 entries left pending): a consume()
// iterator's ack() made while the command connection was down (a failover behind one address
// answered READONLY) resolved, the XACK was never sent again, and the entry stayed pending
// although it had been handled and acknowledged; the consumer's own connection stayed up, so
// it never re-read its pending entries either.
test("an ack() made while the command connection is down is sent by the running consumer", async () => {
  const stream = `t:acks:${randomUUID()}`;
  const user = `u${randomUUID().slice(0, 8)}`;
  await redis.call("ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all");
  const url = new URL(server.url);
  url.username = user;
  url.password = "pw";
  const client = new StreamsClient({
    redisUrl: url.toString(),
    commandTimeoutMs: 300,
    connectTimeoutMs: 300,
    reconnectMaxDelayMs: 100,
    defaultBlockMs: 1_000,
    enableAutoTrim: false,
    logLevel: "error",
  });
  try {
    await client.createConsumerGroup(stream, "g", "0");
    await client.publishMessage(stream, { job: 1 });
    const abort = new AbortController();
    const got: ConsumedMessage[] = [];
    const loop = (async () => {
      for await (const m of client.consume(stream, "g", "w", { signal: abort.signal })) got.push(m);
    })();
    await until(() => got.length === 1, 10_000, "the entry is delivered");
    await until(async () => (await clients()).some((c) => c.user === user && c.flags!.includes("b")), 10_000, "the consumer blocks in its next read");
    // The command connection goes and cannot come back (the user is off); the consumer's
    // blocked read stays.
    await redis.call("ACL", "SETUSER", user, "off");
    for (const c of await clients()) if (c.user === user && !c.flags!.includes("b")) await redis.call("CLIENT", "KILL", "ID", c.id!);
    await until(() => !client.getStatus().connected, 10_000, "the client sees its command connection gone");
    await got[0]!.ack();
    expect(await pendingCount(stream, "g"), "the ack could not be sent").toBe(1);
    await redis.call("ACL", "SETUSER", user, "on");
    await until(async () => (await pendingCount(stream, "g")) === 0, 10_000, "the entry is acknowledged once Redis can be reached again");
    abort.abort();
    await loop;
  } finally {
    await client.disconnect();
  }
});
