// What the cluster and sentinel fixtures share: private redis-server processes that can be
// killed and restarted, free ports, cached per-node connections and condition waits.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { createServer, createConnection, type Server } from "node:net";
import { join } from "node:path";
import { Redis } from "ioredis";
import { serverLauncher } from "./server-binary.js";

/** `CLIENT SETNAME` of the fixtures' own connections, so tests can leave them out of `CLIENT LIST` counts. */
export const FIXTURE_CLIENT_NAME = "topology-fixture";

/** Time allowed for a topology to become ready after a start, a failover, a restart or a reshard. */
export const SETTLE_MS = 60_000;
const PROCESS_START_MS = 10_000;


const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const proc of live) proc.kill("SIGKILL");
});

/** `n` distinct free loopback ports, probed at once so none repeats. */
export async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const srv = createServer();
      servers.push(srv);
      await new Promise<void>((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(0, "127.0.0.1", () => resolve());
      });
    }
    return servers.map((s) => {
      const a = s.address();
      return typeof a === "object" && a ? a.port : 0;
    });
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}

/** The value of `field` in an INFO reply. */
export function infoField(info: string, field: string): string | undefined {
  for (const line of info.split("\r\n")) {
    if (line.startsWith(`${field}:`)) return line.slice(field.length + 1).trim();
  }
  return undefined;
}

/** One client of a server as `CLIENT LIST` shows it: every `key=value` field of its line. */
export type ClientInfo = Record<string, string>;

export function parseClientList(list: string): ClientInfo[] {
  return list
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => Object.fromEntries(l.trim().split(" ").map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)])));
}

/** One redis-server (data node or sentinel) that can be killed and started again on its port. */
export class ServerProcess {
  private child: ChildProcess | undefined;
  private output = "";

  constructor(
    readonly port: number,
    readonly dir: string,
    /** Arguments after the program name; a sentinel's first one is its config file. */
    public args: string[],
  ) {
    mkdirSync(dir, { recursive: true });
  }

  get alive(): boolean {
    return this.child !== undefined;
  }

  /** Spawns the server and waits until it answers PING with this process's pid. */
  async start(): Promise<void> {
    await this.kill();
    const log = join(this.dir, "redis.log");
    const launcher = serverLauncher();
    const child = spawn(launcher[0]!, [...launcher.slice(1), ...this.args, "--logfile", log], {
      cwd: this.dir,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.output = "";
    child.stdout!.on("data", (c: Buffer) => (this.output += c.toString()));
    child.stderr!.on("data", (c: Buffer) => (this.output += c.toString()));
    let exited = false;
    child.once("exit", () => {
      exited = true;
      live.delete(child);
    });
    live.add(child);
    this.child = child;
    const deadline = Date.now() + PROCESS_START_MS;
    for (;;) {
      if (exited) {
        this.child = undefined;
        throw new Error(`redis-server :${this.port} exited during start: ${this.output}\n${this.logTail()}`);
      }
      if (await answersPing(this.port)) {
        const pid = await serverPid(this.port);
        if (pid === child.pid) return;
        await this.kill();
        throw new Error(`port ${this.port} answered with pid ${pid}, not ours`);
      }
      if (Date.now() > deadline) {
        await this.kill();
        throw new Error(`redis-server :${this.port} did not answer PING within ${PROCESS_START_MS} ms`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** SIGKILLs the server and waits until it has exited. */
  async kill(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGKILL");
    await exited;
  }

  private logTail(): string {
    try {
      return readFileSync(join(this.dir, "redis.log"), "utf8").split("\n").slice(-20).join("\n");
    } catch {
      return "";
    }
  }
}

/** One cached plain connection per port, replaced after a failure (a killed or restarted server). */
export class NodeConnections {
  private readonly conns = new Map<number, Redis>();

  /** A ready connection to 127.0.0.1:`port` (no reconnects, no offline queue: errors surface at once). */
  async get(port: number): Promise<Redis> {
    const cached = this.conns.get(port);
    if (cached && cached.status === "ready") return cached;
    cached?.disconnect();
    this.conns.delete(port);
    const conn = new Redis({
      host: "127.0.0.1",
      port,
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout: 1_000,
      commandTimeout: 5_000,
      connectionName: FIXTURE_CLIENT_NAME,
    });
    conn.on("error", () => {});
    try {
      await conn.connect();
    } catch (err) {
      conn.disconnect();
      throw new Error(`:${port}: ${String(err)}`);
    }
    this.conns.set(port, conn);
    return conn;
  }

  /** Runs one command on the server at `port`. */
  async call(port: number, ...args: (string | number)[]): Promise<unknown> {
    const conn = await this.get(port);
    try {
      return await conn.call(String(args[0]), ...args.slice(1).map(String));
    } catch (err) {
      throw new Error(`:${port} ${args.join(" ")}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  async info(port: number, section: string): Promise<string> {
    return String(await this.call(port, "INFO", section));
  }

  forget(port: number): void {
    this.conns.get(port)?.disconnect();
    this.conns.delete(port);
  }

  closeAll(): void {
    for (const c of this.conns.values()) c.disconnect();
    this.conns.clear();
  }
}

/** Runs redis-cli; rejects with its output when it fails (it prints some failures as [ERR] with status 0). */
export function redisCli(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("redis-cli", args, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const text = `${stdout}${stderr}`;
      if (err || text.includes("[ERR]")) reject(new Error(`redis-cli ${args.slice(0, 2).join(" ")} failed: ${err?.message ?? ""}\n${text}`));
      else resolve(text);
    });
  });
}

/** True when something on the port answers a RESP PING. */
function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: "127.0.0.1", port });
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => done(false));
    sock.once("error", () => done(false));
    sock.once("connect", () => sock.write("PING\r\n"));
    sock.once("data", (chunk: Buffer) => done(chunk.length > 0));
  });
}

/** The `process_id` the server on `port` reports. */
async function serverPid(port: number): Promise<number | undefined> {
  const conn = new Redis({ host: "127.0.0.1", port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  conn.on("error", () => {});
  try {
    await conn.connect();
    const pid = infoField(await conn.info("server"), "process_id");
    return pid === undefined ? undefined : Number(pid);
  } catch {
    return undefined;
  } finally {
    conn.disconnect();
  }
}
