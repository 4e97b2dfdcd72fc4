import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { getStreamsClient, StreamsClient, type StreamMessage } from "../index.js";
import { startProxy } from "./helpers/proxy.js";
import { startRedis, type RedisServer } from "./helpers/redis-server.js";
import { until } from "./helpers/until.js";

const here = dirname(fileURLToPath(import.meta.url));
const addonPath = resolve(here, "..", "index.js");
const fresh = (): string => `t:lifecycle:${randomUUID()}`;

let server: RedisServer;
let redis: Redis;

beforeAll(async () => {
  server = await startRedis();
  redis = new Redis(server.url);
});

afterAll(async () => {
  redis?.disconnect();
  await server?.stop();
});

interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  killedByTimeout: boolean;
  /** ms between the "disconnected" line and the exit (undefined when never printed). */
  exitAfterDisconnectMs?: number;
}

/** Runs `node args...`; kills it after `timeoutMs` (reported as killedByTimeout). */
function runNode(args: string[], timeoutMs: number): Promise<ChildResult> {
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let disconnectedAt: number | undefined;
    let killedByTimeout = false;
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      if (disconnectedAt === undefined && stdout.includes("disconnected")) disconnectedAt = Date.now();
    });
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      killedByTimeout = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      const exitAfterDisconnectMs = disconnectedAt === undefined ? undefined : Date.now() - disconnectedAt;
      resolvePromise({ code, signal, stdout, stderr, killedByTimeout, exitAfterDisconnectMs });
    });
  });
}

