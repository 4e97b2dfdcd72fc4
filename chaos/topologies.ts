// The three topologies a chaos run can use, each with the faults that belong to it. A fault is
// drawn from the seeded generator with its parameters (which node, how long), applied, and
// undone; the run then waits until the workload goes all the way through again.
import { startCluster, type RedisCluster } from "../__test__/helpers/cluster.js";
import { startProxy, type Proxy } from "../__test__/helpers/proxy.js";
import { startRedis, type RedisServer } from "../__test__/helpers/redis-server.js";
import { SENTINEL_MASTER_NAME, startSentinel, type RedisSentinel } from "../__test__/helpers/sentinel.js";
import { infoField, NodeConnections } from "../__test__/helpers/topology.js";
import { sleep, waitFor } from "../__test__/helpers/until.js";
import type { Random } from "./random.js";
import type { Store } from "./workload.js";

export type TopologyName = "single" | "cluster" | "sentinel";

/** One fault, drawn and described before it is applied (the schedule the run prints). */
export interface Fault {
  kind: string;
  /** What exactly it does, e.g. "SIGSTOP :7001 for 800 ms". */
  detail: string;
  /** It can lose acknowledged writes (a restart without persistence, a failover). */
  loses?: boolean;
  apply(): Promise<void>;
}

/** A running topology: its store for the workload and a way to draw its next fault. */
export interface Topology extends Store {
  name: TopologyName;
  /**
   * Draws the next fault: every random choice is made from `rng` before the first await, so a
   * seed always gives the same schedule. `trimmed` records the ids a trim fault removed.
   */
  nextFault(rng: Random, streams: string[], trimmed: (stream: string, gone: string[]) => void): Promise<Fault>;
  stop(): Promise<void>;
}

const pending = (reply: unknown): number => Number((reply as unknown[])[0] ?? 0);
const ids = (reply: unknown): string[] => (reply as [string, unknown][]).map((e) => e[0]);

/** The pid of the server on `port`, for SIGSTOP/SIGCONT. */
async function pidOf(call: (port: number, ...args: (string | number)[]) => Promise<unknown>, port: number): Promise<number> {
  const pid = infoField(String(await call(port, "INFO", "server")), "process_id");
  if (!pid) throw new Error(`:${port} has no process_id in INFO server`);
  return Number(pid);
}

/** SIGSTOP for `ms`, then SIGCONT (a hung server: no FIN, no answers). */
async function pause(pid: number, ms: number): Promise<void> {
  process.kill(pid, "SIGSTOP");
  try {
    // The fault's own duration, drawn from the seed.
    await sleep(ms);
  } finally {
    process.kill(pid, "SIGCONT");
  }
}

/**
 * The ids of the oldest entries beyond `keep`, then XTRIM MAXLEN `keep`, in one script: the
 * checker must know exactly which entries a trim took. A first id left is not enough: an entry
 * below it may have been lost earlier by a restart (the publisher's to report), not trimmed.
 */
const TRIM_SCRIPT = `
local n = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[1])
local gone = {}
if n > 0 then
  for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', n)) do gone[#gone + 1] = e[1] end
  redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[1])
end
return gone`;

/** XTRIM MAXLEN `keep` on `port`; the ids it removed. */
async function trim(call: (port: number, ...args: (string | number)[]) => Promise<unknown>, port: number, stream: string, keep: number): Promise<string[]> {
  return (await call(port, "EVAL", TRIM_SCRIPT, 1, stream, keep)) as string[];
}

/**
 * One primary and one replica, both behind a TCP proxy that the clients use: a failover
 * behind one address (the proxy retargets, the old primary answers READONLY), cuts and stalls
 * of every connection, SIGKILL + restart without persistence, SIGSTOP, CLIENT KILL, OOM, trims.
 */
