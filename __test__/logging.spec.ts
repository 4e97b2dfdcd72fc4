import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { setLogger, StreamsClient } from "../index.js";
import { startRedis, type RedisServer } from "./helpers/redis-server.js";
import { sleep, until } from "./helpers/until.js";

const here = dirname(fileURLToPath(import.meta.url));
const fresh = (): string => `t:logging:${randomUUID()}`;

let server: RedisServer;
let client: StreamsClient;

beforeAll(async () => {
  server = await startRedis();
  client = new StreamsClient({ redisUrl: server.url, enableAutoTrim: false, logLevel: "info" });
  await client.connect();
});

afterAll(async () => {
  setLogger(null);
  await client?.disconnect();
  await server?.stop();
});

const isWarn = (r: Record<string, unknown>): boolean => typeof r.level === "string" && r.level.toLowerCase() === "warn";

describe("setLogger", () => {
  test("routes log records to a JS function: a throwing callback logs a warn with stream and id", async () => {
    const records: Record<string, unknown>[] = [];
    setLogger((record) => void records.push(record));
    try {
      const stream = fresh();
      await client.subscribe(stream, () => {
        throw new Error("callback failure for the log");
      });
      const id = await client.publishMessage(stream, { n: 1 });
      await until(
        () => records.some((r) => isWarn(r) && r.stream === stream && r.id === id),
        5_000,
        () => `a WARN record with stream and id; got ${JSON.stringify(records.slice(-5))}`,
      );
      const record = records.find((r) => isWarn(r) && r.stream === stream && r.id === id)!;
      expect(typeof record.message).toBe("string");
      expect(record.timestamp).toBeDefined();
      expect(typeof record.target).toBe("string");
      client.unsubscribe(stream);
    } finally {
      setLogger(null);
    }
  });

  test("setLogger(null) stops routing to the JS function", async () => {
    const records: Record<string, unknown>[] = [];
    setLogger((record) => void records.push(record));
    setLogger(null);
    const stream = fresh();
    const before = client.getStatus().counters.callbackErrors;
    await client.subscribe(stream, () => {
      throw new Error("not for the JS logger");
    });
    await client.publishMessage(stream, { n: 1 });
    await until(() => client.getStatus().counters.callbackErrors > before, 5_000, "callback error counted");
    await sleep(200); // no record may reach the removed logger (a wait for something NOT to happen)
    expect(records).toEqual([]);
    client.unsubscribe(stream);
  });

  test("a logger that throws does not break delivery", async () => {
    let calls = 0;
    setLogger(() => {
      calls++;
      throw new Error("logger failure");
    });
    try {
      const stream = fresh();
      const seen: unknown[] = [];
      await client.subscribe(stream, (m) => {
        seen.push(m.data);
        if (seen.length === 1) throw new Error("produce a warn");
      });
      await client.publishBatch(stream, [1, 2, 3]);
      await until(() => seen.length >= 3, 5_000, () => `delivered ${seen.length}/3`);
      expect(seen).toEqual([1, 2, 3]);
      await until(() => calls >= 1, 5_000, "logger called");
      client.unsubscribe(stream);
    } finally {
      setLogger(null);
    }
  });

  test("after setLogger(null), warnings go to stderr as JSON lines", async () => {
    const stream = fresh();
    const fixture = resolve(here, "fixtures", "logger-null-to-stderr.mjs");
    const child = spawn(process.execPath, [fixture, server.url, stream], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    let exitCode: number | null | undefined;
    child.once("exit", (code) => (exitCode = code));
    try {
      await until(() => exitCode !== undefined, 20_000, () => `child exits (stderr: ${stderr})`);
    } finally {
      if (exitCode === undefined) child.kill("SIGKILL");
    }
    expect(exitCode, stderr).toBe(0);
    const { id, sinkRecords } = JSON.parse(stdout.trim()) as { id: string; sinkRecords: number };
    expect(sinkRecords).toBe(0);
    const lines = stderr
      .split("\n")
      .filter((l) => l.trim().startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const warn = lines.find((r) => isWarn(r) && JSON.stringify(r).includes(id));
    expect(warn, `stderr: ${stderr}`).toBeDefined();
    expect(JSON.stringify(warn)).toContain(stream);
  });

});

/** A child process running `fixture`, with its stdout collected and its stderr left unread until `readStderr()`. */
function spawnFixture(fixture: string, args: string[]) {
  const child = spawn(process.execPath, [resolve(here, "fixtures", fixture), ...args], { stdio: ["ignore", "pipe", "pipe"] });
  // Paused and without a "data" listener, nothing drains the pipe: once it and Node's buffer
  // are full, the child's writes to stderr block.
  child.stderr.pause();
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  child.once("exit", (code, signal) => (exit = { code, signal }));
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exit: () => exit,
    readStderr() {
      child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
      child.stderr.resume();
    },
    /** The JSON objects the fixture printed on stdout. */
    jsonLines: (): Array<Record<string, unknown>> =>
      stdout
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** The JSON records on a stderr text. */
const records = (text: string): Array<Record<string, unknown>> =>
  text
    .split("\n")
    .filter((l) => l.trim().startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe("stderr", () => {
  test.each(["blocking", "node"])("a stderr that nobody reads (%s pipe) does not stall publishing: lines are dropped and counted", async (stderrMode) => {
    const count = 20_000;
    const run = spawnFixture("log-blocked-stderr.mjs", [server.url, fresh(), String(count), stderrMode]);
    try {
      await until(() => run.jsonLines().length > 0 || run.exit() !== undefined, 20_000, () => `the child reports (stdout: ${run.stdout()})`);
      const [result] = run.jsonLines();
      expect(result, `exit ${JSON.stringify(run.exit())}, stdout ${run.stdout()}`).toBeDefined();
      expect(result).toMatchObject({ published: count, nulls: 0 });
      // More debug lines than the pipe and the queue hold: some were dropped, which is what
      // a writer that waited for stderr would have blocked on instead.
      expect(result!.logDropped as number).toBeGreaterThan(0);
      // Exiting does not hang on the blocked stderr either (the final write-out is bounded).
      await until(() => run.exit() !== undefined, 20_000, "the child exits while its stderr is still unread");
      expect(run.exit()).toEqual({ code: 0, signal: null });
    } finally {
      if (run.exit() === undefined) run.child.kill("SIGKILL");
      run.child.stderr.destroy();
    }
  });

  test.each(["exit", "natural"])("lines still queued when the process ends (%s) reach stderr", async (mode) => {
    const stream = fresh();
    const run = spawnFixture("log-at-exit.mjs", [server.url, stream, mode]);
    try {
      // The log queue is still full of lines when the child starts to exit: only then is its
      // stderr read.
      await until(() => run.stdout().includes("exiting\n") || run.exit() !== undefined, 30_000, () => `the child says "exiting" (stdout: ${run.stdout().slice(-500)})`);
      run.readStderr();
      await until(() => run.exit() !== undefined, 20_000, "the child exits");
      expect(run.exit(), run.stderr().slice(-2000)).toEqual({ code: 0, signal: null });
      await new Promise<void>((r) => (run.child.stderr.readableEnded ? r() : run.child.stderr.once("end", () => r())));
      const [result] = run.jsonLines();
      const ids = result!.ids as string[];
      expect(ids).toHaveLength(3_000);
      expect(result!.logDropped).toBe(0);
      const logged = records(run.stderr());
      const publishedIds = new Set(logged.filter((r) => r.message === "published" && r.stream === stream).map((r) => r.id));
      expect(ids.filter((id) => !publishedIds.has(id))).toEqual([]);
      if (mode === "natural") expect(logged.at(-1)?.message).toBe("disconnected");
    } finally {
      if (run.exit() === undefined) run.child.kill("SIGKILL");
    }
  });
});