describe("connect / disconnect", () => {
  test("getStatus().state goes idle → connected → closed", async () => {
    const client = new StreamsClient({ redisUrl: server.url, logLevel: "error" });
    expect(client.getStatus().connected).toBe(false);
    expect(client.getStatus().state).toBe("idle");
    await client.connect();
    expect(client.getStatus().connected).toBe(true);
    expect(client.getStatus().state).toBe("connected");
    await client.disconnect();
    expect(client.getStatus().connected).toBe(false);
    expect(client.getStatus().state).toBe("closed");
  });

  test("after disconnect() publishing resolves null and writes nothing", async () => {
    const client = new StreamsClient({ redisUrl: server.url, logLevel: "error" });
    const stream = fresh();
    await client.connect();
    await client.disconnect();
    expect(await client.publishMessage(stream, { n: 1 })).toBeNull();
    expect(await client.publishBatch(stream, [1])).toEqual([null]);
    expect(await redis.exists(stream)).toBe(0);
  });

  test("connect() again after disconnect() works: publish and subscribe work again", async () => {
    const client = new StreamsClient({ redisUrl: server.url, logLevel: "error" });
    const stream = fresh();
    try {
      await client.connect();
      const first = await client.publishMessage(stream, { round: 1 });
      await client.disconnect();

      await client.connect();
      expect(client.getStatus().connected).toBe(true);
      const messages: StreamMessage[] = [];
      await client.subscribe(stream, (m) => void messages.push(m));
      const second = await client.publishMessage(stream, { round: 2 });
      expect(second).toMatch(/^\d+-\d+$/);
      await until(() => messages.length >= 1, 5_000, "message delivered after reconnecting");
      expect(messages.map((m) => m.id)).toEqual([second]);
      expect((await redis.xrange(stream, "-", "+")).map(([id]) => id)).toEqual([first, second]);
    } finally {
      await client.disconnect();
    }
  });

  test("disconnect() lets a running callback finish and clears the subscriptions", async () => {
    const client = new StreamsClient({ redisUrl: server.url, logLevel: "error" });
    const stream = fresh();
    let started = false;
    let finished = false;
    await client.connect();
    await client.subscribe(stream, async () => {
      started = true;
      await new Promise((r) => setTimeout(r, 200)); // a callback still running when disconnect() starts
      finished = true;
    });
    await client.publishMessage(stream, { slow: true });
    await until(() => started, 5_000, "callback started");
    await client.disconnect();
    expect(finished).toBe(true);
    expect(client.getStatus().subscriptions).toEqual([]);
  });

  test("disconnect() on a client that never connected resolves", async () => {
    const client = new StreamsClient({ redisUrl: server.url, logLevel: "error" });
    await expect(client.disconnect()).resolves.toBeUndefined();
  });

  test("Node exits by itself (code 0) soon after disconnect()", async () => {
    const fixture = resolve(here, "fixtures", "exit-after-disconnect.mjs");
    const result = await runNode([fixture, server.url, fresh()], 20_000);
    expect(result.killedByTimeout, `child was killed by the timeout; stdout=${result.stdout} stderr=${result.stderr}`).toBe(false);
    expect(result.stdout).toContain("disconnected");
    expect(result.code, result.stderr).toBe(0);
    // The fixture's read blocks for an hour: exiting before the kill timeout means nothing
    // waited for it (how soon is only reported).
    expect(result.exitAfterDisconnectMs).toBeDefined();
  });

  test("Node exits by itself (code 0) once the core ended the only subscription on its own", async () => {
    // "$" of a key that is not a stream cannot be resolved: the reader ends the subscription
    // (REVIEW A13). Its loop must then stop holding Node, as an unsubscribe() does.
    const stream = fresh();
    await redis.set(stream, "not a stream");
    const proxy = await startProxy(server.port);
    const child = spawn(process.execPath, [resolve(here, "fixtures", "exit-after-core-ended.mjs"), proxy.url(), stream], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    try {
      await until(() => stdout.includes("connected"), 15_000, () => `child connects (stdout=${stdout} stderr=${stderr})`);
      // The command connection stops answering, so "$" is left to the subscription's reader,
      // whose connection is opened after this and is not stalled.
      proxy.stall();
      child.stdin.write("go\n");
      child.stdin.end();
      let code: number | null | undefined;
      void exited.then((c) => (code = c));
      await until(() => code !== undefined, 20_000, () => `child exits by itself (stdout=${stdout} stderr=${stderr})`);
      expect(stdout).toContain("subscribed");
      expect(stderr).toContain("ending the subscription");
      expect(stdout).toContain("inactive at exit");
      expect(code, stderr).toBe(0);
    } finally {
      child.kill("SIGKILL");
      await proxy.close();
    }
  });

  test("publishes nobody awaits keep Node alive until they settle; then Node exits by itself", async () => {
    // No timer, no await, no disconnect: only the pending publish promises hold the process.
    const stream = fresh();
    const code = `const { StreamsClient } = require(${JSON.stringify(addonPath)});
      const c = new StreamsClient({ redisUrl: ${JSON.stringify(server.url)}, logLevel: "error" });
      c.connect().then(() => {
        let ids = 0, settled = 0;
        for (let i = 0; i < 2000; i++) c.publishMessage(${JSON.stringify(stream)}, { i }).then((id) => {
          if (typeof id === "string") ids++;
          if (++settled === 2000) console.log("settled " + settled + " ids " + ids);
        });
      });`;
    const result = await runNode(["-e", code], 20_000);
    expect(result.killedByTimeout, `stdout=${result.stdout} stderr=${result.stderr}`).toBe(false);
    expect(result.stdout).toContain("settled 2000 ids 2000");
    expect(result.code, result.stderr).toBe(0);
    const redis = new Redis(server.url);
    try {
      expect(await redis.xlen(stream)).toBe(2000);
    } finally {
      redis.disconnect();
    }
  });

  test("a client that is only constructed does not keep Node alive", async () => {
    const code = `const { StreamsClient } = require(${JSON.stringify(addonPath)});
      new StreamsClient({ redisUrl: ${JSON.stringify(server.url)} }); console.log("disconnected");`;
    const result = await runNode(["-e", code], 10_000);
    expect(result.killedByTimeout, result.stderr).toBe(false);
    expect(result.code, result.stderr).toBe(0);
  });
});

describe("a read JavaScript cannot take", () => {
  test("an entry whose JSON exceeds V8's longest string fails alone: the process lives, every subscription goes on", async () => {
    // About 170 MB in Redis and up to about 2.5 GB in the child for a few seconds.
    const fixture = resolve(here, "fixtures", "oversized-read.mjs");
    const result = await runNode([fixture, server.url, fresh()], 90_000);
    expect(result.killedByTimeout, `stdout=${result.stdout} stderr=${result.stderr}`).toBe(false);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout.trim())).toEqual({ small: ["small"], big: ["wide", "wide", "after"], callbackErrors: 1 });
  }, 120_000);
});

