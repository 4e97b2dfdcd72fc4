// Start-up and shutdown of the server-side part, once per process.
//
// Two copies of this module can exist in one process: the custom server (server.ts, compiled by
// tsc) loads one, and Next's bundle (instrumentation.ts) loads another. Next has also been seen
// to call instrumentation's register() twice. So the state lives on globalThis, under
// Symbol.for keys, and every function here is idempotent.
import { client, INSTANCE } from "./streams";

type Hook = () => void | Promise<void>;

interface ProcessState {
  /** The start-up, once begun: a second caller waits for the same one. */
  started?: Promise<void>;
  stopping: boolean;
  hooks: Hook[];
  /** Run after the client has disconnected (flushing telemetry), in order. */
  finalHooks?: Hook[];
}

const KEY = Symbol.for("nextjs-dashboard.lifecycle");
const holder = globalThis as typeof globalThis & { [KEY]?: ProcessState };
const state: ProcessState = (holder[KEY] ??= { stopping: false, hooks: [] });

/** Upper bound for a graceful shutdown; after it the process exits anyway (exit code 1). */
const SHUTDOWN_DEADLINE_MS = 10_000;

/**
 * Starts the server-side part of this process (idempotent): waits for Redis (without failing
 * start-up when it is down: the client keeps retrying and publishing fails open meanwhile) and
 * installs the SIGTERM/SIGINT handler that disconnects the client before exiting.
 */
export function startServerSide(): Promise<void> {
  return (state.started ??= start());
}

async function start(): Promise<void> {
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
  process.once("SIGINT", () => void shutdown("SIGINT"));
  try {
    await client.connect();
    console.log(`[dashboard] ${INSTANCE}: connected to Redis`);
  } catch (err) {
    const code = (err as { code?: string }).code ?? "";
    console.warn(`[dashboard] ${INSTANCE}: Redis not reachable yet (${code}); the client keeps retrying`);
  }
}

/** Registers work to do first on shutdown (close the WebSocket server, stop accepting requests). */
export function onShutdown(hook: Hook): void {
  state.hooks.push(hook);
}

/**
 * Registers work to do on shutdown once the client has disconnected, just before the exit
 * (exporting the spans the last deliveries made).
 */
export function afterDisconnect(hook: Hook): void {
  (state.finalHooks ??= []).push(hook);
}

async function runHooks(hooks: Hook[]): Promise<void> {
  for (const hook of hooks) {
    try {
      await hook();
    } catch (err) {
      console.error(`[dashboard] shutdown hook failed:`, err);
    }
  }
}

/**
 * Runs the hooks, disconnects the client (open streams end, running callbacks finish), runs the
 * final hooks, exits.
 */
export async function shutdown(signal: string): Promise<void> {
  if (state.stopping) return;
  state.stopping = true;
  console.log(`[dashboard] ${INSTANCE}: ${signal}, shutting down`);
  setTimeout(() => {
    console.error(`[dashboard] ${INSTANCE}: shutdown took longer than ${SHUTDOWN_DEADLINE_MS} ms; exiting`);
    process.exit(1);
  }, SHUTDOWN_DEADLINE_MS).unref();
  await runHooks(state.hooks);
  await client.disconnect();
  await runHooks(state.finalHooks ?? []);
  process.exit(0);
}
