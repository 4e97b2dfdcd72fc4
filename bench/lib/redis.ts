// The benchmark's own redis-server: a private one on a free port, never the one on 6379.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Redis from "ioredis";
import { sleep } from "./util.js";

export interface BenchRedis {
  port: number;
  url: string;
  version: string;
  args: string[];
  /** A harness-side ioredis connection (pre-loading, checks, FLUSHALL). */
  admin: Redis;
  flushall(): Promise<void>;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export async function startRedis(): Promise<BenchRedis> {
  const port = await freePort();
  if (port === 6379) throw new Error("refusing to use port 6379");
  const dir = mkdtempSync(join(tmpdir(), "streamcast-bench-redis-"));
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--loglevel", "warning", "--maxclients", "15000"];
  // setpriv: the kernel kills the server when the harness dies in any way.
  const SETPRIV = "/usr/bin/setpriv";
  const [cmd, ...argv] = existsSync(SETPRIV) ? [SETPRIV, "--pdeathsig", "KILL", "redis-server", ...args] : ["redis-server", ...args];
  const child: ChildProcess = spawn(cmd!, argv, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  process.once("exit", () => child.kill("SIGKILL"));
  const url = `redis://127.0.0.1:${port}`;
  const admin = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 50 });
  admin.on("error", () => {});
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode}: ${stderr}`);
    try {
      await admin.connect();
      if ((await admin.ping()) === "PONG") break;
    } catch {
      admin.disconnect();
    }
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer within 10 s: ${stderr}`);
    await sleep(50);
  }
  const info = await admin.info("server");
  const version = /redis_version:(\S+)/.exec(info)?.[1] ?? "unknown";
  return {
    port,
    url,
    version,
    args: args.map((a) => (a === dir ? "<tmpdir>" : a)),
    admin,
    async flushall() {
      await admin.flushall();
      // Let the server settle (lazy-free, client bookkeeping) before the next run.
      await sleep(50);
    },
    async stop() {
      admin.disconnect();
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 3000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Appends `n` entries in the wire format (data = JSON of payload(i), timestamp) with pipelines of 1,000. */
export async function preload(admin: Redis, stream: string, n: number, make: (i: number) => unknown): Promise<void> {
  for (let i = 0; i < n; i += 1000) {
    const p = admin.pipeline();
    for (let k = i; k < Math.min(n, i + 1000); k++) p.xadd(stream, "*", "data", JSON.stringify(make(k)), "timestamp", Date.now().toString());
    await p.exec();
  }
}
