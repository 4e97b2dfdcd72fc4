// Small helpers shared by the harness and the workers.

/** Microseconds on the system-wide monotonic clock (CLOCK_MONOTONIC), comparable across processes. */
export function hrUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The ~200-byte JSON object every scenario publishes (`n` numbers it, `t` carries a send time). */
export function payload(n: number, t = 0, w = false): Record<string, unknown> {
  const p: Record<string, unknown> = {
    type: "session_update",
    sessionId: "abc123def456",
    userId: 456789,
    status: "active",
    page: "/dashboard/overview",
    metrics: { cpu: 0.4215, mem: 512, reqs: 12345 },
    tags: ["alpha", "beta"],
    n,
    t,
  };
  if (w) p.w = 1;
  return p;
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile of an already sorted array (p in 0..100). */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** Runs `n` tasks with at most `inflight` outstanding; resolves when all settled. */
export function windowed(n: number, inflight: number, task: (i: number) => Promise<unknown>): Promise<void> {
  return new Promise((resolve, reject) => {
    let next = 0;
    let done = 0;
    if (n === 0) return resolve();
    const launch = (): void => {
      if (next >= n) return;
      const i = next++;
      task(i).then(() => {
        if (++done === n) resolve();
        else launch();
      }, reject);
    };
    for (let k = 0; k < Math.min(inflight, n); k++) launch();
  });
}

// ---- worker side -------------------------------------------------------------------------

/** The JSON config a worker was started with (argv[2]). */
export function workerConfig<T>(): T {
  return JSON.parse(process.argv[2] ?? "{}") as T;
}

/** Sends one message to the parent (IPC). */
export function toParent(msg: Record<string, unknown>): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) {
      console.log(JSON.stringify(msg));
      return resolve();
    }
    process.send(msg, undefined, {}, () => resolve());
  });
}

/** Resolves with the first parent message of `type`. */
export function fromParent(type: string): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const on = (m: any): void => {
      if (m && m.type === type) {
        process.off("message", on);
        resolve(m);
      }
    };
    process.on("message", on);
  });
}

/** Runs a worker's main: reports an uncaught failure as {type:"error"} and exits. */
export function runWorker(main: () => Promise<void>): void {
  // The parent going away (harness killed) ends the worker too.
  process.on("disconnect", () => process.exit(3));
  main().then(
    () => process.exit(0),
    async (err) => {
      await toParent({ type: "error", error: String(err?.stack ?? err) });
      process.exit(1);
    },
  );
}
