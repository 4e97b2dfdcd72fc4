// A real Sentinel set-up for tests: one master, one replica and three sentinels (quorum 2), every
// one a private redis-server on a free loopback port. Every wait polls the servers for the
// condition it needs; stop() (call it in afterAll) and process exit kill everything.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePorts, infoField, NodeConnections, ServerProcess, SETTLE_MS } from "./topology.js";
import { notYet, waitFor } from "./until.js";

/** The name the sentinels monitor the master under. */
export const SENTINEL_MASTER_NAME = "mymaster";
/**
 * `down-after-milliseconds`: a master silent this long is subjectively down; the default (30 s)
 * would dominate every test. 1 s (one PING period) was too short: a sentinel's fresh link to the
 * just-promoted master may get its first PONG only after ~1.1 s, and the leader then failed
 * straight back to the old master with the other sentinels' leftover "down" votes (see
 * SENTINEL_DOWN_AFTER_MS in tests/support/topology.rs). 3 s leaves two PING periods of margin.
 */
export const SENTINEL_DOWN_AFTER_MS = 3_000;
/**
 * `failover-timeout`: bounds the election and the promotion (well under a second here); a
 * sentinel whose attempt failed waits twice this long before the next one, so 5 s keeps a retry
 * after a split vote inside the test deadlines. The default (3 min) would hang a test.
 */
export const SENTINEL_FAILOVER_TIMEOUT_MS = 5_000;

export interface RedisSentinel {
  /** Ports of the three sentinels. */
  readonly sentinelPorts: number[];
  /** `{ host, port }` of the sentinels, for `new Redis({ sentinels, name: SENTINEL_MASTER_NAME })`. */
  readonly sentinels: { host: string; port: number }[];
  /** `redis://127.0.0.1:<port>` of the sentinels. */
  readonly sentinelUrls: string[];
  /** Ports of the two data nodes (the first one started as the master). */
  readonly dataPorts: number[];
  /** Runs one command on a data node or a sentinel. */
  call(port: number, ...args: (string | number)[]): Promise<unknown>;
  /** The master's port as all three sentinels name it (throws while they disagree). */
  masterPort(): Promise<number>;
  /** The data node that is not the master. */
  replicaPort(): Promise<number>;
  /** `SENTINEL FAILOVER`, then waits until all sentinels name the other node and it reports role:master; returns its port. */
  failover(): Promise<number>;
  /** SIGKILLs the master and waits as `failover()` does; returns the new master's port. */
  killMaster(): Promise<number>;
  /** SIGKILLs a data node or sentinel and returns at once. */
  kill(port: number): Promise<void>;
  /** Waits until all sentinels name a master other than `old` that reports role:master. */
  waitSwitched(old: number): Promise<number>;
  /** Starts a killed data node again (empty) as a replica of the current master and waits until ready. */
  restart(port: number): Promise<void>;
  /** Waits until the sentinels agree on a master, the other node is its linked replica, and every sentinel sees both and the two other sentinels. */
  waitReady(): Promise<void>;
  /** Kills everything and removes the directory. */
  stop(): Promise<void>;
}

function dataArgs(port: number, dir: string): string[] {
  return ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0", "--dir", dir];
}

/** A flat [k1, v1, k2, v2, ...] reply as a record. */
function record(reply: unknown): Record<string, string> {
  const flat = reply as string[];
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!] = flat[i + 1]!;
  return out;
}

/**
 * Starts master and replica, waits until the replica's link is up, then the sentinels (so their
 * first INFO of the master already lists the replica; otherwise they learn of it 10 s later),
 * and returns once the set-up is ready.
 */
