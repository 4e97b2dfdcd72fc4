// The topology fixtures themselves, driven with ioredis's Cluster and sentinel clients: the cluster
// takes writes on every master, moves slots, and survives a SIGKILLed master with the replicated
// entries; the sentinel set-up fails over on SENTINEL FAILOVER and on a SIGKILL, and a client
// asking the sentinels finds the new master. Times are printed, never asserted.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Cluster, Redis } from "ioredis";
import { startCluster, type RedisCluster } from "./helpers/cluster.js";
import { startSentinel, SENTINEL_MASTER_NAME, type RedisSentinel } from "./helpers/sentinel.js";
import { infoField } from "./helpers/topology.js";
import { waitFor } from "./helpers/until.js";

const LONG = 120_000;

function report(what: string, since: number): void {
  console.log(`[topology] ${what}: ${Date.now() - since} ms`);
}

describe("a 3-master / 3-replica cluster", () => {
  let cluster: RedisCluster;
  const clients: Cluster[] = [];
  const clusterClient = (): Cluster => {
    const c = new Cluster(cluster.seedNodes, { redisOptions: { commandTimeout: 5_000 } });
    // A node killed by a test refuses connections until the client drops it: expected noise.
    c.on("error", () => {});
    clients.push(c);
    return c;
  };
  afterEach(() => clients.splice(0).forEach((c) => c.disconnect()));

  beforeAll(async () => {
    const t = Date.now();
    cluster = await startCluster();
    report("cluster start (6 nodes, create, healthy)", t);
  }, LONG);

  afterAll(async () => {
    await cluster?.stop();
  });

  it("takes writes on each of its three masters", async () => {
    const masters = await cluster.masters();
    expect(masters).toHaveLength(3);
    const replicas = await Promise.all(masters.map((m) => cluster.replicaOf(m)));
    expect([...masters, ...replicas].sort()).toEqual([...cluster.ports].sort());
    for (const [i, m] of masters.entries()) {
      const info = String(await cluster.call(replicas[i]!, "INFO", "replication"));
      expect(infoField(info, "master_port")).toBe(String(m));
    }
    const c = clusterClient();
    for (const m of masters) {
      const stream = await cluster.keyOn(m, "events");
      await c.xadd(stream, "*", "n", String(m));
      // On the master that owns the slot, read without redirection.
      expect(await cluster.call(m, "XLEN", stream)).toBe(1);
    }
  });

  it("moves slots with their keys on a reshard, and answers ASK while a slot moves by hand", async () => {
    const [from, to] = await cluster.masters();
    const c = clusterClient();
    const keys: string[] = [];
    for (let i = 0; i < 3_000; i++) {
      const key = `k${i}`;
      if ((await cluster.masterForKey(key)) === from) {
        await c.set(key, String(i));
        keys.push(key);
      }
    }
    let t = Date.now();
    const moved = await cluster.reshard(from!, to!, 100);
    report("cluster: redis-cli reshard of 100 slots", t);
    let movedKeys = 0;
    for (const key of keys) {
      if (moved.includes(await cluster.slotOf(key))) {
        movedKeys++;
        expect(await cluster.call(to!, "GET", key)).toBe(key.slice(1));
        await expect(cluster.call(from!, "GET", key)).rejects.toThrow(/MOVED/);
      }
      expect(await c.get(key)).toBe(key.slice(1));
    }
    expect(movedKeys).toBeGreaterThan(0);

    const slot = await cluster.slotOf("hand-moved");
    const owner = await cluster.masterForSlot(slot);
    const target = (await cluster.masters()).find((m) => m !== owner)!;
    await c.set("{hand-moved}:kept", "1");
    t = Date.now();
    await cluster.beginSlotMove(slot, target);
    await expect(cluster.call(owner, "GET", "{hand-moved}:absent")).rejects.toThrow(/ASK/);
    await cluster.finishSlotMove(slot, target);
    report("cluster: one slot moved by hand", t);
    expect(await cluster.masterForSlot(slot)).toBe(target);
    expect(await cluster.call(target, "GET", "{hand-moved}:kept")).toBe("1");
  }, LONG);

  it("gives a master back a slot every other node says it owns but its own table lost (else the cluster stays down)", async () => {
    const master = (await cluster.masters())[0]!;
    const slot = (await cluster.slots()).find((r) => r.master === master)!.end;
    // The state the chaos run met after a reshard and a failover: only the owner forgets.
    await cluster.call(master, "CLUSTER", "DELSLOTS", slot);
    await waitFor("the owner reports the cluster down", 5_000, async () =>
      infoField(String(await cluster.call(master, "CLUSTER", "INFO")), "cluster_state") === "fail" ? true : undefined,
    );
    await cluster.waitHealthy();
    expect(await cluster.masterForSlot(slot)).toBe(master);
    const own = String(await cluster.call(master, "CLUSTER", "NODES")).split("\n").find((l) => l.includes("myself"))!;
    expect(own).toMatch(new RegExp(`[ -]${slot}(\\s|$)`));
  }, LONG);

  it("replaces a SIGKILLed master by its replica, with the replicated entries, and takes the old master back as a replica", async () => {
    const victim = (await cluster.masters())[0]!;
    const replica = await cluster.replicaOf(victim);
    const stream = await cluster.keyOn(victim, "failover");
    const c = clusterClient();
    for (let i = 0; i < 100; i++) await c.xadd(stream, "*", "i", String(i));
    // Replication is asynchronous: only what the replica acknowledged survives a SIGKILL.
    expect(await cluster.call(victim, "WAIT", 1, 5_000)).toBe(1);

    let t = Date.now();
    const promoted = await cluster.killMaster(victim);
    report("cluster: SIGKILL of a master until healthy again", t);
    expect(promoted).toBe(replica);
    expect(await cluster.masterForKey(stream)).toBe(promoted);
    const fresh = clusterClient();
    expect(await fresh.xlen(stream)).toBe(100);
    await fresh.xadd(stream, "*", "i", "after");

    t = Date.now();
    await cluster.restart(victim);
    report("cluster: restart of the old master until healthy", t);
    const info = String(await cluster.call(victim, "INFO", "replication"));
    expect(infoField(info, "role")).toBe("slave");
    expect(infoField(info, "master_port")).toBe(String(promoted));
    // A replica serves reads only on a connection that sent READONLY (else it answers MOVED).
    await cluster.call(victim, "READONLY");
    expect(await cluster.call(victim, "XLEN", stream)).toBe(101);
  }, LONG);
});