describe("getStreamsClient", () => {
  test("returns the same StreamsClient every call and ignores a later config", async () => {
    const a = getStreamsClient({ redisUrl: server.url, logLevel: "error" });
    const b = getStreamsClient();
    const c = getStreamsClient({ redisUrl: "redis://127.0.0.1:1", defaultCount: 3 });
    expect(b).toBe(a);
    expect(c).toBe(a);
    expect(a).toBeInstanceOf(StreamsClient);
    expect(a.getStatus().config.defaultCount).toBe(10);
    expect(a.getStatus().config.redisUrl).toContain(`:${server.port}`);

    await a.connect();
    try {
      const stream = fresh();
      const id = await getStreamsClient().publishMessage(stream, { singleton: true });
      expect((await redis.xrange(stream, "-", "+")).map(([x]) => x)).toEqual([id]);
    } finally {
      await a.disconnect();
    }
  });
});

describe("loading", () => {
  test("require() from CommonJS works", async () => {
    const stream = fresh();
    const code = `
      const m = require(${JSON.stringify(addonPath)});
      if (typeof m.StreamsClient !== "function" || typeof m.getStreamsClient !== "function") process.exit(3);
      if (m.getStreamsClient() !== m.getStreamsClient()) process.exit(4);
      const c = new m.StreamsClient({ redisUrl: ${JSON.stringify(server.url)}, logLevel: "error" });
      c.connect()
        .then(() => c.publishMessage(${JSON.stringify(stream)}, { from: "cjs" }))
        .then((id) => { console.log(JSON.stringify({ id })); return c.disconnect(); })
        .catch((e) => { console.error(e); process.exit(5); });`;
    const result = await runNode(["-e", code], 15_000);
    expect(result.killedByTimeout, result.stderr).toBe(false);
    expect(result.code, result.stderr).toBe(0);
    const { id } = JSON.parse(result.stdout.trim()) as { id: string };
    const entries = await redis.xrange(stream, "-", "+");
    expect(entries.map(([x]) => x)).toEqual([id]);
    expect(JSON.parse(entries[0]![1][1]!)).toEqual({ from: "cjs" });
  });

  test("works inside worker_threads, and a worker exits after disconnect()", async () => {
    const stream = fresh();
    const code = `
      const { parentPort, workerData } = require("node:worker_threads");
      const { StreamsClient, getStreamsClient } = require(workerData.addonPath);
      (async () => {
        const c = new StreamsClient({ redisUrl: workerData.url, logLevel: "error" });
        await c.connect();
        let got = null;
        await c.subscribe(workerData.stream, (m) => { got = m; });
        const id = await c.publishMessage(workerData.stream, { from: "worker" });
        while (got === null) await new Promise((r) => setTimeout(r, 10));
        await c.disconnect();
        parentPort.postMessage({ id, gotId: got.id, singleton: getStreamsClient() === getStreamsClient() });
      })().catch((e) => { parentPort.postMessage({ error: String(e) }); });`;
    const worker = new Worker(code, { eval: true, workerData: { addonPath, url: server.url, stream } });
    const messages: Array<{ id?: string; gotId?: string; singleton?: boolean; error?: string }> = [];
    worker.on("message", (m) => messages.push(m));
    let exitCode: number | undefined;
    worker.once("exit", (c) => (exitCode = c));
    try {
      await until(() => exitCode !== undefined, 15_000, () => `worker exits by itself (messages: ${JSON.stringify(messages)})`);
    } finally {
      if (exitCode === undefined) await worker.terminate();
    }
    expect(exitCode).toBe(0);
    expect(messages).toHaveLength(1);
    expect(messages[0]!.error).toBeUndefined();
    expect(messages[0]!.gotId).toBe(messages[0]!.id);
    expect(messages[0]!.singleton).toBe(true);
    expect((await redis.xrange(stream, "-", "+")).map(([x]) => x)).toEqual([messages[0]!.id]);
  });
});

