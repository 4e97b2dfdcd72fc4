// The setup most spec files share: a Redis to test against with an ioredis checker connection,
// and streamcast clients that are disconnected for you.
//
// The topology comes from STREAMCAST_TEST_TOPOLOGY (vitest.config.mts sets it per project):
// unset or "single", one redis-server (private, or the shared REDIS_URL); "cluster", a private
// 3-master / 3-replica Redis Cluster (helpers/cluster.ts) that streamcast reaches through its
// `redis+cluster://` URL and the checker through ioredis's `Cluster`. The behaviour suites run
// in both, unchanged: they use `server.url`, the checker, and the per-node helpers below for
// what only a server can tell (CLIENT LIST, INFO commandstats).
import { Cluster, Redis } from "ioredis";
import { StreamsClient, type StreamsClientConfig } from "../../index.js";
import { startCluster, type RedisCluster } from "./cluster.js";
import { startRedis, type RedisServer } from "./redis-server.js";
import { FIXTURE_CLIENT_NAME, NodeConnections, parseClientList, type ClientInfo } from "./topology.js";

/** Defaults of every test client: no auto-trim (tests count entries), quiet logs. */
export const TEST_CLIENT: StreamsClientConfig = { enableAutoTrim: false, logLevel: "error" };

/** The topology this test process runs against. */
export type Topology = "single" | "cluster";

export const TOPOLOGY: Topology = (() => {
  const v = process.env.STREAMCAST_TEST_TOPOLOGY ?? "single";
  if (v !== "single" && v !== "cluster") throw new Error(`STREAMCAST_TEST_TOPOLOGY must be "single" or "cluster", not ${JSON.stringify(v)}`);
  return v;
})();

/** `CLIENT SETNAME` of the checker's connections, so that connection counts leave them out. */
export const CHECKER_CLIENT_NAME = "test-checker";

/** The checker: a plain connection to the one server, or a cluster client following redirections. */
export type Checker = Redis | Cluster;

/** The Redis a spec file tests against, whatever the topology. */
export interface TestServer {
  /** What streamcast connects to: `redis://...` or `redis+cluster://h:p,...`. */
  readonly url: string;
  readonly topology: Topology;
  /** True when this file started it (nobody else's connections or commands are on it). */
  readonly owned: boolean;
  /** The single server (kill/restart), when the topology is "single". */
  readonly single?: RedisServer;
  /** The cluster (kill a master, slots), when the topology is "cluster". */
  readonly cluster?: RedisCluster;
  /** Ports of the nodes that serve keys now: the one server, or the cluster's masters. */
  masters(): Promise<number[]>;
  /** Ports of every running node. */
  livePorts(): number[];
  /** One command on one node (no redirections followed). */
  call(port: number, ...args: (string | number)[]): Promise<unknown>;
  /** Stops what this file started. */
  stop(): Promise<void>;
}

export interface OpenOptions {
  /** A Redis nobody else uses (connection counts, kills): never the shared REDIS_URL. A cluster always is. */
  private?: boolean;
}

/** Starts this file's Redis (one server or a cluster, see TOPOLOGY) and a checker connected to it. */
export async function openRedis(options: OpenOptions = {}): Promise<{ server: TestServer; redis: Checker }> {
  if (TOPOLOGY === "cluster") {
    const cluster = await startCluster();
    const server: TestServer = {
      url: `redis+cluster://${cluster.seedNodes.map((n) => `${n.host}:${n.port}`).join(",")}`,
      topology: "cluster",
      owned: true,
      cluster,
      masters: () => cluster.masters(),
      livePorts: () => cluster.livePorts(),
      call: (port, ...args) => cluster.call(port, ...args),
      stop: () => cluster.stop(),
    };
    const redis = new Cluster(cluster.seedNodes, { redisOptions: { connectionName: CHECKER_CLIENT_NAME } });
    // A node a test kills refuses connections until the checker drops it: expected noise.
    redis.on("error", () => {});
    return { server, redis };
  }
  const single = await startRedis({ private: options.private });
  const conns = new NodeConnections();
  const server: TestServer = {
    url: single.url,
    topology: "single",
    owned: single.owned,
    single,
    masters: async () => [single.port],
    livePorts: () => [single.port],
    call: (port, ...args) => {
      if (port !== single.port) throw new Error(`no node on :${port}`);
      return conns.call(port, ...args);
    },
    stop: async () => {
      conns.closeAll();
      await single.stop();
    },
  };
  return { server, redis: new Redis(single.url, { connectionName: CHECKER_CLIENT_NAME }) };
}

