import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { getStreamsClient, StreamsClient, type StreamMessage } from "../index.js";
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

  test("publishing before connect() and after disconnect() rejects with ERR_CLOSED", async () => {
    const client = new StreamsClient({ redisUrl: server.url, logLevel: "error" });
    const stream = fresh();
    await expect(client.publishMessage(stream, { n: 1 })).rejects.toMatchObject({ code: "ERR_CLOSED" });
    await expect(client.publishBatch(stream, [1])).rejects.toMatchObject({ code: "ERR_CLOSED" });
    await client.connect();
    await client.disconnect();
    await expect(client.publishMessage(stream, { n: 1 })).rejects.toMatchObject({ code: "ERR_CLOSED" });
    await expect(client.publishBatch(stream, [1])).rejects.toMatchObject({ code: "ERR_CLOSED" });
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