describe("worker environments", () => {
  test("a worker terminated mid-subscription takes only its own environment: the main thread and a new worker go on", async () => {
    const code = `
      const { parentPort, workerData } = require("node:worker_threads");
      const { StreamsClient } = require(workerData.addonPath);
      (async () => {
        const c = new StreamsClient({ redisUrl: workerData.url, logLevel: "error" });
        await c.subscribe(workerData.stream, (m) => parentPort.postMessage({ got: m.data.n }));
        await c.publishMessage(workerData.stream, { n: workerData.n });
      })().catch((e) => parentPort.postMessage({ error: String(e) }));`;
    const stream = fresh();
    const run = async (n: number): Promise<void> => {
      const worker = new Worker(code, { eval: true, workerData: { addonPath, url: server.url, stream, n } });
      const messages: unknown[] = [];
      worker.on("message", (m) => messages.push(m));
      try {
        await until(() => messages.length > 0, 15_000, () => `worker ${n} delivers (messages: ${JSON.stringify(messages)})`);
        expect(messages[0]).toEqual({ got: n });
      } finally {
        // Still subscribed: its environment is torn down under a running subscription.
        await worker.terminate();
      }
    };
    await run(1);
    const client = new StreamsClient({ redisUrl: server.url, logLevel: "error" });
    try {
      const seen: unknown[] = [];
      await client.subscribe(stream, (m) => void seen.push(m.data));
      await client.publishMessage(stream, { n: "main" });
      await until(() => seen.length > 0, 5_000, "the main thread still delivers");
      expect(seen).toEqual([{ n: "main" }]);
      await run(2);
    } finally {
      await client.disconnect();
    }
  });
});

/** Connections the private server sees, the caller's own included. */
async function connections(r: Redis): Promise<number> {
  return ((await r.call("CLIENT", "LIST")) as string).trim().split("\n").filter(Boolean).length;
}

