// Run note: `pnpm demo` (builds the addon first if needed). Runs examples/subscriber.ts and
// examples/publisher.ts as two Node.js processes on one fresh stream and checks that every
// message got across, in order, and that both processes exit by themselves.
// Redis: REDIS_URL if set; else redis://127.0.0.1:6379 (override the probe with DEMO_PROBE_URL)
// if it answers; else a private redis-server on a free port, stopped at the end.
// COUNT (default 10) and INTERVAL_MS (default 100) set the number and pace of messages.
// Exits non-zero on any failure, or after 30 s (longer for a larger COUNT).
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { command, findRedis } from "../scripts/redis-for-demo.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const count = Number(process.env.COUNT || 10);
const INTERVAL_MS = Number(process.env.INTERVAL_MS || 100);
// 30 s for the default 10 messages; more when COUNT or INTERVAL_MS ask for a longer run.
const TIMEOUT_MS = 30_000 + Math.max(0, count * INTERVAL_MS - 1_000);
const ID = /^\d+-\d+$/;
// DEMO_NODE (a JSON array) replaces the command that runs each example, e.g. an arm64 Node.js
// under qemu that strips the types itself (scripts/test-arm64.mjs); default: this Node with tsx.
const NODE: string[] = process.env.DEMO_NODE ? JSON.parse(process.env.DEMO_NODE) : [process.execPath, "--import", "tsx"];

interface Child {
  name: string;
  lines: string[];
  running: boolean;
  ready: Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(): void;
}

/** Runs one example under tsx, printing its stdout as `[name] …` and its logs as `[name:log] …`. */
function start(name: string, file: string, env: Record<string, string>): Child {
  const proc = spawn(NODE[0]!, [...NODE.slice(1), join(here, file)], {
    cwd: join(here, ".."),
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let onReady!: () => void;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  createInterface({ input: proc.stdout }).on("line", (line) => {
    lines.push(line);
    console.log(`[${name}] ${line}`);
    if (line.startsWith("ready")) onReady();
  });
  createInterface({ input: proc.stderr }).on("line", (line) => console.log(`[${name}:log] ${compactLog(line)}`));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once("error", (err) => {
      console.log(`[${name}] could not start: ${err.message}`);
      resolve({ code: null, signal: null });
    });
    // "close", not "exit": by then every line of its output has been read.
    proc.once("close", (code, signal) => resolve({ code, signal }));
  });
  const child: Child = {
    name,
    lines,
    running: true,
    ready,
    exited,
    kill: () => {
      if (child.running) proc.kill("SIGKILL");
    },
  };
  // Even if the demo itself dies (an uncaught error, a closed stdout), don't leave it behind.
  const killOnExit = () => child.kill();
  process.once("exit", killOnExit);
  exited.then(() => {
    child.running = false;
    process.off("exit", killOnExit);
  });
  return child;
}

/** streamcast's JSON log line as `LEVEL message key=value ...`, without timestamp and target. */
function compactLog(line: string): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(line);
  } catch {
    return line;
  }
  if (typeof record !== "object" || record === null || !("level" in record)) return line;
  const { timestamp: _t, target: _g, level, message, ...fields } = record;
  const rest = Object.entries(fields).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
  return [level, message, ...rest].join(" ");
}

const describeExit = (e: { code: number | null; signal: string | null }) =>
  e.signal ? `killed by ${e.signal}` : `exit code ${e.code}`;

async function main(): Promise<number> {
  const started = Date.now();
  const redis = await findRedis();
  const stream = `streamcast-demo:${Date.now()}-${randomBytes(3).toString("hex")}`;
  console.log(`demo: ${count} messages on stream ${stream}, using ${redis.description}`);

  const children: Child[] = [];
  let step = "waiting for the subscriber to be ready";
  let abortWith!: (err: Error) => void;
  const aborted = new Promise<never>((_, reject) => (abortWith = reject));
  aborted.catch(() => {}); // only the races below care
  const stuck = () => {
    const running = children.filter((c) => c.running).map((c) => c.name);
    return running.length ? ` (still running: ${running.join(", ")})` : "";
  };
  const timer = setTimeout(() => abortWith(new Error(`timed out after ${TIMEOUT_MS / 1000} s ${step}${stuck()}`)), TIMEOUT_MS);
  const onSigint = () => abortWith(new Error(`interrupted ${step}${stuck()}`));
  process.once("SIGINT", onSigint);

  try {
    const env = { REDIS_URL: redis.url, STREAM: stream, COUNT: String(count), INTERVAL_MS: String(INTERVAL_MS) };
    const sub = start("subscriber", "subscriber.ts", env);
    children.push(sub);
    const earlyExit = sub.exited.then((e) => {
      throw new Error(`the subscriber ended (${describeExit(e)}) before it was ready`);
    });
    earlyExit.catch(() => {}); // only the race below cares
    await Promise.race([sub.ready, earlyExit, aborted]);

    step = "waiting for both processes to finish";
    const pub = start("publisher", "publisher.ts", env);
    children.push(pub);
    const [subExit, pubExit] = await Promise.race([Promise.all([sub.exited, pub.exited]), aborted]);

    const published = pub.lines.map((l) => l.split(" ")[0]).filter((id) => ID.test(id));
    const received = sub.lines.map((l) => l.split(" ")[0]).filter((id) => ID.test(id));
    const problems: string[] = [];
    if (pubExit.code !== 0) problems.push(`the publisher ended with ${describeExit(pubExit)}`);
    if (subExit.code !== 0) problems.push(`the subscriber ended with ${describeExit(subExit)}`);
    if (published.length !== count) problems.push(`published ${published.length}/${count}`);
    if (received.length !== count) problems.push(`received ${received.length}/${count}`);
    if (published.join() !== received.join()) problems.push("the ids received differ from the ids published");
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    if (problems.length) {
      console.log(`demo: FAILED after ${secs} s: ${problems.join("; ")}`);
      return 1;
    }
    console.log(
      `demo: OK in ${secs} s: published ${count}, received ${count} with the same ids in the same order; ` +
        `both processes disconnected and exited by themselves`,
    );
    return 0;
  } catch (err) {
    console.log(`demo: FAILED: ${(err as Error).message}`);
    return 1;
  } finally {
    clearTimeout(timer);
    process.off("SIGINT", onSigint);
    for (const c of children) c.kill();
    await Promise.all(children.map((c) => c.exited));
    // Leave the user's Redis as we found it; a private server is thrown away anyway.
    if (!redis.url.startsWith("rediss:")) await command(redis.url, ["DEL", stream]).catch(() => {});
    await redis.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.log(`demo: FAILED: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
