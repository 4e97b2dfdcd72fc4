import { randomUUID } from "node:crypto";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { StreamsClient } from "../index.js";
import { closeRedis, openRedis, type Checker, type TestServer } from "./helpers/fixture.js";
import { until } from "./helpers/until.js";

const fresh = (): string => `t:metrics:${randomUUID()}`;

let server: TestServer;
let redis: Checker;
let client: StreamsClient;

beforeAll(async () => {
  ({ server, redis } = await openRedis());
  client = new StreamsClient({ redisUrl: server.url, enableAutoTrim: false, logLevel: "error" });
  await client.connect();
});

afterAll(() => closeRedis(server, redis, client));

/** metrics() through a real Prometheus text parser: name -> {type, samples}. */
function scrape(c: StreamsClient) {
  const families = parsePrometheusTextFormat(c.metrics());
  return new Map(families.map((f) => [f.name, f]));
}

function value(c: StreamsClient, name: string, labels: Record<string, string> = {}): number | undefined {
  const family = scrape(c).get(name);
  const sample = family?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  return sample === undefined ? undefined : Number(sample.value);
}

const EXPECTED: Array<[string, "COUNTER" | "GAUGE"]> = [
  ["streamcast_connected", "GAUGE"],
  ["streamcast_published_total", "COUNTER"],
  ["streamcast_publish_failed_total", "COUNTER"],
  ["streamcast_publish_lost_total", "COUNTER"],
  ["streamcast_delivered_total", "COUNTER"],
  ["streamcast_callback_errors_total", "COUNTER"],
  ["streamcast_acked_total", "COUNTER"],
  ["streamcast_claimed_total", "COUNTER"],
  ["streamcast_dead_lettered_total", "COUNTER"],
  ["streamcast_gaps_total", "COUNTER"],
  ["streamcast_stream_resets_total", "COUNTER"],
  ["streamcast_server_state_errors_total", "COUNTER"],
  ["streamcast_reconnects_total", "COUNTER"],
  ["streamcast_log_dropped_total", "COUNTER"],
  ["streamcast_subscriptions", "GAUGE"],
  ["streamcast_consumers", "GAUGE"],
  ["streamcast_subscription_behind", "GAUGE"],
  ["streamcast_group_lag", "GAUGE"],
  ["streamcast_group_pending", "GAUGE"],
  ["streamcast_group_oldest_pending_age_seconds", "GAUGE"],
  ["streamcast_group_consumers", "GAUGE"],
  ["streamcast_server_info", "GAUGE"],
];

