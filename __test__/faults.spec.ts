import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { StreamsClient, type StreamMessage } from "../index.js";
import { startRedis, type RedisServer } from "./helpers/redis-server.js";
import { sleep, until } from "./helpers/until.js";

const fresh = (): string => `t:faults:${randomUUID()}`;

const fastReconnect = {
  commandTimeoutMs: 500,
  connectTimeoutMs: 500,
  reconnectInitialDelayMs: 20,
  reconnectMaxDelayMs: 300,
  enableAutoTrim: false,
  logLevel: "error",
} as const;

describe("fail open when Redis is unreachable", () => {
  test("connect() rejects with ERR_UNAVAILABLE/ERR_TIMEOUT, then publish resolves null without waiting for the command timeout", async () => {
    // Nothing listens on port 1. With a ten-minute command timeout, the publishes settle within
    // the test's timeout only because they fail open at once.
    const client = new StreamsClient({
      redisUrl: "redis://127.0.0.1:1",
      commandTimeoutMs: 600_000,
      connectTimeoutMs: 500,
      logLevel: "error",
    });
    try {
      const err = (await client.connect().then(
        () => null,
        (e: unknown) => e,
      )) as { code?: string } | null;
      expect(err).toBeInstanceOf(Error);
      expect(["ERR_UNAVAILABLE", "ERR_TIMEOUT"]).toContain(err!.code);
      expect(client.getStatus().connected).toBe(false);

      await expect(client.publishMessage(fresh(), { n: 1 })).resolves.toBeNull();
      await expect(client.publishBatch(fresh(), [1, 2, 3])).resolves.toEqual([null, null, null]);
    } finally {
      await client.disconnect();
    }
  });

  test("caller mistakes still reject with ERR_INVALID_ARG while Redis is unreachable", async () => {
    const client = new StreamsClient({ redisUrl: "redis://127.0.0.1:1", ...fastReconnect });
    try {
      await client.connect().catch(() => {});
      await expect(client.publishMessage("", { n: 1 })).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
      await expect(client.publishMessage(fresh(), { n: 1 }, "abc")).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
    } finally {
      await client.disconnect();
    }
  });
});

describe("Redis killed and restarted (private server)", () => {
  let server: RedisServer;
  let redis: Redis;

  beforeAll(async () => {
    server = await startRedis({ private: true });
    redis = new Redis(server.url, { maxRetriesPerRequest: null, retryStrategy: () => 50 });
    redis.on("error", () => {}); // expected while the server is down
  });

  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
  });

  test("publish fails open while Redis is down and recovers by itself after the restart", async () => {
    const client = new StreamsClient({ redisUrl: server.url, ...fastReconnect });
    try {
      await client.connect();
      const stream = fresh();
      expect(await client.publishMessage(stream, { n: 1 })).toMatch(/^\d+-\d+$/);

      // Fails open (null, never a rejection) while the server is gone, before it is restarted.
      await server.kill("SIGKILL");
      await expect(client.publishMessage(stream, { n: 2 })).resolves.toBeNull();
      await until(() => !client.getStatus().connected, 5_000, "status reports disconnected");

      await server.restart();
      let id: string | null = null;
      await until(async () => (id = await client.publishMessage(stream, { n: 3 })) !== null, 10_000, "publish succeeds after restart");
      expect((await redis.xrange(stream, "-", "+")).map(([x]) => x)).toEqual([id]);
      await until(() => client.getStatus().connected, 5_000, "status reports connected again");
      expect(client.getStatus().state).toBe("connected");
    } finally {
      await client.disconnect();
    }
  });

  test("a subscriber keeps receiving messages published after a SIGKILL + restart; reconnects counted", async () => {
    const client = new StreamsClient({ redisUrl: server.url, ...fastReconnect });
    try {
      await client.connect();
      const stream = fresh();
      const messages: StreamMessage<{ n: number }>[] = [];
      await client.subscribe<{ n: number }>(stream, (m) => void messages.push(m));
      const first = await client.publishMessage(stream, { n: 1 });
      await until(() => messages.length >= 1, 5_000, "message before the restart");
      const reconnectsBefore = client.getStatus().counters.reconnects;

      await server.kill("SIGKILL");
      await server.restart();

      let second: string | null = null;
      await until(async () => (second = await client.publishMessage(stream, { n: 2 })) !== null, 10_000, "publish after restart");
      await until(() => messages.length >= 2, 10_000, "subscriber receives the message published after the restart");
      await sleep(100); // nothing more may arrive (a wait for something NOT to happen)
      expect(messages.map((m) => m.id)).toEqual([first, second]);
      expect(messages.map((m) => m.data.n)).toEqual([1, 2]);
      expect(client.getStatus().subscriptions).toContain(stream);
      expect(client.getStatus().counters.reconnects).toBeGreaterThanOrEqual(Math.max(1, reconnectsBefore + 1));
    } finally {
      await client.disconnect();
    }
  });

  test("after its connections are killed, reading resumes from the last delivered id: nothing skipped or repeated", async () => {
    const client = new StreamsClient({ redisUrl: server.url, ...fastReconnect });
    try {
      await client.connect();
      const stream = fresh();
      const messages: StreamMessage<{ n: number }>[] = [];
      await client.subscribe<{ n: number }>(stream, (m) => void messages.push(m));
      await client.publishBatch(stream, [0, 1].map((n) => ({ n })));
      await until(() => messages.length >= 2, 5_000, "messages before the kill");

      // Kill every connection but the checker's; the data stays. Entries written while the client
      // is reconnecting must all be delivered exactly once.
      await redis.call("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");
      for (let n = 2; n < 7; n++) {
        await redis.xadd(stream, "*", "data", JSON.stringify({ n }), "timestamp", String(Date.now()));
      }
      let last: string | null = null;
      await until(async () => (last = await client.publishMessage(stream, { n: 7 })) !== null, 10_000, "publish after the kill");
      await until(() => messages.length >= 8, 10_000, () => `received ${messages.length}/8 after the kill`);
      await sleep(100); // nothing more may arrive (a wait for something NOT to happen)
      const xrange = (await redis.xrange(stream, "-", "+")).map(([x]) => x);
      expect(messages.map((m) => m.id)).toEqual(xrange);
      expect(messages.map((m) => m.data.n)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
      expect(xrange[7]).toBe(last);
      await until(() => client.getStatus().counters.reconnects >= 1, 5_000, "reconnect counted");
    } finally {
      await client.disconnect();
    }
  });

  test("connect() rejects while Redis is down, and the client recovers in the background", async () => {
    await server.kill("SIGKILL");
    const client = new StreamsClient({ redisUrl: server.url, ...fastReconnect });
    try {
      const err = (await client.connect().then(
        () => null,
        (e: unknown) => e,
      )) as { code?: string } | null;
      expect(["ERR_UNAVAILABLE", "ERR_TIMEOUT"]).toContain(err?.code);
      await expect(client.publishMessage(fresh(), { n: 0 })).resolves.toBeNull();

      await server.restart();
      const stream = fresh();
      let id: string | null = null;
      await until(async () => (id = await client.publishMessage(stream, { n: 1 })) !== null, 10_000, "publish recovers without calling connect() again");
      expect((await redis.xrange(stream, "-", "+")).map(([x]) => x)).toEqual([id]);
      await until(() => client.getStatus().connected, 5_000, "connected again");
    } finally {
      await client.disconnect();
    }
  });
});