describe("lazy connect: a client that was never connected connects on its first call", () => {
  test("publishMessage without connect() resolves to the id; state goes idle → connected", async () => {
    const client = new StreamsClient({ redisUrl: server.url, logLevel: "error" });
    try {
      expect(client.getStatus().state).toBe("idle");
      const stream = fresh();
      const id = await client.publishMessage(stream, { lazy: true });
      expect(id).toMatch(/^\d+-\d+$/);
      expect(client.getStatus().state).toBe("connected");
      expect((await redis.xrange(stream, "-", "+")).map(([x]) => x)).toEqual([id]);
    } finally {
      await client.disconnect();
    }
  });

  test("500 concurrent first calls open one connection and all resolve to ids, in call order", async () => {
    const own = await startRedis({ private: true });
    const checker = new Redis(own.url);
    const client = new StreamsClient({ redisUrl: own.url, logLevel: "error", enableAutoTrim: false });
    try {
      const before = await connections(checker);
      const stream = fresh();
      const ids = await Promise.all(Array.from({ length: 500 }, (_, i) => client.publishMessage(stream, { i })));
      expect(ids.every((id) => typeof id === "string")).toBe(true);
      const stored = await checker.xrange(stream, "-", "+");
      expect(stored.map(([x]) => x)).toEqual(ids);
      expect(stored.map(([, f]) => JSON.parse(f[1]!).i)).toEqual(ids.map((_, i) => i));
      expect(await connections(checker)).toBe(before + 1);
    } finally {
      await client.disconnect();
      checker.disconnect();
      await own.stop();
    }
  });

  test("subscribe, createConsumerGroup, consumeFromGroup, trimStream and acknowledgeMessages work without connect()", async () => {
    const stream = fresh();
    const subscriber = new StreamsClient({ redisUrl: server.url, logLevel: "error" });
    const grouped = new StreamsClient({ redisUrl: server.url, logLevel: "error" });
    const trimmer = new StreamsClient({ redisUrl: server.url, logLevel: "error" });
    try {
      const got: StreamMessage[] = [];
      const subscription = await subscriber.subscribe(stream, (m) => void got.push(m));
      expect(subscription.active).toBe(true);
      expect(await grouped.createConsumerGroup(stream, "g", "$")).toBe(true);
      const consumed: StreamMessage[] = [];
      await grouped.consumeFromGroup(stream, "g", "c", (m) => void consumed.push(m), { autoAck: false });
      const id = await redis.xadd(stream, "*", "data", '{"n":1}', "timestamp", "1");
      await until(() => got.length === 1 && consumed.length === 1, 5_000, "delivered to the lazy subscriber and consumer");
      expect(got[0]!.id).toBe(id);
      expect(consumed[0]!.id).toBe(id);
      expect(await new StreamsClient({ redisUrl: server.url, logLevel: "error" }).acknowledgeMessages(stream, "g", id!)).toBe(1);
      expect(await trimmer.trimStream(stream, { maxLen: 0, approximate: false })).toBe(1);
    } finally {
      await Promise.all([subscriber.disconnect(), grouped.disconnect(), trimmer.disconnect()]);
    }
  });

  test("the first publish resolves null when the connection does not come up within commandTimeoutMs, and a later one succeeds by itself", async () => {
    const own = await startRedis({ private: true });
    const proxy = await startProxy(own.port);
    // Every chunk through the proxy waits 150 ms, so opening a connection (TCP, PING, CLIENT
    // SETINFO replies) takes several hundred ms: longer than the 100 ms command timeout.
    proxy.setDelay(150);
    const client = new StreamsClient({ redisUrl: proxy.url(), logLevel: "error", commandTimeoutMs: 100, connectTimeoutMs: 5_000 });
    try {
      const stream = fresh();
      expect(await client.publishMessage(stream, { first: true })).toBeNull();
      await until(() => client.getStatus().connected, 10_000, "the connection comes up in the background");
      proxy.setDelay(0);
      const id = await client.publishMessage(stream, { second: true });
      expect(id).toMatch(/^\d+-\d+$/);
    } finally {
      await client.disconnect();
      await proxy.close();
      await own.stop();
    }
  });

  test("the first publish waits for a connection that comes up within commandTimeoutMs", async () => {
    const own = await startRedis({ private: true });
    const proxy = await startProxy(own.port);
    proxy.setDelay(100);
    const client = new StreamsClient({ redisUrl: proxy.url(), logLevel: "error", commandTimeoutMs: 10_000 });
    try {
      const stream = fresh();
      const id = await client.publishMessage(stream, { slowStart: true });
      expect(id).toMatch(/^\d+-\d+$/);
      const checker = new Redis(own.url);
      expect((await checker.xrange(stream, "-", "+")).map(([x]) => x)).toEqual([id]);
      checker.disconnect();
    } finally {
      await client.disconnect();
      await proxy.close();
      await own.stop();
    }
  });

  test("while Redis is down, lazy publishes fail open and the client keeps trying; once Redis is back, they succeed without connect()", async () => {
    const own = await startRedis({ private: true });
    await own.kill();
    const client = new StreamsClient({ redisUrl: own.url, logLevel: "error", reconnectMaxDelayMs: 100 });
    try {
      const stream = fresh();
      expect(await client.publishMessage(stream, { n: 1 })).toBeNull();
      await until(() => client.getStatus().state === "reconnecting", 5_000, "retrying in the background");
      await own.restart();
      let id: string | null = null;
      await until(async () => (id = await client.publishMessage(stream, { n: 2 })) !== null, 10_000, "a publish succeeds once Redis is back");
      expect(client.getStatus().state).toBe("connected");
    } finally {
      await client.disconnect();
      await own.stop();
    }
  });

  test("connect() after disconnect() opens the client again; a call after disconnect() does not", async () => {
    const client = new StreamsClient({ redisUrl: server.url, logLevel: "error" });
    try {
      await client.publishMessage(fresh(), { n: 1 });
      await client.disconnect();
      expect(await client.publishMessage(fresh(), { n: 2 })).toBeNull();
      expect(client.getStatus().state).toBe("closed");
      await client.connect();
      expect(await client.publishMessage(fresh(), { n: 3 })).toMatch(/^\d+-\d+$/);
    } finally {
      await client.disconnect();
    }
  });
});