export async function single(): Promise<Topology> {
  const servers: RedisServer[] = [await startRedis({ private: true }), await startRedis({ private: true })];
  const conns = new NodeConnections();
  const call = (port: number, ...args: (string | number)[]) => conns.call(port, ...args);
  let primary = 0;
  const replicate = async (): Promise<void> => {
    const [p, r] = [servers[primary]!, servers[1 - primary]!];
    await call(r.port, "REPLICAOF", "127.0.0.1", p.port);
    await waitFor("the replica's link is up", 30_000, async () => (infoField(String(await call(r.port, "INFO", "replication")), "master_link_status") === "up" ? true : undefined));
  };
  await replicate();
  const proxy: Proxy = await startProxy(servers[0]!.port);
  const port = () => servers[primary]!.port;

  const faults: ((rng: Random, streams: string[], trimmed: (s: string, gone: string[]) => void) => Fault)[] = [
    (rng) => {
      const ms = rng.int(300, 2_500);
      return { kind: "sigstop", detail: `SIGSTOP the primary :${port()} for ${ms} ms`, apply: async () => pause(await pidOf(call, port()), ms) };
    },
    () => ({
      kind: "sigkill-restart",
      loses: true,
      detail: `SIGKILL the primary :${port()} and start it again empty (no persistence)`,
      apply: async () => {
        const s = servers[primary]!;
        await s.kill("SIGKILL");
        await s.restart();
        await replicate();
      },
    }),
    () => ({ kind: "cut", detail: "cut every proxied connection (RST)", apply: async () => proxy.cutAll() }),
    (rng) => {
      const ms = rng.int(300, 2_500);
      return {
        kind: "stall",
        detail: `stall every proxied connection for ${ms} ms`,
        apply: async () => {
          proxy.stall();
          await sleep(ms);
          proxy.resume();
        },
      };
    },
    () => ({ kind: "client-kill", detail: `CLIENT KILL TYPE normal on :${port()}`, apply: async () => void (await call(port(), "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")) }),
    (rng, streams, trimmed) => {
      const stream = rng.pick(streams);
      const keep = rng.int(0, 30);
      return { kind: "trim", detail: `XTRIM ${stream} MAXLEN ${keep}`, apply: async () => trimmed(stream, await trim(call, port(), stream, keep)) };
    },
    (rng) => {
      const ms = rng.int(300, 2_000);
      return {
        kind: "oom",
        detail: `the primary :${port()} answers OOM for ${ms} ms (maxmemory 1)`,
        apply: async () => {
          await call(port(), "CONFIG", "SET", "maxmemory", "1");
          try {
            await sleep(ms);
          } finally {
            await call(port(), "CONFIG", "SET", "maxmemory", "0");
          }
        },
      };
    },
    (rng) => {
      const cut = rng.next() < 0.5;
      return {
        kind: "failover-read-only",
        loses: true,
        detail: `promote the replica :${servers[1 - primary]!.port}, demote :${port()} (answers READONLY), retarget the proxy${cut ? ", cut" : ""}`,
        apply: async () => {
          const [oldP, newP] = [servers[primary]!, servers[1 - primary]!];
          await call(newP.port, "REPLICAOF", "NO", "ONE");
          primary = 1 - primary;
          proxy.retarget(newP.port);
          await call(oldP.port, "REPLICAOF", "127.0.0.1", newP.port);
          if (cut) proxy.cutAll();
          await replicate();
        },
      };
    },
  ];
  return {
    name: "single",
    url: proxy.url(),
    entryIds: async (stream) => ids(await call(port(), "XRANGE", stream, "-", "+")),
    pending: async (stream, group) => pending(await call(port(), "XPENDING", stream, group)),
    nextFault: async (rng, streams, trimmed) => rng.pick(faults)(rng, streams, trimmed),
    stop: async () => {
      await proxy.close();
      conns.closeAll();
      for (const s of servers) await s.stop();
    },
  };
}

