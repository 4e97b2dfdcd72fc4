// The Sentinel set-up (1 master, 1 replica, 3 sentinels) fails over during steady publishing,
// subscribing and group consumption: once by SENTINEL FAILOVER, once by a SIGKILL of the master.
// Publishing and consuming resume on the promoted replica by themselves; every publish that
// resolved with an id reaches every subscription or falls into a gap the client reported; no
// subscription gets an entry twice; the group handles every entry the streams still hold; and
// the master has one reader connection of the subscribing client; after SENTINEL FAILOVER the
// old master, which takes writes until the sentinels demote it, got (almost) none of ours, as
// the client moved when the promotion began. The counts are printed.
import { afterAll, afterEach, beforeAll, expect, test } from "vitest";
import { StreamsClient } from "../index.js";
import { entryIds, FailoverLoad, loadClient, readerConnections, type LoadCounts, type NodeCall } from "./helpers/failover-load.js";
import { startSentinel, SENTINEL_MASTER_NAME, type RedisSentinel } from "./helpers/sentinel.js";
import { notYet, waitFor } from "./helpers/until.js";

const LONG = 120_000;
let setup: RedisSentinel;
const clients: StreamsClient[] = [];

beforeAll(async () => {
  setup = await startSentinel();
}, LONG);

afterEach(async () => {
  for (const c of clients.splice(0)) await c.disconnect();
});

afterAll(async () => {
  await setup?.stop();
}, LONG);

const call: NodeCall = (port, ...args) => setup.call(port, ...args);
const sentinelClient = (): StreamsClient =>
  loadClient(`redis+sentinel://${setup.sentinels.map((s) => `${s.host}:${s.port}`).join(",")}/${SENTINEL_MASTER_NAME}`, clients);
/** The entry ids `stream` holds on the master the sentinels name now. */
const readStream = async (stream: string): Promise<string[]> => entryIds(call, await setup.masterPort(), stream);
const readers = (port: number): Promise<number> => readerConnections(call, port);

async function failoverUnderLoad(label: string, prefix: string, failover: () => Promise<number>): Promise<LoadCounts> {
  await setup.waitReady();
  const old = await setup.masterPort();
  const streams = [0, 1, 2, 3].map((i) => `${prefix}:${i}`);
  const load = await FailoverLoad.start({
    publisher: sentinelClient(),
    subscriber: sentinelClient(),
    consumer: sentinelClient(),
    streams,
    readStream,
  });
  await load.waitResumed("before the failover", 25);

  const promoted = await failover();
  expect(promoted).not.toBe(old);
  await load.waitResumed("after the failover");

  const counts = await load.finish(label);
  expect(counts.resolved).toBeGreaterThan(0);
  expect(counts.failOpen + counts.resolved).toBe(counts.published);
  expect(counts.lostUnreported, load.warnings.join("\n")).toBe(0);
  expect(counts.duplicates, load.warnings.join("\n")).toBe(0);
  // The publisher was told about every acknowledged publish the failover lost, and no other.
  expect(counts.reportedToPublisher, load.warnings.join("\n")).toBe(counts.lostInFailover);
  expect(counts.outOfOrder).toBe(0);
  expect(counts.groupUnhandled).toBe(0);
  expect(load.payloadMismatches).toEqual([]);

  // One reader on the new master; none left on the old one when it still runs (SENTINEL FAILOVER).
  const oldAlive = await setup.call(old, "PING").then(() => true, () => false);
  await waitFor("one reader connection of the subscriber on the master, none on the old one", 30_000, async () => {
    const n = await readers(promoted);
    if (n !== 1) notYet(`:${promoted} has ${n} reader connections`);
    const left = oldAlive ? await readers(old) : 0;
    return left === 0 ? true : notYet(`the old master :${old} still has ${left} reader connections`);
  });
  return counts;
}

// The SIGKILL first: its dead master comes back as a replica at once (restart with replicaof),
// while after SENTINEL FAILOVER the old master stays a master until the sentinels demote it
// about 10 s later.
test(
  "a SIGKILLed master: the load follows the promoted replica, resolved publishes are delivered or reported as a gap, none twice",
  () => failoverUnderLoad("sentinel, SIGKILL of the master", "sk", () => setup.killMaster()),
  LONG,
);

test(
  "SENTINEL FAILOVER: the load follows the promoted replica, resolved publishes are delivered or reported as a gap, none twice",
  async () => {
    const master = await setup.masterPort();
    const down = setup.dataPorts.find((p) => p !== master)!;
    // A replica to promote: the node the previous test killed, if it did.
    if (!(await setup.call(down, "PING").then(() => true, () => false))) await setup.restart(down);
    const counts = await failoverUnderLoad("sentinel, SENTINEL FAILOVER", "sf", () => setup.failover());
    // The old master takes writes until the sentinels demote it (about 10 s), and loses them.
    // Following +switch-master alone, about a second of acknowledged writes went there: 520 to
    // 616 of about 830 in three runs. Moving when the leading sentinel starts the promotion
    // leaves only a write in flight at that instant (0 in every run so far); a tenth is far
    // from both.
    expect(counts.lostInFailover).toBeLessThan(counts.resolved / 10);
  },
  LONG,
);
