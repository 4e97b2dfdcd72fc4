// Slots of subscribed streams move between the masters of a 3-master / 3-replica cluster during
// steady publishing, subscribing and group consumption: once with `redis-cli --cluster reshard`,
// once slot by slot by hand (IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE), with the load running
// while the slot is half moved. A migration loses nothing: every publish that resolved with an
// id reaches every subscription exactly once, in order per stream, and the group handles all of
// them. Each master ends with one reader connection of the subscribing client. The counts are
// printed.
import { expect, test } from "vitest";
import { clusterForLoad, FailoverLoad } from "./helpers/failover-load.js";
import { notYet, waitFor } from "./helpers/until.js";

const LONG = 120_000;
/** Slots `redis-cli --cluster reshard` moves: it takes them from the start of the source's slots. */
const RESHARD_SLOTS = 100;
const env = clusterForLoad();
const { readStream, readers } = env;

/** `count` keys `<prefix>-<n>` whose slots are among the first `within` slots `master` owns. */
async function keysInFirstSlots(master: number, prefix: string, within: number, count: number): Promise<string[]> {
  const owned = (await env.cluster.slots()).filter((r) => r.master === master);
  const first = new Set<number>();
  for (const r of owned) for (let s = r.start; s <= r.end && first.size < within; s++) first.add(s);
  const keys: string[] = [];
  for (let n = 0; keys.length < count; n++) {
    if (n > 100_000) throw new Error(`no ${count} keys in the first ${within} slots of :${master}`);
    const key = `${prefix}-${n}`;
    if (first.has(await env.cluster.slotOf(key))) keys.push(key);
  }
  return keys;
}

test(
  "a reshard and a slot moved by hand during the load: every resolved publish delivered exactly once, in order",
  async () => {
    const [a, b, c] = await env.cluster.masters();
    // Two streams in the slots the reshard moves from a to b, two on c that move to a by hand,
    // two on b that stay.
    const resharded = await keysInFirstSlots(a!, "rs", RESHARD_SLOTS, 2);
    const handMoved = [await env.cluster.keyOn(c!, "hm-a"), await env.cluster.keyOn(c!, "hm-b")];
    const staying = [await env.cluster.keyOn(b!, "st-a"), await env.cluster.keyOn(b!, "st-b")];
    const streams = [...resharded, ...handMoved, ...staying];
    const load = await FailoverLoad.start({
      publisher: env.client(),
      subscriber: env.client(),
      consumer: env.client(),
      streams,
      readStream,
    });
    await load.waitResumed("before the reshard", 25);

    const moved = await env.cluster.reshard(a!, b!, RESHARD_SLOTS);
    for (const s of resharded) expect(moved).toContain(await env.cluster.slotOf(s));
    for (const s of resharded) expect(await env.cluster.masterForKey(s)).toBe(b);
    await load.waitResumed("after the reshard");

    for (const s of handMoved) {
      const slot = await env.cluster.slotOf(s);
      await env.cluster.beginSlotMove(slot, a!);
      // Half moved: the owner still holds the stream's key, so it serves it; a key it does not
      // hold would get -ASK.
      await load.waitResumed(`while slot ${slot} is migrating`);
      await env.cluster.finishSlotMove(slot, a!);
      expect(await env.cluster.masterForKey(s)).toBe(a);
      await load.waitResumed(`after slot ${slot} moved`);
    }

    const counts = await load.finish("cluster, reshard and a slot moved by hand");
    expect(counts.resolved).toBeGreaterThan(0);
    expect(counts.delivered, load.warnings.join("\n")).toBe(counts.resolved);
    expect(counts.gapReported).toBe(0);
    expect(counts.lostUnreported).toBe(0);
    expect(counts.duplicates, load.warnings.join("\n")).toBe(0);
    // The publisher was told about every acknowledged publish the failover lost, and no other.
    expect(counts.reportedToPublisher, load.warnings.join("\n")).toBe(counts.lostInFailover);
    expect(counts.outOfOrder).toBe(0);
    expect(counts.inStream).toBe(counts.resolved);
    expect(counts.groupUnhandled).toBe(0);
    expect(load.payloadMismatches).toEqual([]);

    // One reader on each master that owns subscribed streams (c owns none any more), none
    // more anywhere.
    const owners = new Set(await Promise.all(streams.map((s) => env.cluster.masterForKey(s))));
    await waitFor("one reader connection of the subscriber on each master with subscribed streams", 30_000, async () => {
      for (const m of await env.cluster.masters()) {
        const n = await readers(m);
        if (n !== (owners.has(m) ? 1 : 0)) notYet(`:${m} has ${n} reader connections`);
      }
      return true;
    });
  },
  LONG,
);
