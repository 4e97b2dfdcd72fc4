// What the e2e tests read from a running dashboard instance and from its Redis.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import type { Browser, Page } from "playwright-core";
import { until } from "../../__test__/helpers/until.js";
import { freePort, startServer, type Server } from "./processes.js";

export const STREAM = "dashboard-updates";

export interface AppStatus {
  instance: string;
  pid: number;
  moduleLoadedAt: string;
  status: {
    connected: boolean;
    subscriptions: string[];
    subscriptionDetails: Array<{ id: number; stream: string; lastId?: string | null }>;
    counters: Record<string, number>;
  };
}

export interface InstanceOptions {
  /** The installed example (the globalSetup's `appDir`). */
  appDir: string;
  /** INSTANCE_NAME, shown on the page and stamped on what it publishes. */
  name: string;
  redisUrl: string;
  /** More environment (OpenTelemetry's variables). */
  env?: NodeJS.ProcessEnv;
}

/** Starts one production instance of the example's custom server (after `pnpm build`) on a free port. */
export async function startInstance({ appDir, name, redisUrl, env }: InstanceOptions): Promise<Server> {
  const port = await freePort();
  return startServer({
    name,
    cwd: appDir,
    command: process.execPath,
    args: ["dist/server.js"],
    port,
    env: { NODE_ENV: "production", PORT: String(port), HOSTNAME: "127.0.0.1", REDIS_URL: redisUrl, INSTANCE_NAME: name, ...env },
    readyLine: /ready on http/,
    readyTimeoutMs: 30_000,
  });
}

/** Opens `url` in a new tab and waits until its WebSocket and SSE views are live. */
export async function openDashboard(browser: Browser, url: string): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1100, height: 480 } });
  await page.goto(url);
  await waitForLiveViews(page);
  return page;
}

/**
 * Opens a tab on `server` and returns it with the id of the SSE subscription it created, once
 * that subscription reads (so nothing published afterwards can miss it).
 */
export async function openDashboardWithSubscription(browser: Browser, server: Server): Promise<{ page: Page; sseSubscription: number }> {
  const before = await subscriptionIds(server.url);
  const page = await openDashboard(browser, server.url);
  let added: number[] = [];
  await until(
    async () => {
      added = (await readingSubscriptionIds(server.url)).filter((id) => !before.includes(id));
      return added.length === 1;
    },
    10_000,
    () => `one new reading SSE subscription on ${server.name} (new: ${JSON.stringify(added)})`,
  );
  return { page, sseSubscription: added[0]! };
}

/** GET /api/status of the instance at `url`. */
export async function appStatus(url: string): Promise<AppStatus> {
  const res = await fetch(`${url}/api/status`);
  if (!res.ok) throw new Error(`GET ${url}/api/status: HTTP ${res.status}: ${await res.text()}`);
  return (await res.json()) as AppStatus;
}

/** Ids of the instance's subscriptions of the dashboard stream (WebSocket broadcaster + one per SSE request). */
export async function subscriptionIds(url: string): Promise<number[]> {
  const { status } = await appStatus(url);
  return status.subscriptionDetails.filter((s) => s.stream === STREAM).map((s) => s.id);
}

/**
 * Ids of the subscriptions of the dashboard stream that are reading: their start id ("$") has
 * been resolved, so every message published from now on reaches them.
 */
export async function readingSubscriptionIds(url: string): Promise<number[]> {
  const { status } = await appStatus(url);
  return status.subscriptionDetails.filter((s) => s.stream === STREAM && typeof s.lastId === "string").map((s) => s.id);
}

/** The clients connected to the Redis at `port`, without the CLIENT LIST connection itself. */
export async function redisClients(port: number): Promise<string[]> {
  const { stdout } = await promisify(execFile)("redis-cli", ["-p", String(port), "CLIENT", "LIST"]);
  return stdout.split("\n").filter((line) => line.startsWith("id=") && !/ cmd=client\|list /.test(line));
}

