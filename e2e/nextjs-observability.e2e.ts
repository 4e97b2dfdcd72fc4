// Issue 20, "see every message's path", on the example app in production: two instances (A and
// B) of its custom server on one private Redis, with OpenTelemetry tracing on (their spans go to
// a small OTLP/HTTP receiver in this process), and headless Chromium on their pages.
// - The metrics route: after an event is posted on B, B's GET /api/metrics counts one publish
//   and each instance's counts one delivery per subscription it has of the stream.
// - The trace: B's `publish dashboard-updates` span (PRODUCER) is the parent of each of A's
//   `process dashboard-updates` spans (CONSUMER), in one trace, carried by the entry's trace field.
import { randomBytes } from "node:crypto";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import { startRedis, type RedisServer } from "../__test__/helpers/redis-server.js";
import { notYet, until, waitFor } from "../__test__/helpers/until.js";
import { launchChromium } from "./helpers/browser.js";
import {
  deliveredInBothViews,
  openDashboardWithSubscription,
  postThroughForm,
  readingSubscriptionIds,
  startInstance,
  subscriptionIds,
  STREAM,
  streamEntries,
  watchFor,
} from "./helpers/dashboard.js";
import { counter, scrapeMetrics, type Families } from "./helpers/metrics.js";
import { SpanKind, startCollector, type Collector, type ReceivedSpan } from "./helpers/otlp-collector.js";
import { mustRun, type Server } from "./helpers/processes.js";

/** How long a condition may take here: generous, these are not timing assertions. */
const WAIT_MS = 15_000;
const SERVICE_A = "dashboard-A";
const SERVICE_B = "dashboard-B";

const appDir = inject("appDir");
/** Makes this run's event texts unique. */
const run = randomBytes(2).toString("hex");
let redis: RedisServer;
let collector: Collector;
let a: Server;
let b: Server;
let browser: Browser;
/** Tabs a test opened, with the SSE subscription each made; closed after the test. */
let tabs: Array<{ page: Page; server: Server; sseSubscription: number }> = [];

function startTracedInstance(name: string, service: string): Promise<Server> {
  return startInstance({
    appDir,
    name,
    redisUrl: redis.url,
    env: {
      OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "", // the one above, even if the shell sets this
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_SERVICE_NAME: service,
      OTEL_BSP_SCHEDULE_DELAY: "200",
    },
  });
}

async function openTab(server: Server): Promise<Page> {
  const { page, sseSubscription } = await openDashboardWithSubscription(browser, server);
  tabs.push({ page, server, sseSubscription });
  return page;
}