describe("metrics()", () => {
  test("every family parses with its documented type and help", async () => {
    const families = scrape(client);
    for (const [name, type] of EXPECTED) {
      expect(families.get(name), name).toMatchObject({ type });
      expect(families.get(name)!.help.length, name).toBeGreaterThan(0);
    }
    expect([...families.keys()].sort()).toEqual(EXPECTED.map(([n]) => n).sort());
    expect(value(client, "streamcast_connected")).toBe(1);
    // The labels name the server this test runs against (Redis or Valkey in the matrix), read from its own INFO.
    const info = await ("nodes" in redis ? redis.nodes("master")[0]! : redis).info("server");
    const field = (name: string) => new RegExp(`^${name}:(.*)$`, "m").exec(info)?.[1]?.trim();
    const family = field("server_name") === "valkey" ? "valkey" : "redis";
    const version = family === "valkey" ? field("valkey_version") : field("redis_version");
    expect(value(client, "streamcast_server_info", { family, version: version! })).toBe(1);
  });

  test("publishes, deliveries, acks and the group's pending entries show up with their labels", async () => {
    const stream = fresh();
    const published0 = value(client, "streamcast_published_total")!;
    const acked0 = value(client, "streamcast_acked_total")!;
    const got: string[] = [];
    await client.subscribe(stream, (m) => void got.push(m.id));
    await client.createConsumerGroup(stream, "g", "0");
    await client.publishBatch(stream, [1, 2, 3]);
    await client.publishMessage(stream, 4);
    const consumed: string[] = [];
    await client.consumeFromGroup(stream, "g", "c1", (m) => void consumed.push(m.id), { autoAck: false });
    await until(() => got.length >= 4 && consumed.length >= 4, 5_000, () => `delivered ${got.length}, consumed ${consumed.length}`);
    expect(value(client, "streamcast_published_total")).toBe(published0 + 4);
    // A delivery is counted when the core gets the callback's report, which can come after the callback ran.
    const delivered = () => value(client, "streamcast_delivered_total", { stream }) ?? 0;
    await until(() => delivered() >= 8, 5_000, () => `streamcast_delivered_total ${delivered()}`);
    expect(delivered()).toBe(8);
    expect(value(client, "streamcast_subscriptions")).toBe(1);
    expect(value(client, "streamcast_consumers")).toBe(1);
    await client.acknowledgeMessages(stream, "g", consumed[0]!);
    expect(value(client, "streamcast_acked_total")).toBe(acked0 + 1);
    await client.refreshStatus();
    expect(value(client, "streamcast_group_pending", { stream, group: "g" })).toBe(3);
    expect(value(client, "streamcast_group_lag", { stream, group: "g" })).toBe(0);
    expect(value(client, "streamcast_group_consumers", { stream, group: "g" })).toBe(1);
    await client.stopConsumer(stream, "g", "c1");
    client.unsubscribe(stream);
  });

  test("the oldest pending entry's age is counted from its id's time", async () => {
    const stream = fresh();
    // An entry stamped one second after the epoch: its age is about the current Unix time.
    await redis.xadd(stream, "1000-0", "data", "1", "timestamp", "1000");
    await client.createConsumerGroup(stream, "g", "0");
    const consumed: string[] = [];
    await client.consumeFromGroup(stream, "g", "c", (m) => void consumed.push(m.id), { autoAck: false });
    await until(() => consumed.length === 1, 5_000, "consumed");
    const before = Date.now() / 1000;
    await client.refreshStatus();
    const age = value(client, "streamcast_group_oldest_pending_age_seconds", { stream, group: "g" })!;
    expect(age).toBeGreaterThanOrEqual(before - 1 - 1);
    expect(age).toBeLessThanOrEqual(Date.now() / 1000 - 1 + 1);
    await client.stopConsumer(stream, "g", "c");
  });

  test("publish failures are split by reason; a closed client counts `closed`", async () => {
    const c = new StreamsClient({ redisUrl: server.url, enableAutoTrim: false, logLevel: "error" });
    await c.connect();
    await redis.set("t:metrics:not-a-stream", "x");
    await expect(c.publishMessage("t:metrics:not-a-stream", 1)).rejects.toMatchObject({ code: expect.any(String) });
    await c.disconnect();
    expect(await c.publishMessage(fresh(), 1)).toBeNull();
    expect(await c.publishBatch(fresh(), [1, 2])).toEqual([null, null]);
    expect(value(c, "streamcast_publish_failed_total", { reason: "closed" })).toBe(3);
    expect(value(c, "streamcast_publish_failed_total", { reason: "refused" })).toBe(1);
    expect(value(c, "streamcast_publish_failed_total", { reason: "unavailable" })).toBe(0);
    // The reasons add up to the status counter: a refused single publish counts there too.
    expect(c.getStatus().counters.publishFailed).toBe(4);
    expect(value(c, "streamcast_connected")).toBe(0);
  });

  test("label values are escaped so that a parser reads them back", async () => {
    const stream = `t:metrics:"quoted"\\back\nline:${randomUUID()}`;
    const got: string[] = [];
    await client.subscribe(stream, (m) => void got.push(m.id));
    await client.publishMessage(stream, 1);
    await until(() => got.length >= 1, 5_000, "delivered");
    // Counted when the callback's report reaches the core; undefined for ever if the label did not parse back.
    await until(() => value(client, "streamcast_delivered_total", { stream }) !== undefined, 5_000, "the escaped label read back");
    expect(value(client, "streamcast_delivered_total", { stream })).toBe(1);
    client.unsubscribe(stream);
  });
});
