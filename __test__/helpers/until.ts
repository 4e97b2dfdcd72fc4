/** Polls `cond` every 10 ms until it returns true; throws a descriptive error after `timeoutMs`. */
export async function until(
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 5_000,
  what: string | (() => string) = "condition",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      if (await cond()) return;
    } catch (err) {
      // A condition may throw while a server is restarting; keep polling and report it at the end.
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const label = typeof what === "function" ? what() : what;
      const cause = lastError === undefined ? "" : ` (last error: ${String(lastError)})`;
      throw new Error(`until: ${label} not met within ${timeoutMs} ms${cause}`);
    }
    await sleep(10);
  }
}

/**
 * Waits a fixed time. Only for asserting that something does NOT happen within a bounded window;
 * use `until` for anything that should happen.
 */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
