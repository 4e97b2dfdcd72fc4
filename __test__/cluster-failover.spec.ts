// A master of a 3-master / 3-replica cluster is SIGKILLed during steady publishing, subscribing
// and group consumption. Its replica takes over; publishing and consuming resume by themselves;
// every publish that resolved with an id reaches every subscription or falls into a gap the
// client reported (replication is asynchronous, so the kill may lose acknowledged writes); no
// subscription gets an entry twice; the group handles every entry the streams still hold; and
// each master has one reader connection of the subscribing client. The counts are printed.
import { expect, test } from "vitest";
import { clusterForLoad, FailoverLoad } from "./helpers/failover-load.js";
import { notYet, waitFor } from "./helpers/until.js";

const LONG = 120_000;
const env = clusterForLoad();
const { readStream, readers } = env;

test(
  "a SIGKILLed master: the load resumes on its replica, resolved publishes are delivered or reported as a gap, none twice",
  async () => {
    const masters = await env.cluster.masters();
    expect(masters).toHaveLength(3);
    const streams: string[] = [];
    for (const m of masters) for (const p of ["cf-a", "cf-b"]) streams.push(await env.cluster.keyOn(m, p));

    const load = await FailoverLoad.start({
      publisher: env.client(),
      subscriber: env.client(),
      consumer: env.client(),
      streams,
      readStream,
    });
    await load.waitResumed("before the kill", 25);

    const victim = masters[0]!;
    const promoted = await env.cluster.killMaster(victim);
    await load.waitResumed("after the failover");

    const counts = await load.finish("cluster, SIGKILL of a master");
    expect(counts.resolved).toBeGreaterThan(0);
    expect(counts.failOpen + counts.resolved).toBe(counts.published);
    expect(counts.lostUnreported, load.warnings.join("\n")).toBe(0);
    expect(counts.duplicates, load.warnings.join("\n")).toBe(0);
    // The publisher was told about every acknowledged publish the failover lost, and no other.
    expect(counts.reportedToPublisher, load.warnings.join("\n")).toBe(counts.lostInFailover);
    expect(counts.outOfOrder).toBe(0);
    expect(counts.groupUnhandled).toBe(0);
    expect(load.payloadMismatches).toEqual([]);

    const now = await env.cluster.masters();
    expect(now).toContain(promoted);
    expect(now).not.toContain(victim);
    // One reader per master (every master owns subscribed streams, so exactly one), none elsewhere.
    await waitFor("one reader connection of the subscriber on each master, none on the replicas", 30_000, async () => {
      for (const port of env.cluster.livePorts()) {
        const n = await readers(port);
        const want = now.includes(port) ? 1 : 0;
        if (n !== want) notYet(`:${port} has ${n} reader connections, not ${want}`);
      }
      return true;
    });
  },
  LONG,
);