/** A 3-master / 3-replica cluster: master kills (returning as replicas), resharding, SIGSTOP, CLIENT KILL, trims. */
export async function cluster(): Promise<Topology> {
  const c: RedisCluster = await startCluster();
  const call = (port: number, ...args: (string | number)[]) => c.call(port, ...args);
  const faults: ((rng: Random, streams: string[], trimmed: (s: string, gone: string[]) => void) => Promise<Fault>)[] = [
    async (rng, streams) => {
      const stream = rng.pick(streams);
      const master = await c.masterForKey(stream);
      return {
        kind: "master-kill",
        loses: true,
        detail: `SIGKILL master :${master}, wait for its replica's promotion, start it again as a replica`,
        apply: async () => {
          await c.killMaster(master);
          await c.restart(master);
        },
      };
    },
    async (rng) => {
      const [fromAt, toStep, count] = [rng.int(0, 2), rng.int(1, 2), rng.int(50, 400)];
      const masters = await c.masters();
      const from = masters[fromAt % masters.length]!;
      const to = masters[(fromAt + toStep) % masters.length]!;
      return { kind: "reshard", detail: `reshard ${count} slots :${from} -> :${to}`, apply: async () => void (await c.reshard(from, to, count)) };
    },
    async (rng, streams) => {
      const stream = rng.pick(streams);
      // Below the cluster's node timeout: a hang, not a failover.
      const ms = rng.int(200, 800);
      const master = await c.masterForKey(stream);
      return { kind: "sigstop", detail: `SIGSTOP master :${master} for ${ms} ms`, apply: async () => pause(await pidOf(call, master), ms) };
    },
    async () => ({
      kind: "client-kill",
      detail: "CLIENT KILL TYPE normal on every master",
      apply: async () => {
        for (const m of await c.masters()) await call(m, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");
      },
    }),
    async (rng, streams, trimmed) => {
      const stream = rng.pick(streams);
      const keep = rng.int(0, 30);
      return { kind: "trim", detail: `XTRIM ${stream} MAXLEN ${keep}`, apply: async () => trimmed(stream, await trim(call, await c.masterForKey(stream), stream, keep)) };
    },
  ];
  return {
    name: "cluster",
    url: `redis+cluster://${c.seedNodes.map((n) => `${n.host}:${n.port}`).join(",")}`,
    entryIds: async (stream) => ids(await call(await c.masterForKey(stream), "XRANGE", stream, "-", "+")),
    pending: async (stream, group) => pending(await call(await c.masterForKey(stream), "XPENDING", stream, group)),
    nextFault: (rng, streams, trimmed) => rng.pick(faults)(rng, streams, trimmed),
    stop: () => c.stop(),
  };
}

/** A master, a replica and three sentinels: SENTINEL FAILOVER, master kills, SIGSTOP, CLIENT KILL, trims. */
export async function sentinel(): Promise<Topology> {
  const s: RedisSentinel = await startSentinel();
  const call = (port: number, ...args: (string | number)[]) => s.call(port, ...args);
  const faults: ((rng: Random, streams: string[], trimmed: (st: string, gone: string[]) => void) => Fault)[] = [
    () => ({ kind: "sentinel-failover", loses: true, detail: "SENTINEL FAILOVER", apply: async () => void (await s.failover()) }),
    () => ({
      kind: "master-kill",
      loses: true,
      detail: "SIGKILL the master, wait for the promotion, start it again as a replica",
      apply: async () => {
        const old = await s.masterPort();
        await s.killMaster();
        await s.restart(old);
        await s.waitReady();
      },
    }),
    (rng) => {
      // Below down-after-milliseconds: a hang, not a failover.
      const ms = rng.int(300, 1_500);
      return { kind: "sigstop", detail: `SIGSTOP the master for ${ms} ms`, apply: async () => pause(await pidOf(call, await s.masterPort()), ms) };
    },
    () => ({ kind: "client-kill", detail: "CLIENT KILL TYPE normal on the master", apply: async () => void (await call(await s.masterPort(), "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")) }),
    (rng, streams, trimmed) => {
      const stream = rng.pick(streams);
      const keep = rng.int(0, 30);
      return { kind: "trim", detail: `XTRIM ${stream} MAXLEN ${keep}`, apply: async () => trimmed(stream, await trim(call, await s.masterPort(), stream, keep)) };
    },
  ];
  return {
    name: "sentinel",
    url: `redis+sentinel://${s.sentinels.map((n) => `${n.host}:${n.port}`).join(",")}/${SENTINEL_MASTER_NAME}`,
    entryIds: async (stream) => ids(await call(await s.masterPort(), "XRANGE", stream, "-", "+")),
    pending: async (stream, group) => pending(await call(await s.masterPort(), "XPENDING", stream, group)),
    nextFault: async (rng, streams, trimmed) => rng.pick(faults)(rng, streams, trimmed),
    stop: () => s.stop(),
  };
}

/** Starts the named topology. */
export function startTopology(name: TopologyName): Promise<Topology> {
  return { single, cluster, sentinel }[name]();
}
