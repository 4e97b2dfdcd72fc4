// A real Redis Cluster for tests: 3 masters with one replica each, six private redis-server
// processes on free loopback ports, created with `redis-cli --cluster create`. Every wait polls
// the servers for the condition it needs; stop() (call it in afterAll) and process exit kill
// everything.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePorts, infoField, NodeConnections, parseClientList, redisCli, ServerProcess, SETTLE_MS, type ClientInfo } from "./topology.js";
import { notYet, waitFor } from "./until.js";

/**
 * `cluster-node-timeout` of the nodes, in ms. A master silent on the cluster bus this long is
 * flagged PFAIL, then FAIL once a majority agrees, and its replica is elected 0.5-1 s later: a
 * SIGKILLed master is replaced about 2 s after the kill. Redis's default (15 s) would make every
 * failover test wait that long; much less would risk false failovers on a busy 2-core CI machine.
 */
export const CLUSTER_NODE_TIMEOUT_MS = 1_000;
/**
 * `repl-ping-replica-period` of the nodes, in seconds. Redis 7.0 leaves a replica out of CLUSTER
 * SLOTS while its replication offset is 0, and on an idle master the offset first moves with
 * the master's PING to its replicas: 10 s by default, so a fresh cluster would list no replicas
 * for up to 10 s. Measured: start-up 11.6 s with the default, about 3 s with 1 s.
 */
export const REPL_PING_REPLICA_PERIOD_S = 1;
/** Slots of a Redis Cluster. */
export const CLUSTER_SLOTS = 16_384;

/** One contiguous range of slots and the nodes serving it, as `CLUSTER SLOTS` reports it. */
export interface SlotRange {
  start: number;
  /** Inclusive. */
  end: number;
  /** Port of the master owning the range. */
  master: number;
  /** Ports of its replicas that the node asked does not consider failed. */
  replicas: number[];
}

export interface RedisCluster {
  /** Ports of the six nodes, in start order. */
  readonly ports: number[];
  /** Ports of the nodes running now. */
  livePorts(): number[];
  /** `{ host, port }` of every node, for `new Cluster(seedNodes)`. */
  readonly seedNodes: { host: string; port: number }[];
  /** `redis://127.0.0.1:<port>` of every node. */
  readonly seedUrls: string[];
  /** Runs one command on one node through a plain connection (no redirections followed). */
  call(port: number, ...args: (string | number)[]): Promise<unknown>;
  /** The node's id (`CLUSTER MYID`). */
  nodeId(port: number): Promise<string>;
  /** The slot map as a live node sees it, ordered by slot. */
  slots(): Promise<SlotRange[]>;
  /** Ports of the masters that own slots, ascending. */
  masters(): Promise<number[]>;
  /** Port of the (first) live replica of `master`. */
  replicaOf(master: number): Promise<number>;
  /** The hash slot of `key` (`CLUSTER KEYSLOT`). */
  slotOf(key: string): Promise<number>;
  /** Port of the master owning `slot`. */
  masterForSlot(slot: number): Promise<number>;
  /** Port of the master owning `key`'s slot. */
  masterForKey(key: string): Promise<number>;
  /** A key `<prefix>-<n>` whose slot `master` owns. */
  keyOn(master: number, prefix: string): Promise<string>;
  /** `CLIENT LIST` of one node, parsed (the fixture's own connections are named "topology-fixture"). */
  clientList(port: number): Promise<ClientInfo[]>;
  /** SIGKILLs one node and returns at once. */
  kill(port: number): Promise<void>;
  /** SIGKILLs master `port`, waits until its replica owns its slots and the cluster is healthy; returns the new master. */
  killMaster(port: number): Promise<number>;
  /** Waits until `replica` is a master, no live node routes to `oldMaster`, and the cluster is healthy. */
  waitPromoted(oldMaster: number, replica: number): Promise<void>;
  /** Starts a node again with its nodes.conf (empty data); a failed-over master returns as a replica. Waits until healthy. */
  restart(port: number): Promise<void>;
  /** `redis-cli --cluster reshard` of `count` slots from `from` to `to`; returns the moved slots once all nodes agree. */
  reshard(from: number, to: number, count: number): Promise<number[]>;
  /** IMPORTING on `to`, MIGRATING on the owner: the owner answers -ASK for keys of the slot it no longer has. */
  beginSlotMove(slot: number, to: number): Promise<void>;
  /** MIGRATEs the slot's remaining keys to `to`, SETSLOT NODE on every master, waits until healthy. */
  finishSlotMove(slot: number, to: number): Promise<void>;
  /** Waits until every live node is ok with all slots, all give the same CLUSTER SLOTS (masters and replicas), and every slot-less node is a linked replica listed under its master. */
  waitHealthy(): Promise<void>;
  /** Kills every node and removes the directory. */
  stop(): Promise<void>;
}