describe("examples/nextjs-dashboard with OpenTelemetry on: metrics and one event's trace", () => {
  beforeAll(async () => {
    redis = await startRedis({ private: true });
    collector = await startCollector();
    await mustRun("pnpm", ["build"], { cwd: appDir, env: { NEXT_TELEMETRY_DISABLED: "1" }, timeoutMs: 15 * 60_000 });
    a = await startTracedInstance("A", SERVICE_A);
    b = await startTracedInstance("B", SERVICE_B);
    await Promise.all([a.ready, b.ready]);
    browser = await launchChromium();
  });

  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => {
      for (const server of [a, b]) if (server) console.log(`[e2e] output of ${server.name}:\n${server.output()}`);
      if (collector) console.log(`[e2e] collector: ${collector.spans().length} spans, refused: ${JSON.stringify(collector.rejected())}`);
    });
    // Closes the test's tabs and waits until their SSE subscriptions have ended, so the next
    // test starts with the custom servers' broadcasters as the only subscriptions.
    return async () => {
      for (const { page, server, sseSubscription } of tabs) {
        await page.close();
        await until(
          async () => !(await subscriptionIds(server.url)).includes(sseSubscription),
          WAIT_MS,
          `SSE subscription ${sseSubscription} of ${server.name} ended after its tab closed`,
        );
      }
      tabs = [];
    };
  });

  afterAll(async () => {
    await browser?.close();
    await Promise.all([a?.stop(), b?.stop()]);
    await collector?.close();
    await redis?.stop();
  });

  it("GET /api/metrics: B counts the publish, A and B count one delivery per subscription", async () => {
    const pageA = await openTab(a);
    const pageB = await openTab(b);
    // Each instance's subscriptions of the stream, all reading: the custom server's WebSocket
    // broadcaster and the SSE stream of the tab just opened. Each delivers the event once.
    const readersA = (await readingSubscriptionIds(a.url)).length;
    const readersB = (await readingSubscriptionIds(b.url)).length;
    expect([readersA, readersB]).toEqual([2, 2]);

    const delivered = (f: Families): number => counter(f, "streamcast_delivered_total", { stream: STREAM });
    const [beforeA, beforeB] = await Promise.all([scrapeMetrics(a.url), scrapeMetrics(b.url)]);

    const text = `Counted on B and A · ${run}`;
    await watchFor(pageA, text);
    const since = Date.now();
    await postThroughForm(pageB, text);
    await deliveredInBothViews(pageA, since, since + WAIT_MS);

    // The delivered counters move once each callback has returned: await that, then the deltas.
    let afterA = beforeA;
    let afterB = beforeB;
    await until(
      async () => {
        [afterA, afterB] = await Promise.all([scrapeMetrics(a.url), scrapeMetrics(b.url)]);
        return delivered(afterA) - delivered(beforeA) >= readersA && delivered(afterB) - delivered(beforeB) >= readersB;
      },
      WAIT_MS,
      () => `deliveries counted: A ${delivered(afterA) - delivered(beforeA)} of ${readersA}, B ${delivered(afterB) - delivered(beforeB)} of ${readersB}`,
    );
    const delta = (after: Families, before: Families, name: string, labels?: Record<string, string>): number =>
      counter(after, name, labels) - counter(before, name, labels);
    expect({
      publishedB: delta(afterB, beforeB, "streamcast_published_total"),
      publishedA: delta(afterA, beforeA, "streamcast_published_total"),
      deliveredA: delta(afterA, beforeA, "streamcast_delivered_total", { stream: STREAM }),
      deliveredB: delta(afterB, beforeB, "streamcast_delivered_total", { stream: STREAM }),
      publishFailedB: delta(afterB, beforeB, "streamcast_publish_failed_total"),
      callbackErrorsA: delta(afterA, beforeA, "streamcast_callback_errors_total"),
    }).toEqual({ publishedB: 1, publishedA: 0, deliveredA: readersA, deliveredB: readersB, publishFailedB: 0, callbackErrorsA: 0 });
  });

  it("one event's path: B's publish span is the parent of A's process spans, in one trace", async () => {
    const pageA = await openTab(a);
    // A delivers the event once per subscription, each delivery in a process span: the
    // WebSocket broadcaster's callback and the SSE stream's.
    const readersA = (await readingSubscriptionIds(a.url)).length;
    expect(readersA).toBe(2);
    const text = `Traced from B · ${run}`;
    await watchFor(pageA, text);
    const since = Date.now();
    const res = await fetch(`${b.url}/api/events`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text }),
    });
    const { id } = (await res.json()) as { id: string };
    expect(res.status, id).toBe(201);
    await deliveredInBothViews(pageA, since, since + WAIT_MS);

    const ofEvent = (s: ReceivedSpan): boolean => s.attributes["messaging.message.id"] === id;
    const { publish, processA } = await waitFor(
      () => `B's publish span and A's ${readersA} process spans of ${id} at the collector (${collector.spans().length} spans so far)`,
      WAIT_MS,
      async () => {
        const spans = collector.spans().filter(ofEvent);
        const publish = spans.find((s) => s.service === SERVICE_B && s.name === `publish ${STREAM}`);
        const processA = spans.filter((s) => s.service === SERVICE_A && s.name === `process ${STREAM}`);
        if (publish === undefined) return notYet(`no publish span from ${SERVICE_B}: ${JSON.stringify(spans.map((s) => [s.service, s.name]))}`);
        if (processA.length < readersA) {
          return notYet(`${processA.length} of ${readersA} process spans from ${SERVICE_A}: ${JSON.stringify(spans.map((s) => [s.service, s.name]))}`);
        }
        return { publish, processA };
      },
    );

    console.log(
      `[e2e] trace ${publish.traceId}: publish on B (span ${publish.spanId}, parent ${publish.parentSpanId || "none"}) -> ` +
        `${processA.length} process span(s) on A (${processA.map((s) => s.spanId).join(", ")})`,
    );
    expect(publish.kind).toBe(SpanKind.PRODUCER);
    expect(processA).toHaveLength(readersA);
    expect(publish.attributes).toMatchObject({
      "messaging.system.name": "redis",
      "messaging.operation.type": "send",
      "messaging.destination.name": STREAM,
    });
    // The entry carries the publish span's context: what A continued from.
    const [entry] = await streamEntries(redis.port, id, id);
    expect(entry?.fields.trace).toBe(`00-${publish.traceId}-${publish.spanId}-01`);

    for (const span of processA) {
      expect(span.kind).toBe(SpanKind.CONSUMER);
      expect(span.attributes).toMatchObject({ "messaging.operation.type": "process", "messaging.destination.name": STREAM });
      expect({ traceId: span.traceId, parentSpanId: span.parentSpanId }).toEqual({
        traceId: publish.traceId,
        parentSpanId: publish.spanId,
      });
      expect(span.links).toContainEqual({ traceId: publish.traceId, spanId: publish.spanId });
    }
    expect(collector.rejected()).toEqual([]);
  });
});