describe("getStreamsClient keeps its client on globalThis", () => {
  test("a second copy of the module (a re-evaluated module in next dev) gets the same client", async () => {
    // Two independent copies of the loader, as a bundler or a hot reload can produce: the
    // addon's per-module state differs, globalThis does not.
    const code = `
      const first = require(${JSON.stringify(addonPath)});
      delete require.cache[require.resolve(${JSON.stringify(addonPath)})];
      const second = require(${JSON.stringify(addonPath)});
      const a = first.getStreamsClient({ redisUrl: ${JSON.stringify(server.url)}, logLevel: "error" });
      const b = second.getStreamsClient({ redisUrl: ${JSON.stringify(server.url)}, logLevel: "error" });
      const slot = globalThis[Symbol.for("streamcast.client")];
      console.log(JSON.stringify({ same: a === b, slot: slot === a, enumerable: Object.keys(globalThis).some((k) => k.includes("streamcast")) }));`;
    const result = await runNode(["-e", code], 15_000);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout.trim())).toEqual({ same: true, slot: true, enumerable: false });
  });
});

describe("a client that becomes garbage without disconnect()", () => {
  test("leaves nothing behind once dropped: its delivery hub and the messages it cached are collected", async () => {
    // Each round: new client, subscribe, one message delivered, disconnect(), drop it.
    const fixture = resolve(here, "fixtures", "dropped-clients.mjs");
    const result = await runNode(["--expose-gc", fixture, server.url, fresh(), "20"], 30_000);
    expect(result.killedByTimeout, `stdout=${result.stdout} stderr=${result.stderr}`).toBe(false);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout.trim())).toEqual({ rounds: 20, clientsCollected: 20, messagesCollected: 20 });
  });

  test("closes its connections (finalizer), but not while a subscription runs", async () => {
    const own = await startRedis({ private: true });
    const checker = new Redis(own.url);
    try {
      const base = await connections(checker);
      const stream = fresh();
      const fixture = resolve(here, "fixtures", "garbage-client.mjs");
      const child = spawn(process.execPath, ["--expose-gc", fixture, own.url, stream], { stdio: ["pipe", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
      child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
      const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
      const step = async (line: string): Promise<void> => {
        await until(() => stdout.includes(line), 15_000, () => `child prints "${line}" (stdout=${stdout} stderr=${stderr})`);
      };
      try {
        await step("subscribed");
        // Command connection + reader connection.
        await until(async () => (await connections(checker)) === base + 2, 5_000, "two connections while subscribed");
        child.stdin.write("gc\n");
        await step("collected-while-subscribed: false");
        // Still delivering after garbage collection: the client was kept.
        await checker.xadd(stream, "*", "data", '{"after":"gc"}', "timestamp", "1");
        await step("delivered after gc");
        child.stdin.write("unsubscribe-and-gc\n");
        await step("collected: true");
        await until(async () => (await connections(checker)) === base, 10_000, "the finalizer closed both connections");
        child.stdin.end();
        expect(await exited).toBe(0);
      } finally {
        child.kill("SIGKILL");
      }
    } finally {
      checker.disconnect();
      await own.stop();
    }
  });
});
