import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serverLauncher } from "./server-binary.js";

export interface RedisServer {
  /** redis:// URL of the server (without credentials). */
  url: string;
  port: number;
  /** True when this file owns the server (started here), false when it is the shared REDIS_URL. */
  owned: boolean;
  /** Stops the server and removes its directory (no-op for a shared REDIS_URL server). */
  stop(): Promise<void>;
  /** Sends a signal (default SIGKILL) and waits for the process to exit. Private servers only. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the server again on the same port and waits until it answers. Private servers only. */
  restart(): Promise<void>;
}

export interface StartOptions {
  /** Always start a private server, even when REDIS_URL is set (tests that kill Redis, CLIENT LIST...). */
  private?: boolean;
  /** Extra redis-server arguments, e.g. ["--requirepass", "pw"]. Implies a private server. */
  args?: string[];
  /** The server binary; default the one STREAMCAST_TEST_SERVER selects (see server-binary.ts). Implies a private server. */
  binary?: string;
}


const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const proc of live) proc.kill("SIGKILL");
});

/** Starts a private redis-server on a free port (or returns the shared REDIS_URL server). */
export async function startRedis(options: StartOptions = {}): Promise<RedisServer> {
  const shared = process.env.REDIS_URL;
  if (shared && !options.private && !options.args && !options.binary) {
    const port = Number(new URL(shared).port || 6379);
    const notOwned = async (): Promise<void> => {
      throw new Error("kill/restart need a private server: startRedis({ private: true })");
    };
    return { url: shared, port, owned: false, stop: async () => {}, kill: notOwned, restart: notOwned };
  }

  const dir = mkdtempSync(join(tmpdir(), "streamcast-redis-"));
  const extra = options.args ?? [];
  const launcher = serverLauncher(options.binary);
  let port = 0;
  let proc: ChildProcess | undefined;

  const launch = async (): Promise<void> => {
    const args = ["--port", String(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--dir", dir, ...extra];
    const child = spawn(launcher[0]!, [...launcher.slice(1), ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    let exited = false;
    child.once("exit", () => {
      exited = true;
      live.delete(child);
    });
    live.add(child);
    proc = child;
    const deadline = Date.now() + 10_000;
    while (!(await answersPing(port))) {
      if (exited) throw new Error(`redis-server on port ${port} exited during start:\n${output}`);
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        throw new Error(`redis-server on port ${port} did not answer PING within 10 s:\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  const waitExit = async (signal: NodeJS.Signals): Promise<void> => {
    const child = proc;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill(signal);
    await exited;
  };

  // A free port can be taken by someone else between probing and binding: retry a few times.
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    try {
      await launch();
      break;
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    owned: true,
    async stop() {
      await waitExit("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
    async kill(signal: NodeJS.Signals = "SIGKILL") {
      await waitExit(signal);
    },
    async restart() {
      await waitExit("SIGKILL");
      for (let attempt = 0; ; attempt++) {
        try {
          await launch();
          return;
        } catch (err) {
          if (attempt >= 5) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** True when something on the port answers a RESP PING (any reply, +PONG or -NOAUTH). */
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