/** The entries of the dashboard stream on the Redis at `port` (XRANGE), each with its fields. */
export async function streamEntries(port: number, start = "-", end = "+"): Promise<Array<{ id: string; fields: Record<string, string> }>> {
  const redis = new Redis({ host: "127.0.0.1", port, lazyConnect: true, maxRetriesPerRequest: 0 });
  try {
    await redis.connect();
    const entries = await redis.xrange(STREAM, start, end);
    return entries.map(([id, flat]) => {
      const fields: Record<string, string> = {};
      for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]!] = flat[i + 1]!;
      return { id, fields };
    });
  } finally {
    redis.disconnect();
  }
}

/** Waits until both live views of a dashboard page say "open". */
export async function waitForLiveViews(page: Page, timeoutMs = 30_000): Promise<void> {
  for (const view of ["ws-events-state", "sse-events-state"]) {
    await page.getByTestId(view).filter({ hasText: /^open$/ }).waitFor({ timeout: timeoutMs });
  }
}

/** Publishes `text` through the page's form and waits for the form's answer. */
export async function postThroughForm(page: Page, text: string): Promise<void> {
  await page.getByRole("textbox").fill(text);
  await page.getByRole("button", { name: "Publish" }).click();
}

const VIEWS = ["ws-events", "sse-events"] as const;

/**
 * Starts watching both views of `page` for an event whose text contains `text`: a
 * MutationObserver in the page notes when each view first lists it (Date.now() in the browser,
 * same clock as the test). Call it before publishing; then await `deliveredInBothViews`.
 */
export async function watchFor(page: Page, text: string): Promise<void> {
  await page.evaluate(
    ({ text, views }) => {
      const arrivals: Record<string, number> = {};
      (window as unknown as { __arrivals: Record<string, number> }).__arrivals = arrivals;
      for (const view of views) {
        const list = document.querySelector(`[data-testid="${view}"]`);
        if (!list) throw new Error(`no [data-testid="${view}"] on the page`);
        const check = (): void => {
          if (arrivals[view] !== undefined) return;
          const item = [...list.querySelectorAll("li")].find((li) => li.textContent?.includes(text));
          if (item) {
            arrivals[view] = Date.now();
            // The entry id's first part is Redis' clock at XADD (this machine's clock, too).
            arrivals[`${view}:xadd`] = Number(item.dataset.id?.split("-")[0]);
          }
        };
        check();
        new MutationObserver(check).observe(list, { childList: true, subtree: true, characterData: true });
      }
    },
    { text, views: VIEWS },
  );
}

/** When each view listed the event: after `since` (the form submit), and after its XADD. */
export interface Delivery {
  ws: number;
  sse: number;
  wsAfterXadd: number;
  sseAfterXadd: number;
}

/**
 * Waits until the event `watchFor` watches is listed in both views, by `deadline` (ms since the
 * epoch), and returns when each view listed it.
 */
export async function deliveredInBothViews(page: Page, since: number, deadline: number): Promise<Delivery> {
  const arrivals = await page.waitForFunction(
    (views) => {
      const arrivals = (window as unknown as { __arrivals: Record<string, number> }).__arrivals;
      return views.every((v) => arrivals[v] !== undefined) && arrivals;
    },
    VIEWS,
    { timeout: Math.max(1, deadline - Date.now()), polling: "raf" },
  );
  const at = (await arrivals.jsonValue()) as Record<string, number>;
  return {
    ws: at["ws-events"]! - since,
    sse: at["sse-events"]! - since,
    wsAfterXadd: at["ws-events"]! - at["ws-events:xadd"]!,
    sseAfterXadd: at["sse-events"]! - at["sse-events:xadd"]!,
  };
}

/** One line for the log: "WebSocket 120 ms (35 ms after XADD), SSE 130 ms (45 ms after XADD)". */
export function describeDelivery(d: Delivery): string {
  return `WebSocket ${d.ws} ms (${d.wsAfterXadd} ms after XADD), SSE ${d.sse} ms (${d.sseAfterXadd} ms after XADD)`;
}