/** Disconnects the given clients and the checker, then stops the server. Tolerates undefined (a failed beforeAll). */
export async function closeRedis(server: TestServer | undefined, redis: Checker | undefined, ...clients: (StreamsClient | undefined)[]): Promise<void> {
  await Promise.all(clients.map((c) => c?.disconnect()));
  redis?.disconnect();
  await server?.stop();
}

/**
 * `CLIENT LIST` of every running node, leaving out the checker's and the fixtures' own
 * connections and the replication links (a replica is a client of its master, flag S, and
 * its master link is one on the replica, flag M).
 */
export async function clientsPerNode(server: TestServer): Promise<Map<number, ClientInfo[]>> {
  const out = new Map<number, ClientInfo[]>();
  for (const port of server.livePorts()) {
    const list = parseClientList(String(await server.call(port, "CLIENT", "LIST")));
    out.set(port, list.filter((c) => c.name !== CHECKER_CLIENT_NAME && c.name !== FIXTURE_CLIENT_NAME && !/[SM]/.test(c.flags ?? "")));
  }
  return out;
}

/** Connections of streamcast clients (everything but the checker and the fixtures) on each running node. */
export async function connectionsPerNode(server: TestServer): Promise<number[]> {
  return [...(await clientsPerNode(server)).values()].map((l) => l.length);
}

/** Connections blocked in `cmd` (`xread`, `xreadgroup`) on all nodes together. */
export async function blockedIn(server: TestServer, cmd: string): Promise<number> {
  let n = 0;
  for (const list of (await clientsPerNode(server)).values()) {
    n += list.filter((c) => (c.flags ?? "").includes("b") && c.cmd === cmd).length;
  }
  return n;
}

/** Calls of `cmd` (lower case, e.g. "xack") that the serving nodes executed (INFO commandstats), all together. */
export async function commandCalls(server: TestServer, cmd: string): Promise<number> {
  let n = 0;
  for (const port of await server.masters()) {
    const stats = String(await server.call(port, "INFO", "commandstats"));
    n += Number(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
  }
  return n;
}

/** An outage of the node that serves one key; `end()` brings the key back. */
export interface Outage {
  /** Restarts the server (single), or waits until the replica took over the killed master's slots and the cluster is healthy. */
  end(): Promise<void>;
}

/**
 * SIGKILLs the node serving `key`: the one server, or the master owning the key's slot (whose
 * replica then takes over: a cluster's way back from a dead node is a failover, not a restart).
 */
export async function takeDown(server: TestServer, key: string): Promise<Outage> {
  const { cluster, single } = server;
  if (cluster) {
    const master = await cluster.masterForKey(key);
    const replica = await cluster.replicaOf(master);
    await cluster.kill(master);
    return { end: () => cluster.waitPromoted(master, replica) };
  }
  if (!single?.owned) throw new Error("takeDown needs a private server: openRedis({ private: true })");
  await single.kill("SIGKILL");
  return { end: () => single.restart() };
}

/** A URL of the current topology where nothing listens (port 1). */
export function unreachableUrl(): string {
  return TOPOLOGY === "cluster" ? "redis+cluster://127.0.0.1:1" : "redis://127.0.0.1:1";
}

/** A connected client of `url` with the test defaults plus `extra`. */
export async function connectedClient(url: string, extra: StreamsClientConfig = {}): Promise<StreamsClient> {
  const client = new StreamsClient({ redisUrl: url, ...TEST_CLIENT, ...extra });
  await client.connect();
  return client;
}

/** Clients created during a test, all disconnected by `disconnectAll()` (call it in afterEach). */
export function clientPool(url: () => string, defaults: StreamsClientConfig = {}) {
  const clients: StreamsClient[] = [];
  return {
    /** A connected client of this file's server, disconnected after the test. */
    async connected(extra: StreamsClientConfig = {}): Promise<StreamsClient> {
      const client = new StreamsClient({ redisUrl: url(), ...TEST_CLIENT, ...defaults, ...extra });
      clients.push(client);
      await client.connect();
      return client;
    },
    /** Remembers a client created elsewhere so that it is disconnected after the test too. */
    track(client: StreamsClient): StreamsClient {
      clients.push(client);
      return client;
    },
    async disconnectAll(): Promise<void> {
      await Promise.all(clients.splice(0).map((c) => c.disconnect()));
    },
  };
}