export async function startSentinel(): Promise<RedisSentinel> {
  const dir = mkdtempSync(join(tmpdir(), "streamcast-sentinel-"));
  const conns = new NodeConnections();
  let data: ServerProcess[] = [];
  let sentinels: ServerProcess[] = [];
  let lastError: unknown;
  for (let attempt = 0; attempt < 3 && sentinels.length === 0; attempt++) {
    const ports = await freePorts(5);
    const master = ports[0]!;
    const d = ports.slice(0, 2).map((port) => {
      const nodeDir = join(dir, `data-${port}`);
      const args = dataArgs(port, nodeDir);
      if (port !== master) args.push("--replicaof", "127.0.0.1", String(master));
      return new ServerProcess(port, nodeDir, args);
    });
    const s = ports.slice(2).map((port) => {
      const sdir = join(dir, `sentinel-${port}`);
      const proc = new ServerProcess(port, sdir, [join(sdir, "sentinel.conf"), "--sentinel"]);
      writeFileSync(
        join(sdir, "sentinel.conf"),
        [
          `port ${port}`,
          "bind 127.0.0.1",
          `dir ${sdir}`,
          `sentinel monitor ${SENTINEL_MASTER_NAME} 127.0.0.1 ${master} 2`,
          `sentinel down-after-milliseconds ${SENTINEL_MASTER_NAME} ${SENTINEL_DOWN_AFTER_MS}`,
          `sentinel failover-timeout ${SENTINEL_MASTER_NAME} ${SENTINEL_FAILOVER_TIMEOUT_MS}`,
          `sentinel parallel-syncs ${SENTINEL_MASTER_NAME} 1`,
          "",
        ].join("\n"),
      );
      return proc;
    });
    try {
      for (const n of d) await n.start();
      await waitFor("the replica's link is up", SETTLE_MS, async () => {
        const link = infoField(await conns.info(d[1]!.port, "replication"), "master_link_status");
        return link === "up" ? true : notYet(`master_link_status ${link}`);
      });
      for (const n of s) await n.start();
      data = d;
      sentinels = s;
    } catch (err) {
      lastError = err;
      conns.closeAll();
      await Promise.all([...d, ...s].map((n) => n.kill()));
    }
  }
  if (sentinels.length === 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`cannot start the sentinel set-up: ${String(lastError)}`);
  }

  const call = (port: number, ...args: (string | number)[]): Promise<unknown> => conns.call(port, ...args);
  const sentinelPorts = sentinels.map((s) => s.port);
  const proc = (port: number): ServerProcess => {
    const p = [...data, ...sentinels].find((x) => x.port === port);
    if (!p) throw new Error(`no process on :${port}`);
    return p;
  };

  const masterPort = async (): Promise<number> => {
    let seen: number | undefined;
    for (const s of sentinelPorts) {
      const [, port] = (await call(s, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER_NAME)) as [string, string];
      if (seen !== undefined && seen !== Number(port)) throw new Error(`sentinels name :${seen} and :${port}`);
      seen = Number(port);
    }
    return seen!;
  };

  const waitSwitched = (old: number): Promise<number> =>
    waitFor(`the sentinels switch from :${old}`, SETTLE_MS, async () => {
      const now = await masterPort();
      if (now === old) notYet(`still :${old}`);
      const role = infoField(await conns.info(now, "replication"), "role");
      return role === "master" ? now : notYet(`:${now} reports role ${role}`);
    });

  const readiness = async (): Promise<true> => {
    const master = await masterPort();
    const role = infoField(await conns.info(master, "replication"), "role");
    if (role !== "master") notYet(`master :${master} reports ${role}`);
    const replica = data.find((n) => n.port !== master && n.alive)?.port;
    if (replica !== undefined) {
      const info = await conns.info(replica, "replication");
      if (infoField(info, "role") !== "slave" || infoField(info, "master_port") !== String(master) || infoField(info, "master_link_status") !== "up") {
        notYet(`:${replica} is not a linked replica of :${master}`);
      }
    }
    for (const s of sentinelPorts) {
      const m = record(await call(s, "SENTINEL", "MASTER", SENTINEL_MASTER_NAME));
      if (m.flags !== "master" || m["num-other-sentinels"] !== "2") {
        notYet(`sentinel :${s} sees the master as ${m.flags} with ${m["num-other-sentinels"]} other sentinels`);
      }
      if (replica === undefined) continue;
      const replicas = ((await call(s, "SENTINEL", "REPLICAS", SENTINEL_MASTER_NAME)) as unknown[]).map(record);
      const r = replicas.find((x) => x.port === String(replica));
      if (r?.flags !== "slave" || r["master-link-status"] !== "ok") notYet(`sentinel :${s} does not see :${replica} as a linked replica`);
    }
    return true;
  };
  const waitReady = async (): Promise<void> => {
    await waitFor("the sentinel set-up is ready", SETTLE_MS, readiness);
  };

  const setup: RedisSentinel = {
    sentinelPorts,
    sentinels: sentinelPorts.map((port) => ({ host: "127.0.0.1", port })),
    sentinelUrls: sentinelPorts.map((port) => `redis://127.0.0.1:${port}`),
    dataPorts: data.map((n) => n.port),
    call,
    masterPort,
    async replicaPort() {
      const master = await masterPort();
      return data.find((n) => n.port !== master)!.port;
    },
    async failover() {
      const old = await masterPort();
      // A sentinel refuses (NOGOODSLAVE, INPROG) while its view of the replica is not fresh
      // yet or an earlier failover is being wrapped up: ask until it accepts.
      await waitFor("a sentinel accepts SENTINEL FAILOVER", SETTLE_MS, async () => {
        await call(sentinelPorts[0]!, "SENTINEL", "FAILOVER", SENTINEL_MASTER_NAME);
        return true;
      });
      return waitSwitched(old);
    },
    async killMaster() {
      const old = await masterPort();
      await setup.kill(old);
      return waitSwitched(old);
    },
    async kill(port) {
      await proc(port).kill();
      conns.forget(port);
    },
    waitSwitched,
    async restart(port) {
      const master = await masterPort();
      if (port === master) throw new Error(`:${port} is the master`);
      const p = proc(port);
      // As a node whose configuration follows the failover would; without replicaof it would
      // come back as a second master until the sentinels demote it about 10 s later.
      p.args = [...dataArgs(port, p.dir), "--replicaof", "127.0.0.1", String(master)];
      conns.forget(port);
      await p.start();
      await waitReady();
    },
    waitReady,
    async stop() {
      conns.closeAll();
      await Promise.all([...data, ...sentinels].map((n) => n.kill()));
      rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    await waitReady();
  } catch (err) {
    await setup.stop();
    throw err;
  }
  return setup;
}
