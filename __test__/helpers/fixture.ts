// The setup most spec files share: a private redis-server (or REDIS_URL) with an ioredis
// checker connection, and streamcast clients that are disconnected for you.
import { Redis } from "ioredis";
import { StreamsClient, type StreamsClientConfig } from "../../index.js";
import { startRedis, type RedisServer } from "./redis-server.js";

/** Defaults of every test client: no auto-trim (tests count entries), quiet logs. */
export const TEST_CLIENT: StreamsClientConfig = { enableAutoTrim: false, logLevel: "error" };

/** Starts this file's Redis and an ioredis checker connected to it. */
export async function openRedis(): Promise<{ server: RedisServer; redis: Redis }> {
  const server = await startRedis();
  return { server, redis: new Redis(server.url) };
}

/** Disconnects the given clients and the checker, then stops the server. Tolerates undefined (a failed beforeAll). */
export async function closeRedis(server: RedisServer | undefined, redis: Redis | undefined, ...clients: (StreamsClient | undefined)[]): Promise<void> {
  await Promise.all(clients.map((c) => c?.disconnect()));
  redis?.disconnect();
  await server?.stop();
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
