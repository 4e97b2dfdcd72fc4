// What only a cluster can do to a subscription, beyond the behaviour suites that the "cluster"
// project runs unchanged: its stream's slot moves while it reads. Starts its own cluster, so it
// runs in the "single" project like topology.spec.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { setLogger, StreamsClient, type StreamMessage } from "../index.js";
import { startCluster, type RedisCluster } from "./helpers/cluster.js";
import { TEST_CLIENT } from "./helpers/fixture.js";
import { sleep, until } from "./helpers/until.js";

const LONG = 120_000;
const fresh = (): string => `t:cluster:${randomUUID()}`;

describe("a subscription whose stream's slot moves", () => {
  let cluster: RedisCluster;
  let url: string;

  beforeAll(async () => {
    cluster = await startCluster();
    url = `redis+cluster://${cluster.seedNodes.map((n) => `${n.host}:${n.port}`).join(",")}`;
  }, LONG);

  afterAll(async () => {
    setLogger(null);
    await cluster?.stop();
  });

  test(
    "ASK while the slot migrates leaves its position alone: nothing replayed, no stream reset, every message once",
    async () => {
      const records: Record<string, unknown>[] = [];
      setLogger((r) => void records.push(r));
      const client = new StreamsClient({ redisUrl: url, ...TEST_CLIENT, logLevel: "warn" });
      try {
        await client.connect();
        const stream = fresh();
        const got: StreamMessage[] = [];
        // A short BLOCK: the reader checks its position (XINFO STREAM) after every idle one.
        await client.subscribe(stream, (m) => void got.push(m), { blockMs: 100 });
        const before = (await client.publishBatch(stream, [1, 2, 3])) as string[];
        await until(() => got.length === 3, 10_000, () => `first three delivered (${got.length}/3)`);

        const slot = await cluster.slotOf(stream);
        const from = await cluster.masterForKey(stream);
        const to = (await cluster.masters()).find((m) => m !== from)!;
        await cluster.beginSlotMove(slot, to);
        // The stream moves to `to` while the slot is still `from`'s: `from` answers -ASK for it,
        // to the reader's XREAD and to its XINFO STREAM alike.
        await cluster.call(from, "MIGRATE", "127.0.0.1", to, stream, 0, 5_000);
        const seen = (r: Record<string, unknown>): boolean => r.stream === stream && /position|no longer exists/.test(String(r.message));
        await until(() => records.some(seen), 10_000, "the reader checked the position while the slot was moving");
        // A -ASK is not "the stream is gone": the position stays (no restart from 0-0).
        expect(records.filter(seen).map((r) => String(r.message))).not.toContainEqual(expect.stringMatching(/no longer exists/));
        expect(client.getStatus().counters.streamResets).toBe(0);

        await cluster.finishSlotMove(slot, to);
        const after = (await client.publishBatch(stream, [4, 5])) as string[];
        await until(() => got.length >= 5, 20_000, () => `delivered after the move: ${got.length}/5`);
        await sleep(300); // nothing may follow (a replay from 0-0 would)
        expect(got.map((m) => m.id)).toEqual([...before, ...after]);
        expect(client.getStatus().counters.streamResets).toBe(0);
        expect(client.getStatus().counters.gaps).toBe(0);
      } finally {
        setLogger(null);
        await client.disconnect();
      }
    },
    LONG,
  );
});
