// Parent side of the workers: fork a TypeScript worker (through tsx) with an IPC channel.
import { fork, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";

export const BENCH_DIR = join(dirname(__filename), "..");
export const ROOT = join(BENCH_DIR, "..");

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of live) c.kill("SIGKILL");
});

export class Worker {
  readonly child: ChildProcess;
  private readonly queue: any[] = [];
  private waiters: Array<{ type: string; resolve: (m: any) => void; reject: (e: Error) => void }> = [];
  readonly exited: Promise<number | null>;
  private exitInfo: string | null = null;

  constructor(
    readonly name: string,
    script: string,
    cfg: unknown,
  ) {
    this.child = fork(join(BENCH_DIR, "workers", script), [JSON.stringify(cfg)], {
      cwd: ROOT,
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      env: { ...process.env, STREAMCAST_LOG: process.env.STREAMCAST_LOG ?? "warn" },
    });
    live.add(this.child);
    this.child.on("message", (m: any) => {
      if (m?.type === "error") {
        const err = new Error(`worker ${this.name} failed: ${m.error}`);
        for (const w of this.waiters) w.reject(err);
        this.waiters = [];
        this.queue.push(m);
        return;
      }
      const i = this.waiters.findIndex((w) => w.type === m?.type);
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(m);
      else this.queue.push(m);
    });
    this.exited = new Promise((resolve) =>
      this.child.once("exit", (code, signal) => {
        live.delete(this.child);
        this.exitInfo = `exited (code ${code}, signal ${signal})`;
        const err = new Error(`worker ${this.name} ${this.exitInfo} before replying`);
        for (const w of this.waiters) w.reject(err);
        this.waiters = [];
        resolve(code);
      }),
    );
  }

  /** The next message of `type` (already received or still to come), or a rejection on timeout/exit/error. */
  waitFor<T = any>(type: string, timeoutMs: number): Promise<T> {
    const err = this.queue.find((m) => m?.type === "error");
    if (err) return Promise.reject(new Error(`worker ${this.name} failed: ${err.error}`));
    const i = this.queue.findIndex((m) => m?.type === type);
    if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0]);
    if (this.exitInfo) return Promise.reject(new Error(`worker ${this.name} ${this.exitInfo} before replying ${type}`));
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`worker ${this.name}: no "${type}" within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = {
        type,
        resolve: (m: T) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.waiters.push(waiter);
    });
  }

  send(msg: Record<string, unknown>): void {
    if (this.child.connected) this.child.send(msg);
  }

  /** Waits up to `ms` for a clean exit, then SIGKILLs. */
  async finish(ms = 5000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const t = setTimeout(() => this.child.kill("SIGKILL"), ms);
    await this.exited;
    clearTimeout(t);
  }

  kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    return this.exited.then(() => {});
  }
}
