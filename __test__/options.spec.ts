// Unknown keys in the config and in every per-call options object are rejected with
// ERR_INVALID_ARG naming the key and the closest known one, and nothing happens: no
// subscription, no consumer, no entry written, nothing trimmed.
import { readFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { getStreamsClient, StreamsClient } from "../index.js";
import { clientPool, closeRedis, openRedis, TEST_CLIENT, type Checker, type TestServer } from "./helpers/fixture.js";

const here = dirname(fileURLToPath(import.meta.url));
const fresh = (): string => `t:options:${randomUUID()}`;

let server: TestServer;
let redis: Checker;
const clients = clientPool(() => server.url);

beforeAll(async () => {
  ({ server, redis } = await openRedis());
});
afterEach(() => clients.disconnectAll());
afterAll(() => closeRedis(server, redis));

type CodedError = Error & { code?: string };

function thrown(fn: () => unknown): CodedError | undefined {
  try {
    fn();
  } catch (err) {
    return err as CodedError;
  }
  return undefined;
}

async function rejection(p: Promise<unknown>): Promise<CodedError | undefined> {
  return p.then(
    () => undefined,
    (err: unknown) => err as CodedError,
  );
}

/** A call is loose on purpose: these tests pass keys the types do not allow. */
type Loose = Record<string, unknown>;

/**
 * One way to pass each options type of index.d.ts. A new options type (an interface named
 * `*Options`, or `StreamsClientConfig`) must be added here: the test below fails until it is.
 */
const callers: Record<string, (options: Loose) => Promise<unknown>> = {
  StreamsClientConfig: async (options) => {
    const client = clients.track(new StreamsClient({ ...options, redisUrl: server.url, ...TEST_CLIENT } as never));
    await client.connect();
  },
  SubscribeOptions: async (options) => {
    const client = await clients.connected();
    await client.subscribe(fresh(), () => {}, options as never);
  },
  ConsumeOptions: async (options) => {
    const client = await clients.connected();
    const stream = fresh();
    await client.createConsumerGroup(stream, "g");
    await client.consumeFromGroup(stream, "g", "c", () => {}, options as never);
  },
  PublishOptions: async (options) => {
    const client = await clients.connected();
    await client.publishMessage(fresh(), { n: 1 }, null, options as never);
  },
  PublishBatchOptions: async (options) => {
    const client = await clients.connected();
    await client.publishBatch(fresh(), [1], options as never);
  },
  // Nested in traceContext; traceparent is required, so it is given.
  TraceContextOptions: async (options) => {
    const client = await clients.connected();
    const traceContext = { ...options, traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" };
    await client.publishMessage(fresh(), 1, null, { traceContext } as never);
  },
  StreamOptions: async (options) => {
    const client = await clients.connected();
    const stream = fresh();
    await redis.xadd(stream, "*", "data", "1");
    const it = client.stream(stream, { ...options, startId: "0" } as never);
    // Resolves with the entry, or rejects when subscribe() refused an option.
    await it.next();
    await it.return!();
  },
  ConsumeIteratorOptions: async (options) => {
    const client = await clients.connected();
    const stream = fresh();
    await redis.xadd(stream, "*", "data", "1");
    await client.createConsumerGroup(stream, "g", "0");
    const it = client.consume(stream, "g", "c", options as never);
    await it.next();
    await it.return!();
  },
  TrimOptions: async (options) => {
    const client = await clients.connected();
    await client.trimStream(fresh(), { ...options, maxLen: 100 } as never);
  },
};

/** The keys each options interface of the generated index.d.ts declares. */
function declaredOptions(): Map<string, string[]> {
  const dts = readFileSync(resolve(here, "..", "index.d.ts"), "utf8");
  const out = new Map<string, string[]>();
  for (const m of dts.matchAll(/^export interface (\w+) \{\n([\s\S]*?)^\}/gm)) {
    const name = m[1]!;
    if (!(name.endsWith("Options") || name === "StreamsClientConfig")) continue;
    out.set(
      name,
      [...m[2]!.matchAll(/^ {2}(\w+)\??:/gm)].map((k) => k[1]!),
    );
  }
  return out;
}

describe("the config", () => {
  test("new StreamsClient({ cluster }) throws ERR_INVALID_ARG naming the key and the known options", () => {
    const err = thrown(() => new StreamsClient({ cluster: { nodes: [{ host: "127.0.0.1", port: 7000 }] } } as never));
    expect(err).toBeInstanceOf(Error);
    expect(err!.code).toBe("ERR_INVALID_ARG");
    expect(err!.message).toContain("unknown option cluster");
    expect(err!.message).toContain("redisUrl");
  });

  test("a misspelt key is named with the closest known one", () => {
    const err = thrown(() => new StreamsClient({ redisUrl: server.url, defaultBlockMS: 100 } as never));
    expect(err?.code).toBe("ERR_INVALID_ARG");
    expect(err!.message).toContain("unknown option defaultBlockMS; did you mean defaultBlockMs?");
  });

  test("getStreamsClient(config) checks the keys too, and a rejected config creates no client", () => {
    const err = thrown(() => getStreamsClient({ redisURL: server.url } as never));
    expect(err?.code).toBe("ERR_INVALID_ARG");
    expect(err!.message).toContain("unknown option redisURL; did you mean redisUrl?");
    const client = getStreamsClient({ redisUrl: server.url, ...TEST_CLIENT });
    expect(client.getStatus().config.redisUrl).toBe(server.url);
  });

  test("a key whose value is undefined is still checked", () => {
    const err = thrown(() => new StreamsClient({ logLevl: undefined } as never));
    expect(err?.code).toBe("ERR_INVALID_ARG");
    expect(err!.message).toContain("did you mean logLevel?");
  });
});

describe("per-call options", () => {
  test("subscribe({ blockMS }) rejects and starts no subscription", async () => {
    const client = await clients.connected();
    const stream = fresh();
    const err = await rejection(client.subscribe(stream, () => {}, { blockMS: 100 } as never));
    expect(err?.code).toBe("ERR_INVALID_ARG");
    expect(err!.message).toContain("unknown option blockMS; did you mean blockMs?");
    expect(client.getStatus().subscriptions).toEqual([]);
  });

  test("consumeFromGroup({ autoACK }) rejects and starts no consumer", async () => {
    const client = await clients.connected();
    const stream = fresh();
    await client.createConsumerGroup(stream, "g");
    const err = await rejection(client.consumeFromGroup(stream, "g", "c", () => {}, { autoACK: false } as never));
    expect(err?.code).toBe("ERR_INVALID_ARG");
    expect(err!.message).toContain("unknown option autoACK; did you mean autoAck?");
    expect(client.getStatus().consumerGroups).toEqual([]);
  });

  test("publishMessage(..., { maxlen }) rejects and writes nothing", async () => {
    const client = await clients.connected();
    const stream = fresh();
    const err = await rejection(client.publishMessage(stream, { n: 1 }, null, { maxlen: 10 } as never));
    expect(err?.code).toBe("ERR_INVALID_ARG");
    expect(err!.message).toContain("unknown option maxlen; did you mean maxLen?");
    expect(await redis.exists(stream)).toBe(0);
  });

  test("trimStream({ maxLength }) rejects and trims nothing", async () => {
    const client = await clients.connected();
    const stream = fresh();
    for (let i = 0; i < 5; i++) await redis.xadd(stream, "*", "data", String(i));
    const err = await rejection(client.trimStream(stream, { maxLen: 1, approximate: false, exact: true } as never));
    expect(err?.code).toBe("ERR_INVALID_ARG");
    expect(err!.message).toContain("unknown option exact");
    expect(await redis.xlen(stream)).toBe(5);
  });

  test("stream({ blockMS }) and consume({ cont }) reject from next() and start nothing", async () => {
    const client = await clients.connected();
    const stream = fresh();
    const err = await rejection(client.stream(stream, { blockMS: 100 } as never).next());
    expect(err?.code).toBe("ERR_INVALID_ARG");
    expect(err!.message).toContain("unknown option blockMS; did you mean blockMs?");
    await client.createConsumerGroup(stream, "g");
    const err2 = await rejection(client.consume(stream, "g", "c", { cont: 3 } as never).next());
    expect(err2?.code).toBe("ERR_INVALID_ARG");
    expect(err2!.message).toContain("unknown option cont; did you mean count?");
    expect(client.getStatus().subscriptionDetails).toEqual([]);
    expect(client.getStatus().consumerGroups).toEqual([]);
  });

  test("consume() refuses autoAck and concurrency (messages are acknowledged with ack())", () => {
    const client = clients.track(new StreamsClient({ redisUrl: server.url, ...TEST_CLIENT }));
    for (const key of ["autoAck", "concurrency"]) {
      const err = thrown(() => client.consume(fresh(), "g", "c", { [key]: 1 } as never));
      expect(err?.code).toBe("ERR_INVALID_ARG");
      expect(err!.message).toContain(key);
    }
  });

  test("several unknown keys are all named", async () => {
    const client = await clients.connected();
    const err = await rejection(client.subscribe(fresh(), () => {}, { strtId: "0", nodes: 3 } as never));
    expect(err?.code).toBe("ERR_INVALID_ARG");
    expect(err!.message).toContain("unknown option strtId; did you mean startId?");
    expect(err!.message).toContain("unknown option nodes");
  });
});

describe("every declared key is accepted", () => {
  const declared = declaredOptions();

  test("index.d.ts declares the options types this file knows how to pass", () => {
    expect([...declared.keys()].sort()).toEqual(Object.keys(callers).sort());
  });

  // Each declared key, passed as undefined (absent for the conversion), must pass the check:
  // this proves the known keys are learnt completely from each type.
  for (const [type, keys] of declared) {
    test(`${type}: ${keys.join(", ")}`, async () => {
      const call = callers[type];
      expect(call, `no caller for ${type} in options.spec.ts`).toBeDefined();
      expect(keys.length).toBeGreaterThan(0);
      await call!(Object.fromEntries(keys.map((k) => [k, undefined])));
    });
  }
});
