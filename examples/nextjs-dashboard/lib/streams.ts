// The one place that creates the streamcast client. Every server-side module imports `client`
// from here: route handlers, instrumentation.ts and the custom server.
//
// getStreamsClient() keeps its instance on globalThis, so this module can be evaluated many
// times (`next dev` re-evaluates it on every edit, and the custom server and Next's bundle each
// load their own copy) and the process still has one client and one set of Redis connections.
// Never `new StreamsClient()` at module scope in a Next.js app: every hot reload would leak one.
import { getStreamsClient } from "streamcast";

/** The stream every instance publishes to and reads from (scenario 1: dashboard broadcast). */
export const STREAM = process.env.DASHBOARD_STREAM || "dashboard-updates";

/** What the dashboard publishes: `{ event, data }`, as in the original design's scenario 1. */
export interface DashboardEvent {
  event: "note";
  data: { text: string; from: string };
}

/**
 * This process's client. It connects on its first call (`connect()` is optional), to REDIS_URL
 * (default redis://127.0.0.1:6379). No config here: this module is evaluated once per module
 * copy, and a config given when the client already exists is ignored with a logged warning.
 */
export const client = getStreamsClient();

/** A name for this instance, shown on the page and stamped on what it publishes. */
export const INSTANCE = process.env.INSTANCE_NAME || `pid ${process.pid}`;

/** When this module was last evaluated (a `next dev` edit shows here; the client stays the same). */
export const moduleLoadedAt = new Date().toISOString();
