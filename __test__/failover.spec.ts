// A failover as an application sees it: the primary it is connected to becomes a replica.
// That is the server's state, not the caller's mistake: publishing fails open, the error is
// counted, and the connection is replaced so that writes reach the new primary.
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterEach, describe, expect, test } from "vitest";
import { StreamsClient } from "../index.js";
import { startProxy, type Proxy } from "./helpers/proxy.js";
import { startRedis, type RedisServer } from "./helpers/redis-server.js";
import { startSentinel, SENTINEL_MASTER_NAME } from "./helpers/sentinel.js";
import { until } from "./helpers/until.js";

const fresh = (): string => `t:failover:${randomUUID()}`;
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function server(): Promise<{ s: RedisServer; r: Redis }> {
  const s = await startRedis({ private: true, args: ["--repl-diskless-sync-delay", "0"] });
  const r = new Redis(s.url);
  cleanups.push(() => s.stop(), () => r.disconnect());
  return { s, r };
}

function client(url: string): StreamsClient {
  const c = new StreamsClient({ redisUrl: url, logLevel: "error", enableAutoTrim: false, reconnectMaxDelayMs: 100 });
  cleanups.push(() => c.disconnect());
  return c;
}

describe("failover", () => {
  test("READONLY from a demoted primary: publish resolves null (never ERR_INVALID_ARG), is counted, and works again by itself", async () => {
    const { r } = await server();
    const c = client(`redis://127.0.0.1:${r.options.port}`);
    const stream = fresh();
    expect(await c.publishMessage(stream, { n: 0 })).toMatch(/^\d+-\d+$/);
    await r.call("REPLICAOF", "127.0.0.1", "1"); // a primary that cannot be reached
    expect(await c.publishMessage(stream, { n: 1 })).toBeNull();
    expect(c.getStatus().counters.serverStateErrors).toBeGreaterThanOrEqual(1);
    expect(await c.publishBatch(stream, [{ n: 2 }])).toEqual([null]);
    await r.call("REPLICAOF", "NO", "ONE");
    await until(async () => (await c.publishMessage(stream, { n: 3 })) !== null, 10_000, "publishing works again");
  });

  test("after a failover behind one address (a proxy or DNS name), writes reach the new primary", async () => {
    const a = await server();
    const b = await server();
    await b.r.call("REPLICAOF", "127.0.0.1", String(a.s.port));
    await until(async () => /master_link_status:up/.test(await b.r.info("replication")), 10_000, "b replicates a");
    const proxy: Proxy = await startProxy(a.s.port);
    cleanups.push(() => proxy.close());
    const c = client(proxy.url());
    const stream = fresh();
    const before = await c.publishMessage(stream, { n: 0 });
    expect(before).toMatch(/^\d+-\d+$/);
    await until(async () => (await b.r.xlen(stream)) === 1, 10_000, "replicated");

    // The failover: b is promoted, a demoted; the address now leads to b. The client's open
    // connection still goes to a, which refuses writes with READONLY.
    await b.r.call("REPLICAOF", "NO", "ONE");
    await a.r.call("REPLICAOF", "127.0.0.1", String(b.s.port));
    proxy.retarget(b.s.port);
    let id: string | null = null;
    await until(async () => (id = await c.publishMessage(stream, { n: 1 })) !== null, 10_000, "a write reaches the new primary");
    expect(c.getStatus().counters.serverStateErrors).toBeGreaterThanOrEqual(1);
    expect((await b.r.xrange(stream, "-", "+")).map(([x]) => x)).toEqual([before, id]);
  });

  test("a sentinel subscription that goes silent (no FIN) is found by its PING and replaced", async () => {
    const setup = await startSentinel();
    cleanups.push(() => setup.stop());
    const sentinelPort = setup.sentinelPorts[0]!;
    const proxy = await startProxy(sentinelPort);
    cleanups.push(() => proxy.close());
    const c = new StreamsClient({
      redisUrl: `redis+sentinel://127.0.0.1:${proxy.port}/${SENTINEL_MASTER_NAME}`,
      logLevel: "error",
      enableAutoTrim: false,
      commandTimeoutMs: 500,
      reconnectMaxDelayMs: 100,
    });
    cleanups.push(() => c.disconnect());
    expect(await c.publishMessage(fresh(), { n: 0 })).toMatch(/^\d+-\d+$/);
    // The ids of the sentinel's clients subscribed to the four failover channels: ours.
    const followers = async (): Promise<string[]> =>
      String(await setup.call(sentinelPort, "CLIENT", "LIST"))
        .split("\n")
        .filter((l) => / sub=4 /.test(l))
        .map((l) => /\bid=(\d+)/.exec(l)![1]!);
    let before: string[] = [];
    await until(async () => (before = await followers()).length === 1, 10_000, "the client follows failovers on the sentinel");

    proxy.stall();
    await until(
      async () => (await followers()).some((id) => !before.includes(id)),
      10_000,
      "a new subscription replaces the silent one",
    );
  }, 60_000);
});
