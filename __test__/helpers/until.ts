// The one way tests wait for something to happen: poll for it, with a deadline and a message
// that says what was awaited and what was last seen. A fixed wait (`sleep`) is only for
// asserting that something does NOT happen within a bounded window.

const POLL_MS = 20;

/**
 * Runs `probe` every 20 ms until it returns a value other than `undefined`, and returns that
 * value. `undefined` or a thrown error means "not yet" (the error's message is kept as the
 * reason: a probe may throw while a server is restarting). Throws naming `what` and the last
 * reason after `timeoutMs`; `what` may be a function, evaluated only for that error.
 */
export async function waitFor<T>(
  what: string | (() => string),
  timeoutMs: number,
  probe: () => Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = "nothing yet";
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() >= deadline) {
      const label = typeof what === "function" ? what() : what;
      throw new Error(`not within ${timeoutMs} ms: ${label}; last seen: ${last}`);
    }
    await sleep(POLL_MS);
  }
}

/** Fails a `waitFor` probe with a reason that the final error shows. */
export function notYet(reason: string): never {
  throw new Error(reason);
}

/** Polls `cond` until it returns true: a `waitFor` whose probe is a yes/no question. */
export async function until(
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 5_000,
  what: string | (() => string) = "condition",
): Promise<void> {
  await waitFor(what, timeoutMs, async () => ((await cond()) ? true : undefined));
}

/**
 * Waits a fixed time. Only for asserting that something does NOT happen within a bounded window;
 * use `until` or `waitFor` for anything that should happen.
 */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