describe("one master, one replica, three sentinels", () => {
  let setup: RedisSentinel;
  const clients: Redis[] = [];

  /** A connection to the master the sentinels name now, and the port it is on. */
  const viaSentinels = async (): Promise<{ conn: Redis; port: number }> => {
    const conn = new Redis({ sentinels: setup.sentinels, name: SENTINEL_MASTER_NAME, lazyConnect: true, commandTimeout: 5_000 });
    // A master killed by a test refuses connections until the client drops it: expected noise.
    conn.on("error", () => {});
    clients.push(conn);
    await conn.connect();
    return { conn, port: Number(infoField(await conn.info("server"), "tcp_port")) };
  };

  beforeAll(async () => {
    const t = Date.now();
    setup = await startSentinel();
    report("sentinel start (master, replica, 3 sentinels, ready)", t);
  }, LONG);

  afterEach(() => clients.splice(0).forEach((c) => c.disconnect()));

  afterAll(async () => {
    await setup?.stop();
  });

  it("fails over on SENTINEL FAILOVER, and a client asking the sentinels gets the new master", async () => {
    const old = await setup.masterPort();
    const before = await viaSentinels();
    expect(before.port).toBe(old);
    await before.conn.set("before", "v");
    expect(await before.conn.wait(1, 5_000)).toBe(1);

    let t = Date.now();
    const promoted = await setup.failover();
    report("sentinel: SENTINEL FAILOVER until all sentinels switched", t);
    expect(promoted).not.toBe(old);
    const after = await viaSentinels();
    expect(after.port).toBe(promoted);
    expect(await after.conn.get("before")).toBe("v");
    await after.conn.set("after", "w");

    t = Date.now();
    await setup.waitReady();
    report("sentinel: after the switch, until the old master is a linked replica", t);
    expect(infoField(String(await setup.call(old, "INFO", "replication")), "role")).toBe("slave");
  }, LONG);

  it("replaces a SIGKILLed master, and the old one comes back as a replica", async () => {
    const before = await viaSentinels();
    await before.conn.set("killed", "v");
    expect(await before.conn.wait(1, 5_000)).toBe(1);

    let t = Date.now();
    const promoted = await setup.killMaster();
    report("sentinel: SIGKILL of the master until all sentinels switched", t);
    expect(promoted).not.toBe(before.port);
    const after = await viaSentinels();
    expect(after.port).toBe(promoted);
    expect(await after.conn.get("killed")).toBe("v");

    t = Date.now();
    await setup.restart(before.port);
    report("sentinel: restart of the old master until ready", t);
    const info = String(await setup.call(before.port, "INFO", "replication"));
    expect(infoField(info, "role")).toBe("slave");
    expect(infoField(info, "master_port")).toBe(String(promoted));
    expect(await setup.call(before.port, "GET", "killed")).toBe("v");
  }, LONG);
});
