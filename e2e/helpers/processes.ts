// Child processes for the e2e tests: commands that must succeed, and long-running servers that
// are always killed (with their whole process group) when a test ends, fails or the runner dies.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:net";

// setpriv makes the kernel kill a child when this process dies in any way (even SIGKILL), so no
// Next.js server outlives a crashed test run. Each child also leads its own process group, which
// cleanup kills as a whole (Next.js may start workers of its own).
const SETPRIV = "/usr/bin/setpriv";
const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) killGroup(child, "SIGKILL");
});

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

function launch(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): ChildProcess {
  const argv = existsSync(SETPRIV) ? [SETPRIV, "--pdeathsig", "KILL", command, ...args] : [command, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  live.add(child);
  child.once("exit", () => live.delete(child));
  return child;
}

export interface RunOptions {
  cwd: string;
  env?: NodeJS.ProcessEnv;
  /** Kill the command (and fail) after this long. */
  timeoutMs: number;
}

export interface RunResult {
  code: number | null;
  output: string;
}

/** Runs a command to completion and returns its exit code and interleaved output (never rejects on failure). */
export function run(command: string, args: string[], options: RunOptions): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = launch(command, args, options.cwd, { ...process.env, ...options.env });
    let output = "";
    child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => {
      killGroup(child, "SIGKILL");
      reject(new Error(`${command} ${args.join(" ")} did not finish within ${options.timeoutMs} ms:\n${output}`));
    }, options.timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** Runs a command that must succeed; on failure the error carries its output. */
export async function mustRun(command: string, args: string[], options: RunOptions): Promise<string> {
  const { code, output } = await run(command, args, options);
  if (code !== 0) throw new Error(`${command} ${args.join(" ")} exited with ${code}:\n${output}`);
  return output;
}

export interface Server {
  name: string;
  port: number;
  url: string;
  /** Everything the server printed so far. */
  output(): string;
  /** Resolves when the server printed `readyLine`; rejects if it exits first or takes too long. */
  ready: Promise<void>;
  /** Resolves with the exit code and signal once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends `signal` to the server only (not its group) and waits for it to exit. */
  signal(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Kills the server's whole process group and waits for the server to exit (idempotent). */
  stop(): Promise<void>;
}

export interface ServerOptions {
  name: string;
  cwd: string;
  command: string;
  args: string[];
  port: number;
  env: NodeJS.ProcessEnv;
  /** A line the server prints once it accepts requests. */
  readyLine: RegExp;
  readyTimeoutMs: number;
}

/** Starts a long-running server process and watches its output for `readyLine`. */
export function startServer(options: ServerOptions): Server {
  const child = launch(options.command, options.args, options.cwd, { ...process.env, ...options.env });
  let output = "";
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => {
      done = true;
      resolve({ code, signal });
    });
  });
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${options.name} did not print ${options.readyLine} within ${options.readyTimeoutMs} ms:\n${output}`)),
      options.readyTimeoutMs,
    );
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (options.readyLine.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${options.name} exited (code ${code}, signal ${signal}) before it was ready:\n${output}`));
    });
  });
  ready.catch(() => {}); // observed by the caller; never an unhandled rejection
  return {
    name: options.name,
    port: options.port,
    url: `http://127.0.0.1:${options.port}`,
    output: () => output,
    ready,
    exited,
    async signal(signal) {
      if (!done) child.kill(signal);
      return exited;
    },
    async stop() {
      if (!done) killGroup(child, "SIGKILL");
      await exited;
    },
  };
}

/** A TCP port that was free a moment ago (the caller binds it soon after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}
