// What the e2e tests read from a running dashboard instance and from its Redis.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type { Page } from "playwright-core";

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

/**
 * Waits until `text` is listed in both views of `page`, each by `deadline` (ms since the epoch),
 * and returns how long each took from `since`.
 */
export async function deliveredInBothViews(
  page: Page,
  text: string,
  since: number,
  deadline: number,
): Promise<{ ws: number; sse: number }> {
  const arrival = async (view: string): Promise<number> => {
    await page
      .getByTestId(view)
      .locator("li", { hasText: text })
      .waitFor({ timeout: Math.max(1, deadline - Date.now()) });
    return Date.now() - since;
  };
  const [ws, sse] = await Promise.all([arrival("ws-events"), arrival("sse-events")]);
  return { ws, sse };
}
