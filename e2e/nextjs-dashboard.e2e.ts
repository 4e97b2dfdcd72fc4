// The example app in production: `next build`, then two instances of its custom server (A and B)
// on one private Redis, and headless Chromium on their pages.
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import { startRedis, type RedisServer } from "../__test__/helpers/redis-server.js";
import { until } from "../__test__/helpers/until.js";
import { launchChromium } from "./helpers/browser.js";
import {
  appStatus,
  deliveredInBothViews,
  describeDelivery,
  openDashboardWithSubscription,
  postThroughForm,
  redisClients,
  startInstance,
  streamEntries,
  subscriptionIds,
  watchFor,
} from "./helpers/dashboard.js";
import { mustRun, type Server } from "./helpers/processes.js";

/** The bound: an event posted on one instance is on the other's page within 2 s. */
const DELIVERY_MS = 2_000;
const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** Where the screenshot goes; UPDATE_SCREENSHOT=1 refreshes the one docs/nextjs.md shows. */
const SCREENSHOT = process.env.UPDATE_SCREENSHOT === "1"
  ? join(repo, "examples", "nextjs-dashboard", "screenshot.png")
  : join(repo, "e2e", ".artifacts", "nextjs-dashboard.png");

const appDir = inject("appDir");
/** Makes this run's event texts unique. */
const run = randomBytes(2).toString("hex");
let redis: RedisServer;
let a: Server;
let b: Server;
let browser: Browser;
/** A's page; it stays open through every test, so it collects the events the screenshot shows. */
let pageA: Page;
let pageB: Page;

function startPlainInstance(name: string): Promise<Server> {
  // Tracing off even when the shell running the tests has an OTLP endpoint set.
  return startInstance({
    appDir,
    name,
    redisUrl: redis.url,
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: "", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "" },
  });
}

describe("examples/nextjs-dashboard in production (two custom-server instances, one Redis)", () => {
  beforeAll(async () => {
    redis = await startRedis({ private: true });
    const started = Date.now();
    await mustRun("pnpm", ["build"], { cwd: appDir, env: { NEXT_TELEMETRY_DISABLED: "1" }, timeoutMs: 15 * 60_000 });
    console.log(`[e2e] pnpm build (next build + tsc server.ts) took ${((Date.now() - started) / 1000).toFixed(1)} s`);
    a = await startPlainInstance("A");
    b = await startPlainInstance("B");
    await Promise.all([a.ready, b.ready]);
    browser = await launchChromium();
  });

  // A failing test shows what the servers printed (streamcast logs JSON lines on stderr).
  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => {
      for (const server of [a, b]) if (server) console.log(`[e2e] output of ${server.name}:\n${server.output()}`);
    });
  });

  afterAll(async () => {
    await browser?.close();
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.stop();
  });

  it("an event posted on B is on A's page within 2 s, over the WebSocket and over SSE", async () => {
    ({ page: pageA } = await openDashboardWithSubscription(browser, a));
    ({ page: pageB } = await openDashboardWithSubscription(browser, b));

    const fromB = `Deploy finished on B · ${run}`;
    await watchFor(pageA, fromB);
    const since = Date.now();
    await postThroughForm(pageB, fromB);
    const took = await deliveredInBothViews(pageA, since, since + DELIVERY_MS);
    console.log(`[e2e] posted on B (form submit), listed on A's page after: ${describeDelivery(took)}`);
    await expect(pageA.getByTestId("ws-events").locator("li", { hasText: fromB }).innerText()).resolves.toContain("from B");

    // And the other way round, which also puts an event from A on the screenshot.
    const fromA = `Cache warmed on A · ${run}`;
    await watchFor(pageB, fromA);
    const since2 = Date.now();
    await postThroughForm(pageA, fromA);
    const took2 = await deliveredInBothViews(pageB, since2, since2 + DELIVERY_MS);
    console.log(`[e2e] posted on A (form submit), listed on B's page after: ${describeDelivery(took2)}`);
  });

  it("with no OTLP endpoint set, tracing is off: the entries carry data and timestamp only", async () => {
    const entries = await streamEntries(redis.port);
    expect(entries.length).toBeGreaterThanOrEqual(2); // the events of the first test
    for (const { fields } of entries) expect(Object.keys(fields).sort()).toEqual(["data", "timestamp"]);
    for (const server of [a, b]) expect(server.output()).not.toContain("OpenTelemetry tracing on");
  });

  it("closing a tab ends its SSE subscription, and only that one", async () => {
    const { page: tab, sseSubscription } = await openDashboardWithSubscription(browser, a);
    const others = (await subscriptionIds(a.url)).filter((id) => id !== sseSubscription);
    await tab.close();
    await until(
      async () => !(await subscriptionIds(a.url)).includes(sseSubscription),
      10_000,
      `SSE subscription ${sseSubscription} gone from A's getStatus().subscriptionDetails`,
    );
    // The broadcaster of the custom server and the SSE subscription of the tab still open stay.
    expect(await subscriptionIds(a.url)).toEqual(others);
  });

  it("with B killed (SIGKILL), A still delivers what is published through A", async () => {
    const killed = await b.signal("SIGKILL");
    expect(killed.signal).toBe("SIGKILL");

    const text = `Still live on A after B was killed · ${run}`;
    await watchFor(pageA, text);
    const since = Date.now();
    await postThroughForm(pageA, text);
    const took = await deliveredInBothViews(pageA, since, since + DELIVERY_MS);
    console.log(`[e2e] with B killed, posted on A, listed on A's page after: ${describeDelivery(took)}`);

    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await pageA.screenshot({ path: SCREENSHOT });
    console.log(`[e2e] screenshot: ${SCREENSHOT}`);
  });

  it("SIGTERM makes A disconnect from Redis and exit with code 0", async () => {
    expect((await appStatus(a.url)).status.connected).toBe(true);
    expect((await redisClients(redis.port)).length).toBeGreaterThan(0);
    const exit = await a.signal("SIGTERM");
    expect(exit, a.output()).toEqual({ code: 0, signal: null });
    // B was SIGKILLed and A has disconnected: Redis has no client left.
    await until(async () => (await redisClients(redis.port)).length === 0, 5_000, "no client connected to Redis");
  });
});