function parseSlots(reply: unknown): SlotRange[] {
  const ranges = (reply as unknown[][]).map((r) => ({
    start: Number(r[0]),
    end: Number(r[1]),
    master: Number((r[2] as unknown[])[1]),
    replicas: r
      .slice(3)
      .map((n) => Number((n as unknown[])[1]))
      .sort((a, b) => a - b),
  }));
  return ranges.sort((a, b) => a.start - b.start);
}

/** Starts six nodes, creates the cluster and returns once it is healthy. */
export async function startCluster(): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), "streamcast-cluster-"));
  let nodes: ServerProcess[] = [];
  let lastError: unknown;
  // A probed port can be taken before redis-server binds it: then all six start over on fresh ports.
  for (let attempt = 0; attempt < 3 && nodes.length === 0; attempt++) {
    const ports = await freePorts(12);
    const candidates = ports.slice(0, 6).map((port, i) => {
      const nodeDir = join(dir, `node-${port}`);
      return new ServerProcess(port, nodeDir, [
        "--port", String(port), "--cluster-port", String(ports[i + 6]), "--bind", "127.0.0.1",
        "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", String(CLUSTER_NODE_TIMEOUT_MS),
        "--save", "", "--appendonly", "no",
        "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
        "--repl-ping-replica-period", String(REPL_PING_REPLICA_PERIOD_S), "--dir", nodeDir,
      ]);
    });
    try {
      for (const n of candidates) await n.start();
      nodes = candidates;
    } catch (err) {
      lastError = err;
      await Promise.all(candidates.map((n) => n.kill()));
    }
  }
  if (nodes.length === 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`cannot start the cluster's nodes: ${String(lastError)}`);
  }

  const conns = new NodeConnections();
  const node = (port: number): ServerProcess => {
    const n = nodes.find((x) => x.port === port);
    if (!n) throw new Error(`no node on :${port}`);
    return n;
  };
  const livePorts = (): number[] => nodes.filter((n) => n.alive).map((n) => n.port);
  const call = (port: number, ...args: (string | number)[]): Promise<unknown> => conns.call(port, ...args);

  const slots = async (): Promise<SlotRange[]> => {
    let last: unknown;
    for (const port of livePorts()) {
      try {
        return parseSlots(await call(port, "CLUSTER", "SLOTS"));
      } catch (err) {
        last = err;
      }
    }
    throw new Error(`no live node answers CLUSTER SLOTS: ${String(last)}`);
  };
  const masters = async (): Promise<number[]> => [...new Set((await slots()).map((r) => r.master))].sort((a, b) => a - b);
  const masterForSlot = async (slot: number): Promise<number> => {
    const r = (await slots()).find((x) => x.start <= slot && slot <= x.end);
    if (!r) throw new Error(`slot ${slot} is not served`);
    return r.master;
  };
  const slotOf = async (key: string): Promise<number> => Number(await call(livePorts()[0]!, "CLUSTER", "KEYSLOT", key));
  const nodeId = async (port: number): Promise<string> => String(await call(port, "CLUSTER", "MYID"));

  const health = async (): Promise<true> => {
    const live = livePorts();
    let agreed: { port: number; map: string } | undefined;
    for (const port of live) {
      const info = String(await call(port, "CLUSTER", "INFO"));
      for (const [field, want] of [["cluster_state", "ok"], ["cluster_slots_assigned", String(CLUSTER_SLOTS)], ["cluster_slots_ok", String(CLUSTER_SLOTS)]] as const) {
        const got = infoField(info, field);
        if (got !== want) notYet(`:${port} ${field}:${got}`);
      }
      const map = JSON.stringify(parseSlots(await call(port, "CLUSTER", "SLOTS")));
      if (!agreed) agreed = { port, map };
      else if (agreed.map !== map) notYet(`:${port} and :${agreed.port} disagree on the slots' masters and replicas`);
      for (const line of String(await call(port, "CLUSTER", "NODES")).split("\n")) {
        const f = line.split(" ");
        const nodePort = Number(f[1]?.split(/[:@]/)[1]);
        if (live.includes(nodePort) && f[2]?.includes("fail")) notYet(`:${port} flags live :${nodePort} as ${f[2]}`);
      }
    }
    const map = JSON.parse(agreed?.map ?? "[]") as SlotRange[];
    for (const port of live) {
      if (map.some((r) => r.master === port)) continue;
      const info = await conns.info(port, "replication");
      if (infoField(info, "role") !== "slave" || infoField(info, "master_link_status") !== "up") {
        notYet(`:${port} owns no slots but is not a linked replica (role ${infoField(info, "role")}, link ${infoField(info, "master_link_status")})`);
      }
      const master = Number(infoField(info, "master_port"));
      if (!map.some((r) => r.master === master && r.replicas.includes(port))) notYet(`the slot map does not list :${port} as a replica of :${master} yet`);
    }
    return true;
  };
  /** Every live node's `CLUSTER NODES`, for an error that says how the cluster is stuck. */
  const views = async (): Promise<string> => {
    const out: string[] = [];
    for (const port of livePorts()) {
      const nodesView = await call(port, "CLUSTER", "NODES").catch((e: unknown) => String(e));
      out.push(`:${port} CLUSTER NODES:\n${String(nodesView).trim()}`);
    }
    return out.join("\n");
  };
  /**
   * Slots that every other live node says a master owns and that the master itself has as
   * unassigned, claimed for it with `CLUSTER ADDSLOTS` (what an operator would do). Seen in the
   * chaos run: a reshard, then the target master failed over; the promoted replica's own table
   * lacked the reshard's last slot while every other node gave it that slot, and the cluster
   * stayed down (`cluster_state:fail` on that node) for good. Returns what it claimed.
   */
  const claimOrphanedSlots = async (): Promise<string[]> => {
    const live = livePorts();
    const tables = new Map<number, { self: string; owner: Map<number, string> }>();
    for (const port of live) {
      const owner = new Map<number, string>();
      let self = "";
      for (const line of String(await call(port, "CLUSTER", "NODES")).trim().split("\n")) {
        const f = line.split(" ");
        if (f[2]?.includes("myself")) self = f[0]!;
        for (const range of f.slice(8)) {
          if (range.startsWith("[")) continue; // a slot being migrated or imported
          const [a, b] = range.split("-").map(Number);
          for (let slot = a!; slot <= (b ?? a)!; slot++) owner.set(slot, f[0]!);
        }
      }
      tables.set(port, { self, owner });
    }
    const claimed: string[] = [];
    for (const [port, { self, owner }] of tables) {
      const others = [...tables].filter(([p]) => p !== port).map(([, t]) => t.owner);
      const orphaned: number[] = [];
      for (let slot = 0; slot < CLUSTER_SLOTS; slot++) {
        if (!owner.has(slot) && others.length > 0 && others.every((o) => o.get(slot) === self)) orphaned.push(slot);
      }
      if (orphaned.length === 0) continue;
      await call(port, "CLUSTER", "ADDSLOTS", ...orphaned);
      claimed.push(`:${port} claimed ${orphaned.length} slot(s) from ${orphaned[0]} that every other node gave it`);
    }
    return claimed;
  };
  const waitHealthy = async (): Promise<void> => {
    let lastHeal = Date.now();
    const healing = async (): Promise<true> => {
      try {
        return await health();
      } catch (err) {
        // Give the cluster's own gossip time first.
        if (Date.now() - lastHeal > 10_000) {
          lastHeal = Date.now();
          for (const line of await claimOrphanedSlots()) console.warn(`[cluster fixture] ${line}`);
        }
        throw err;
      }
    };
    try {
      await waitFor("the cluster is healthy", SETTLE_MS, healing);
    } catch (err) {
      throw new Error(`${String(err instanceof Error ? err.message : err)}\n${await views()}`, { cause: err });
    }
  };

  const replicaOf = async (master: number): Promise<number> => {
    const r = (await slots()).find((x) => x.master === master);
    if (!r) throw new Error(`:${master} owns no slots`);
    if (r.replicas.length === 0) throw new Error(`:${master} has no replica`);
    return r.replicas[0]!;
  };

  const kill = async (port: number): Promise<void> => {
    await node(port).kill();
    conns.forget(port);
  };

  const waitPromoted = async (oldMaster: number, replica: number): Promise<void> => {
    await waitFor(`replica :${replica} takes over the slots of :${oldMaster}`, SETTLE_MS, async () => {
      const role = infoField(await conns.info(replica, "replication"), "role");
      if (role !== "master") notYet(`:${replica} is still ${role}`);
      for (const port of livePorts()) {
        if (parseSlots(await call(port, "CLUSTER", "SLOTS")).some((r) => r.master === oldMaster)) notYet(`:${port} still routes slots to :${oldMaster}`);
      }
      return true;
    });
    await waitHealthy();
  };

  const cluster: RedisCluster = {
    ports: nodes.map((n) => n.port),
    livePorts,
    seedNodes: nodes.map((n) => ({ host: "127.0.0.1", port: n.port })),
    seedUrls: nodes.map((n) => `redis://127.0.0.1:${n.port}`),
    call,
    nodeId,
    slots,
    masters,
    replicaOf,
    slotOf,
    masterForSlot,
    masterForKey: async (key) => masterForSlot(await slotOf(key)),
    async keyOn(master, prefix) {
      const map = await slots();
      for (let n = 0; n < 100_000; n++) {
        const key = `${prefix}-${n}`;
        const slot = await slotOf(key);
        if (map.some((r) => r.master === master && r.start <= slot && slot <= r.end)) return key;
      }
      throw new Error(`no key with prefix ${prefix} hashes to :${master}`);
    },
    async clientList(port) {
      return parseClientList(String(await call(port, "CLIENT", "LIST")));
    },
    kill,
    async killMaster(port) {
      if (!(await masters()).includes(port)) throw new Error(`:${port} is not a master`);
      const replica = await replicaOf(port);
      await kill(port);
      await waitPromoted(port, replica);
      return replica;
    },
    waitPromoted,
    async restart(port) {
      conns.forget(port);
      await node(port).start();
      await waitHealthy();
    },
    async reshard(from, to, count) {
      const before = await slots();
      await redisCli([
        "--cluster", "reshard", `127.0.0.1:${from}`, "--cluster-from", await nodeId(from), "--cluster-to", await nodeId(to),
        "--cluster-slots", String(count), "--cluster-yes",
      ]);
      await waitHealthy();
      const after = await slots();
      const owner = (map: SlotRange[], s: number): number | undefined => map.find((r) => r.start <= s && s <= r.end)?.master;
      const moved: number[] = [];
      for (let s = 0; s < CLUSTER_SLOTS; s++) if (owner(before, s) === from && owner(after, s) === to) moved.push(s);
      if (moved.length !== count) throw new Error(`reshard moved ${moved.length} slots, not ${count}`);
      return moved;
    },
    async beginSlotMove(slot, to) {
      const from = await masterForSlot(slot);
      if (from === to) throw new Error(`slot ${slot} is already on :${to}`);
      await call(to, "CLUSTER", "SETSLOT", slot, "IMPORTING", await nodeId(from));
      await call(from, "CLUSTER", "SETSLOT", slot, "MIGRATING", await nodeId(to));
    },
    async finishSlotMove(slot, to) {
      const from = await masterForSlot(slot);
      for (;;) {
        const keys = (await call(from, "CLUSTER", "GETKEYSINSLOT", slot, 100)) as string[];
        if (keys.length === 0) break;
        await call(from, "MIGRATE", "127.0.0.1", to, "", 0, 5_000, "KEYS", ...keys);
      }
      const toId = await nodeId(to);
      // The target first, so the slot never lacks an owner that accepts it.
      await call(to, "CLUSTER", "SETSLOT", slot, "NODE", toId);
      await call(from, "CLUSTER", "SETSLOT", slot, "NODE", toId);
      for (const m of await masters()) if (m !== to && m !== from) await call(m, "CLUSTER", "SETSLOT", slot, "NODE", toId);
      await waitHealthy();
    },
    waitHealthy,
    async stop() {
      conns.closeAll();
      await Promise.all(nodes.map((n) => n.kill()));
      rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    await redisCli(["--cluster", "create", ...cluster.seedNodes.map((n) => `127.0.0.1:${n.port}`), "--cluster-replicas", "1", "--cluster-yes"]);
    await waitHealthy();
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}
