// A server that refuses the "$" lookup of subscribe() (an ACL user without EXISTS/XINFO, a key
// that is not a stream): subscribe() rejects with ERR_REFUSED and the server's own code, and the
// subscription is gone. Before, a refusal counted as "Redis unavailable": subscribe() resolved,
// and the reader retried "$" for ever with nothing ever delivered.
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { StreamsClient } from "../index.js";
import { TEST_CLIENT } from "./helpers/fixture.js";
import { startRedis, type RedisServer } from "./helpers/redis-server.js";

const PASSWORD = "s3cret";

async function rejection(p: Promise<unknown>): Promise<{ code?: string; redisCode?: string; message: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code?: string; redisCode?: string; message: string };
  }
  throw new Error("expected a rejection, got a resolved promise");
}

describe("subscribe() refused by the server (private server)", () => {
  let server: RedisServer;
  let admin: Redis;

  beforeAll(async () => {
    server = await startRedis({ private: true });
    admin = new Redis({ host: "127.0.0.1", port: server.port });
    expect(await admin.call("ACL", "SETUSER", "no-xinfo", "on", `>${PASSWORD}`, "~*", "&*", "+@all", "-xinfo", "-exists")).toBe("OK");
  });

  afterAll(async () => {
    admin?.disconnect();
    await server?.stop();
  });

  test("NOPERM on EXISTS/XINFO rejects with ERR_REFUSED, redisCode NOPERM", async () => {
    const c = new StreamsClient({ ...TEST_CLIENT, redisUrl: `redis://no-xinfo:${PASSWORD}@127.0.0.1:${server.port}` });
    try {
      await c.connect();
      const err = await rejection(c.subscribe("private", () => {}));
      expect([err.code, err.redisCode]).toEqual(["ERR_REFUSED", "NOPERM"]);
      expect(c.getStatus().subscriptions).toEqual([]);
    } finally {
      await c.disconnect();
    }
  });

  test("a key that is not a stream rejects with ERR_REFUSED, redisCode WRONGTYPE", async () => {
    await admin.set("plain", "x");
    const c = new StreamsClient({ ...TEST_CLIENT, redisUrl: server.url });
    try {
      await c.connect();
      const err = await rejection(c.subscribe("plain", () => {}));
      expect([err.code, err.redisCode]).toEqual(["ERR_REFUSED", "WRONGTYPE"]);
      expect(c.getStatus().subscriptions).toEqual([]);
    } finally {
      await c.disconnect();
    }
  });
});
