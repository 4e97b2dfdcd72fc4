import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { StreamsClient, type StreamsClientConfig } from "../index.js";
import { startRedis, type RedisServer } from "./helpers/redis-server.js";

const here = dirname(fileURLToPath(import.meta.url));
const addonPath = resolve(here, "..", "index.js");
const fresh = (): string => `t:config:${randomUUID()}`;

function thrown(fn: () => unknown): (Error & { code?: string }) | undefined {
  try {
    fn();
  } catch (err) {
    return err as Error & { code?: string };
  }
  return undefined;
}

describe("config validation", () => {
  const invalid: Array<[field: keyof StreamsClientConfig, config: StreamsClientConfig]> = [
    ["defaultBlockMs", { defaultBlockMs: -1 }],
    ["redisUrl", { redisUrl: "not a url" }],
    ["redisUrl", { redisUrl: "http://127.0.0.1:6379" }],
    ["defaultCount", { defaultCount: 0 }],
    ["commandTimeoutMs", { commandTimeoutMs: NaN }],
    ["connectTimeoutMs", { connectTimeoutMs: -5 }],
    ["defaultMaxLen", { defaultMaxLen: -1 }],
    ["autoTrimInterval", { autoTrimInterval: NaN }],
    ["reconnectInitialDelayMs", { reconnectInitialDelayMs: -1 }],
    ["reconnectJitter", { reconnectJitter: 1.5 }],
    ["logLevel", { logLevel: "wran" }],
    // A fragment would pass and then fail every connection attempt as ERR_UNAVAILABLE
    // (`#insecure` asks the redis crate to skip TLS checks, a feature this build leaves out).
    ["redisUrl", { redisUrl: "rediss://127.0.0.1:6379#insecure" }],
    ["redisUrl", { redisUrl: "redis://127.0.0.1:6379/0#x" }],
    ["redisUrl", { redisUrl: "rediss+cluster://127.0.0.1:7000,127.0.0.1:7001#insecure" }],
    ["redisUrl", { redisUrl: "redis+sentinel://127.0.0.1:26379/mymaster#insecure" }],
  ];

  test.each(invalid)("rejects a bad %s with ERR_INVALID_ARG naming the field (%j)", (field, config) => {
    const err = thrown(() => new StreamsClient(config));
    expect(err, "constructor should throw").toBeInstanceOf(Error);
    expect(err!.code).toBe("ERR_INVALID_ARG");
    expect(err!.message).toContain(field);
  });

  test("no config, null and {} are accepted and give the documented defaults", () => {
    for (const config of [undefined, null, {}]) {
      const status = new StreamsClient(config).getStatus();
      expect(status.config.defaultBlockMs).toBe(5000);
      expect(status.config.defaultCount).toBe(10);
      expect(status.connected).toBe(false);
      expect(status.subscriptions).toEqual([]);
      expect(status.consumerGroups).toEqual([]);
      expect(status.counters).toMatchObject({ published: 0, publishFailed: 0, delivered: 0, callbackErrors: 0, reconnects: 0 });
    }
  });

  test("given values show in getStatus().config", () => {
    const status = new StreamsClient({ redisUrl: "redis://127.0.0.1:7777/2", defaultBlockMs: 250, defaultCount: 3 }).getStatus();
    expect(status.config.defaultBlockMs).toBe(250);
    expect(status.config.defaultCount).toBe(3);
    expect(status.config.redisUrl).toContain("127.0.0.1:7777");
  });

  test("getStatus never shows the password", () => {
    const status = new StreamsClient({ redisUrl: "redis://user:secret@127.0.0.1:7777/0" }).getStatus();
    expect(status.config.redisUrl).not.toContain("secret");
    expect(status.config.redisUrl).toContain("***");
    expect(status.config.redisUrl).toContain("user");
    expect(JSON.stringify(status)).not.toContain("secret");
  });

  test("redisUrl defaults to env REDIS_URL, else redis://127.0.0.1:6379 (read at construction)", () => {
    const script = `const { StreamsClient } = require(${JSON.stringify(addonPath)});
      console.log(new StreamsClient().getStatus().config.redisUrl);`;
    const run = (env: NodeJS.ProcessEnv): string => {
      const r = spawnSync(process.execPath, ["-e", script], { env, encoding: "utf8", timeout: 10_000 });
      expect(r.status, r.stderr).toBe(0);
      return r.stdout.trim();
    };
    const { REDIS_URL: _ignored, ...withoutRedisUrl } = process.env;
    expect(run({ ...withoutRedisUrl, REDIS_URL: "redis://127.0.0.1:7777/2" })).toContain("127.0.0.1:7777");
    expect(run(withoutRedisUrl)).toContain("127.0.0.1:6379");
  });
});

describe("URL credentials and database (private server)", () => {
  let server: RedisServer;
  let redis: Redis;

  beforeAll(async () => {
    server = await startRedis({ args: ["--requirepass", "s3cret-pw"] });
    redis = new Redis(server.url, { password: "s3cret-pw" });
  });

  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
  });

  test("connects with the password from the URL, writes to the URL's db, and never shows the password", async () => {
    const url = `redis://default:s3cret-pw@127.0.0.1:${server.port}/3`;
    const client = new StreamsClient({ redisUrl: url, logLevel: "error", enableAutoTrim: false });
    try {
      await client.connect();
      const stream = fresh();
      const id = await client.publishMessage(stream, { db: 3 });
      expect(id).toMatch(/^\d+-\d+$/);
      expect(await redis.exists(stream)).toBe(0); // db 0
      await redis.select(3);
      expect((await redis.xrange(stream, "-", "+")).map(([x]) => x)).toEqual([id]);
      await redis.select(0);
      const status = client.getStatus();
      expect(status.connected).toBe(true);
      expect(status.config.redisUrl).not.toContain("s3cret-pw");
      expect(JSON.stringify(status)).not.toContain("s3cret-pw");
    } finally {
      await client.disconnect();
    }
  });

  test("a wrong password makes connect() reject with a code, without leaking the password", async () => {
    const client = new StreamsClient({
      redisUrl: `redis://default:wrong-pw@127.0.0.1:${server.port}`,
      logLevel: "error",
      connectTimeoutMs: 1000,
    });
    try {
      const err = (await client.connect().then(
        () => null,
        (e: unknown) => e,
      )) as (Error & { code?: string }) | null;
      expect(err).toBeInstanceOf(Error);
      expect(err!.code).toMatch(/^ERR_[A-Z_]+$/);
      expect(err!.message).not.toContain("wrong-pw");
    } finally {
      await client.disconnect();
    }
  });
});
