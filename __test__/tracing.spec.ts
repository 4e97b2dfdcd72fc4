import { AsyncLocalStorage } from "node:async_hooks";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import diagnostics_channel from "node:diagnostics_channel";
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { context, SpanKind, trace } from "@opentelemetry/api";
import { AggregationTemporality, MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import { BasicTracerProvider, type ReadableSpan, type Span, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import * as streamcast from "../index.js";
import { StreamsClient, type StreamMessage } from "../index.js";
import { closeRedis, connectedClient, openRedis, type Checker, type TestServer } from "./helpers/fixture.js";
import { parentOf, startTracing, type TestTracing } from "./helpers/otel.js";
import { until } from "./helpers/until.js";

const require = createRequire(import.meta.url);
const otel = require("../otel.js") as typeof import("../otel.js");
const here = dirname(fileURLToPath(import.meta.url));

const fresh = (): string => `t:tracing:${randomUUID()}`;
const TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

let server: TestServer;
let redis: Checker;
let client: StreamsClient;

beforeAll(async () => {
  ({ server, redis } = await openRedis());
  client = await connectedClient(server.url);
});

afterAll(() => closeRedis(server, redis, client));

async function fieldsOf(stream: string, id: string): Promise<string[]> {
  const entries = await redis.xrange(stream, id, id);
  return entries[0]![1];
}

/** Every event of one TracingChannel, as [event, context] pairs. */
function record(name: string): { events: Array<[string, Record<string, unknown>]>; stop(): void } {
  const events: Array<[string, Record<string, unknown>]> = [];
  const handlers = Object.fromEntries(
    ["start", "end", "asyncStart", "asyncEnd", "error"].map((e) => [e, (ctx: unknown) => void events.push([e, ctx as Record<string, unknown>])]),
  ) as unknown as diagnostics_channel.TracingChannelSubscribers<object>;
  const tc = diagnostics_channel.tracingChannel(name);
  tc.subscribe(handlers);
  return { events, stop: () => tc.unsubscribe(handlers) };
}

describe("trace context in entries", () => {
  test("without tracing, an entry has exactly data and timestamp (zero extra bytes)", async () => {
    const stream = fresh();
    const id = (await client.publishMessage(stream, { a: 1 }))!;
    expect((await fieldsOf(stream, id)).filter((_, i) => i % 2 === 0)).toEqual(["data", "timestamp"]);
    const [batchId] = await client.publishBatch(stream, [1]);
    expect((await fieldsOf(stream, batchId!)).filter((_, i) => i % 2 === 0)).toEqual(["data", "timestamp"]);
  });

  test("an explicit traceContext is written as one `trace` field and delivered as traceparent/tracestate", async () => {
    const stream = fresh();
    const got: StreamMessage[] = [];
    await client.subscribe(stream, (m) => void got.push(m));
    const id = (await client.publishMessage(stream, { a: 1 }, null, { traceContext: { traceparent: TP, tracestate: "k=v" } }))!;
    expect(await fieldsOf(stream, id)).toEqual(["data", '{"a":1}', "timestamp", expect.any(String), "trace", `${TP};k=v`]);
    const ids = await client.publishBatch(stream, [2, 3], { traceContext: { traceparent: TP } });
    expect((await fieldsOf(stream, ids[1]!)).slice(4)).toEqual(["trace", TP]);
    await until(() => got.length >= 3, 5_000, () => `delivered ${got.length}/3`);
    expect(got[0]).toMatchObject({ id, data: { a: 1 }, traceparent: TP, tracestate: "k=v" });
    expect(got[1]).toMatchObject({ traceparent: TP });
    expect(got[1]!.tracestate).toBeUndefined();
    client.unsubscribe(stream);
  });

  test("a malformed traceContext rejects with ERR_INVALID_ARG", async () => {
    const stream = fresh();
    await expect(client.publishMessage(stream, 1, null, { traceContext: { traceparent: "nope" } })).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
    await expect(client.publishBatch(stream, [1], { traceContext: { traceparent: TP, tracestate: "a\nb" } })).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
  });
});

describe("TracingChannels", () => {
  test("the channel names are exported as constants, the same as streamcast/otel's", () => {
    expect({
      publish: streamcast.CHANNEL_PUBLISH,
      publishBatch: streamcast.CHANNEL_PUBLISH_BATCH,
      deliver: streamcast.CHANNEL_DELIVER,
      consume: streamcast.CHANNEL_CONSUME,
      ack: streamcast.CHANNEL_ACK,
      trim: streamcast.CHANNEL_TRIM,
      connect: streamcast.CHANNEL_CONNECT,
    }).toEqual(otel.CHANNELS);
  });

  test("publish, publishBatch, deliver, consume, ack, trim and connect publish their contexts", async () => {
    const names = Object.values(otel.CHANNELS);
    const rec = Object.fromEntries(names.map((n) => [n, record(n)]));
    try {
      const stream = fresh();
      const c = new StreamsClient({ redisUrl: server.url, enableAutoTrim: false, logLevel: "error" });
      await c.connect();
      const delivered: string[] = [];
      await c.subscribe(stream, (m) => void delivered.push(m.id));
      await c.createConsumerGroup(stream, "g", "0");
      const id = (await c.publishMessage(stream, { n: 1 }))!;
      await c.publishBatch(stream, [2, 3]);
      const consumed: string[] = [];
      await c.consumeFromGroup(stream, "g", "c1", (m) => void consumed.push(m.id), { autoAck: false });
      await until(() => delivered.length >= 3 && consumed.length >= 3, 5_000, () => `delivered ${delivered.length}, consumed ${consumed.length}`);
      expect(await c.acknowledgeMessages(stream, "g", ...consumed)).toBe(3);
      await c.trimStream(stream, { maxLen: 0, approximate: false, keepUnacknowledged: false });
      await c.disconnect();

      const ev = (name: string) => rec[name]!.events;
      expect(ev("streamcast:connect").map(([e]) => e)).toEqual(["start", "end", "asyncStart", "asyncEnd"]);
      const pub = ev("streamcast:publish").find(([e]) => e === "asyncEnd")![1];
      expect(pub).toMatchObject({ stream, result: id, serverAddress: "127.0.0.1", serverPort: expect.any(Number) });
      const batch = ev("streamcast:publishBatch").find(([e]) => e === "asyncEnd")![1];
      expect(batch).toMatchObject({ stream, batchSize: 2 });
      expect(ev("streamcast:deliver").filter(([e]) => e === "start").map(([, x]) => x.id)).toEqual(delivered);
      const consume = ev("streamcast:consume").filter(([e]) => e === "start").map(([, x]) => x);
      expect(consume.map((x) => x.id)).toEqual(consumed);
      expect(consume[0]).toMatchObject({ stream, group: "g", consumer: "c1" });
      const ack = ev("streamcast:ack").find(([e]) => e === "asyncEnd")![1];
      expect(ack).toMatchObject({ stream, group: "g", batchSize: 3, result: 3 });
      expect(ev("streamcast:trim").find(([e]) => e === "asyncEnd")![1]).toMatchObject({ stream, result: 3 });
    } finally {
      for (const r of Object.values(rec)) r.stop();
    }
  });

  test("serverAddress/serverPort: a single server's host and port, a unix socket's path, nothing for Sentinel or Cluster (their configured nodes are not the one serving)", async () => {
    const rec = record("streamcast:publish");
    try {
      const cases: Array<[string, string | undefined, number | undefined]> = [
        // Nothing listens at any of these (port 1, a missing socket, a name that never resolves).
        ["redis+sentinel://127.0.0.1:1,127.0.0.2:1/mymaster", undefined, undefined],
        ["redis+cluster://127.0.0.1:1,127.0.0.2:1", undefined, undefined],
        ["unix:///tmp/streamcast-no-such.sock", "/tmp/streamcast-no-such.sock", undefined],
        ["redis://[::1]:1/2", "::1", 1],
        ["redis://streamcast-test.invalid", "streamcast-test.invalid", 6379],
      ];
      for (const [redisUrl] of cases) {
        // Never connected: whatever the publish resolves to, its context is published.
        const c = new StreamsClient({ redisUrl, logLevel: "error" });
        await c.publishMessage(fresh(), 1);
        await c.disconnect();
      }
      const starts = rec.events.filter(([e]) => e === "start").map(([, x]) => [x.serverAddress, x.serverPort]);
      expect(starts).toEqual(cases.map(([, address, port]) => [address, port]));
    } finally {
      rec.stop();
    }
  });

  test("a callback that throws is published on the error channel and still counted as a callback error", async () => {
    const rec = record("streamcast:deliver");
    try {
      const stream = fresh();
      const before = client.getStatus().counters.callbackErrors;
      await client.subscribe(stream, () => {
        throw new Error("boom");
      });
      await client.publishMessage(stream, 1);
      await until(() => client.getStatus().counters.callbackErrors > before, 5_000, "callback error counted");
      expect(rec.events.map(([e]) => e)).toEqual(["start", "error", "end"]);
      expect((rec.events[1]![1].error as Error).message).toBe("boom");
      client.unsubscribe(stream);
    } finally {
      rec.stop();
    }
  });
});

describe("the async context of deliveries", () => {
  test("a callback sees none of the AsyncLocalStorage stores of subscribe()'s caller or of the publisher", async () => {
    // A fresh client: its delivery hub (and the threadsafe function through which every
    // delivery enters JavaScript) is made at its first subscribe, here inside the store.
    const c = await connectedClient(server.url);
    try {
      const als = new AsyncLocalStorage<string>();
      const stream = fresh();
      await c.createConsumerGroup(stream, "g", "$");
      const seen: Array<[string, string | undefined]> = [];
      await als.run("subscriber", () => c.subscribe(stream, () => void seen.push(["subscribe", als.getStore()])));
      await als.run("consumer", () =>
        c.consumeFromGroup(stream, "g", "c1", async () => {
          await Promise.resolve();
          seen.push(["consume", als.getStore()]);
        }),
      );
      await als.run("publisher", () => c.publishMessage(stream, 1));
      await als.run("publisher", () => c.publishBatch(stream, [2, 3]));
      await until(() => seen.length >= 6, 5_000, () => `delivered ${seen.length}/6`);
      expect(seen.filter(([, store]) => store !== undefined)).toEqual([]);
    } finally {
      await c.disconnect();
    }
  });

  test("a store entered inside a callback stays inside it", async () => {
    const c = await connectedClient(server.url);
    try {
      const als = new AsyncLocalStorage<number>();
      const stream = fresh();
      const seen: Array<[number | undefined, number | undefined, number | undefined]> = [];
      await c.subscribe(stream, async (m) => {
        const before = als.getStore();
        const inside = await als.run(m.data as number, async () => {
          await Promise.resolve();
          return als.getStore();
        });
        seen.push([before, inside, als.getStore()]);
      });
      await c.publishBatch(stream, [1, 2]);
      await c.publishMessage(stream, 3);
      await until(() => seen.length >= 3, 5_000, () => `delivered ${seen.length}/3`);
      expect(seen).toEqual([
        [undefined, 1, undefined],
        [undefined, 2, undefined],
        [undefined, 3, undefined],
      ]);
    } finally {
      await c.disconnect();
    }
  });
});

describe("OpenTelemetry (streamcast/otel)", () => {
  let tracing: TestTracing;
  let handle: { disable(): void };

  beforeAll(() => {
    tracing = startTracing();
    handle = otel.instrument();
  });

  afterAll(async () => {
    handle.disable();
    await tracing.stop();
  });

  test("publish inside a span carries its context; the callback runs in a process span that is its child", async () => {
    const stream = fresh();
    const tracer = trace.getTracer("test");
    let inside: string | undefined;
    let got: StreamMessage | undefined;
    await client.subscribe(stream, (m) => {
      inside = trace.getSpanContext(context.active())?.spanId;
      got = m;
    });
    let requestTrace = "";
    await tracer.startActiveSpan("request", async (span) => {
      requestTrace = span.spanContext().traceId;
      await client.publishMessage(stream, { x: 1 });
      span.end();
    });
    await until(() => got !== undefined && tracing.spans().some((s) => s.name === `process ${stream}`), 5_000, "processed");
    const spans = tracing.spans();
    const publish = spans.find((s) => s.name === `publish ${stream}`)!;
    const process = spans.find((s) => s.name === `process ${stream}`)!;
    expect(publish.kind).toBe(SpanKind.PRODUCER);
    expect(publish.spanContext().traceId).toBe(requestTrace);
    expect(publish.attributes).toMatchObject({
      "messaging.system.name": "redis",
      "messaging.operation.type": "send",
      "messaging.destination.name": stream,
      "messaging.message.id": got!.id,
      "server.address": "127.0.0.1",
    });
    expect(got!.traceparent).toBe(`00-${requestTrace}-${publish.spanContext().spanId}-01`);
    expect(process.kind).toBe(SpanKind.CONSUMER);
    expect(process.spanContext().traceId).toBe(requestTrace);
    expect(parentOf(process)).toBe(publish.spanContext().spanId);
    expect(process.links.map((l) => l.context.spanId)).toEqual([publish.spanContext().spanId]);
    expect(process.attributes).toMatchObject({ "messaging.operation.type": "process", "messaging.message.id": got!.id });
    expect(inside).toBe(process.spanContext().spanId);
    client.unsubscribe(stream);
  });

  test("a client's first subscribe made inside a request's span does not make later deliveries its children", async () => {
    // The delivery hub's threadsafe function is created at a client's first subscribe, and
    // Node runs its calls in the async context of that moment: in a Next.js route, the request's.
    const c = await connectedClient(server.url);
    try {
      const stream = fresh();
      const tracer = trace.getTracer("test");
      const seen: Array<string | undefined> = [];
      let requestTrace = "";
      await tracer.startActiveSpan("request", async (span) => {
        requestTrace = span.spanContext().traceId;
        await c.subscribe(stream, () => void seen.push(trace.getSpanContext(context.active())?.traceId));
        span.end();
      });
      // Written by another program: no trace field, nothing to continue.
      await redis.xadd(stream, "*", "data", "1", "timestamp", String(Date.now()));
      await until(() => seen.length === 1 && tracing.spans().some((s) => s.name === `process ${stream}`), 5_000, "processed");
      const process = tracing.spans().find((s) => s.name === `process ${stream}`)!;
      expect(parentOf(process)).toBeUndefined();
      expect(process.spanContext().traceId).not.toBe(requestTrace);
      expect(seen).toEqual([process.spanContext().traceId]);
    } finally {
      await c.disconnect();
    }
  });

  test("batches, groups, acks, trims and connects become spans with their attributes", async () => {
    const stream = fresh();
    const c = new StreamsClient({ redisUrl: server.url, enableAutoTrim: false, logLevel: "error" });
    await c.connect();
    await c.createConsumerGroup(stream, "g", "0");
    await c.publishBatch(stream, [1, 2]);
    const ids: string[] = [];
    await c.consumeFromGroup(stream, "g", "c1", (m) => void ids.push(m.id), { autoAck: false });
    await until(() => ids.length >= 2, 5_000, () => `consumed ${ids.length}/2`);
    await c.acknowledgeMessages(stream, "g", ids);
    await c.trimStream(stream, { maxLen: 0, approximate: false, keepUnacknowledged: false });
    await c.disconnect();
    const spans = tracing.spans();
    const batch = spans.find((s) => s.name === `publish ${stream}`)!;
    expect(batch.attributes["messaging.batch.message_count"]).toBe(2);
    const processes = spans.filter((s) => s.name === `process ${stream}`);
    expect(processes).toHaveLength(2);
    for (const p of processes) {
      expect(p.attributes["messaging.consumer.group.name"]).toBe("g");
      expect(parentOf(p)).toBe(batch.spanContext().spanId);
    }
    const ack = spans.find((s) => s.name === `ack ${stream}`)!;
    expect(ack.kind).toBe(SpanKind.CLIENT);
    expect(ack.attributes).toMatchObject({ "messaging.operation.type": "settle", "messaging.batch.message_count": 2 });
    expect(spans.find((s) => s.name === `trim ${stream}`)!.attributes["streamcast.trim.removed"]).toBe(2);
    expect(spans.some((s) => s.name === "connect" && s.kind === SpanKind.CLIENT)).toBe(true);
  });

  test("messaging.system.name by default and with OTEL_SEMCONV_STABILITY_OPT_IN=messaging; messaging/dup adds messaging.system", async () => {
    handle.disable();
    try {
      for (const [optIn, expected] of [
        ["", { "messaging.system.name": "redis" }],
        ["messaging", { "messaging.system.name": "redis" }],
        ["http,messaging/dup", { "messaging.system": "redis", "messaging.system.name": "redis" }],
      ] as const) {
        const h = otel.instrument({ semconvStabilityOptIn: optIn });
        const stream = fresh();
        await client.publishMessage(stream, 1);
        h.disable();
        const span = tracing.spans().find((s) => s.name === `publish ${stream}`)!;
        const system = Object.fromEntries(Object.entries(span.attributes).filter(([k]) => k.startsWith("messaging.system")));
        expect(system).toEqual(expected);
      }
    } finally {
      handle = otel.instrument();
    }
  });

  /** A tracer provider that writes `start <message id>` and `end <message id>` of each
   * process span into `events`, in the order they happen, between the test's own marks. */
  function processSpanOrder(events: string[]): BasicTracerProvider {
    const idOf = (span: Span | ReadableSpan) => String(span.attributes["messaging.message.id"]);
    const recorder: SpanProcessor = {
      onStart: (span) => void (span.name.startsWith("process ") && events.push(`start ${idOf(span)}`)),
      onEnd: (span) => void (span.name.startsWith("process ") && events.push(`end ${idOf(span)}`)),
      forceFlush: async () => {},
      shutdown: async () => {},
    };
    return new BasicTracerProvider({ spanProcessors: [recorder] });
  }

  /** Runs `body` with a fresh client whose process spans are written into `events` (as
   * processSpanOrder does), then undoes the instrumentation and disconnects the client. */
  async function withProcessSpans(body: (c: StreamsClient, events: string[]) => Promise<void>): Promise<void> {
    const c = await connectedClient(server.url);
    const events: string[] = [];
    const provider = processSpanOrder(events);
    const h = otel.instrument({ tracerProvider: provider });
    try {
      await body(c, events);
    } finally {
      h.disable();
      await provider.shutdown();
      await c.disconnect();
    }
  }

  test("stream(): a message's process span runs from when the iterator yields it to the next next(), not while it waits in the buffer", () =>
    withProcessSpans(async (c, events) => {
      const stream = fresh();
      const [a, b] = (await c.publishBatch(stream, [1, 2, 3])) as string[];
      const it = c.stream(stream, { startId: "0" });
      // All three wait in the iterator's buffer before the loop asks for the first.
      await until(() => c.getStatus().counters.delivered === 3, 5_000, () => `buffered ${c.getStatus().counters.delivered}/3`);
      events.push("next");
      const first = await it.next();
      events.push(`got ${first.value!.id}`);
      events.push("next");
      const second = await it.next();
      events.push(`got ${second.value!.id}`);
      events.push("return");
      await it.return!();
      expect(events).toEqual(["next", `start ${a}`, `got ${a}`, "next", `end ${a}`, `start ${b}`, `got ${b}`, "return", `end ${b}`]);
    }));

  // Without another next() or return(): the iteration ends because of the signal, the
  // subscription's end, or the client's.
  for (const how of ["abort", "unsubscribe", "disconnect"] as const) {
    test(`stream(): the last yielded message's process span ends when the iteration ends by ${how}`, () =>
      withProcessSpans(async (c, events) => {
        const stream = fresh();
        const [a] = (await c.publishBatch(stream, [1, 2])) as string[];
        const controller = new AbortController();
        const it = c.stream(stream, { startId: "0", signal: controller.signal });
        events.push("next");
        const first = await it.next();
        events.push(`got ${first.value!.id}`);
        events.push(how);
        if (how === "abort") controller.abort();
        else if (how === "unsubscribe") c.unsubscribe(stream);
        else await c.disconnect();
        await until(() => events.includes(`end ${a}`), 5_000, () => `the span of ${a} ended; events: ${events.join(", ")}`);
        expect(events).toEqual(["next", `start ${a}`, `got ${a}`, how, `end ${a}`]);
      }));
  }

  test("consume(): a message's process span runs from when the iterator yields it to its ack()", () =>
    withProcessSpans(async (c, events) => {
      const stream = fresh();
      await c.createConsumerGroup(stream, "g", "0");
      const [a, b] = (await c.publishBatch(stream, [1, 2])) as string[];
      const it = c.consume(stream, "g", "c1");
      await until(() => c.getStatus().counters.delivered === 2, 5_000, () => `buffered ${c.getStatus().counters.delivered}/2`);
      events.push("next");
      const first = await it.next();
      events.push(`got ${first.value!.id}`);
      events.push("ack");
      const acked = first.value!.ack();
      events.push("next");
      const second = await it.next();
      events.push(`got ${second.value!.id}`);
      await acked;
      events.push("return");
      await it.return!();
      expect(events).toEqual(["next", `start ${a}`, `got ${a}`, "ack", `end ${a}`, "next", `start ${b}`, `got ${b}`, "return", `end ${b}`]);
    }));

  test("consume(): an unacknowledged message's process span ends when the signal aborts the iteration", () =>
    withProcessSpans(async (c, events) => {
      const stream = fresh();
      await c.createConsumerGroup(stream, "g", "0");
      const [a] = (await c.publishBatch(stream, [1])) as string[];
      const controller = new AbortController();
      const it = c.consume(stream, "g", "c1", { signal: controller.signal });
      events.push("next");
      const first = await it.next();
      events.push(`got ${first.value!.id}`);
      events.push("abort");
      controller.abort();
      await until(() => events.includes(`end ${a}`), 5_000, () => `the span of ${a} ended; events: ${events.join(", ")}`);
      expect(events).toEqual(["next", `start ${a}`, `got ${a}`, "abort", `end ${a}`]);
    }));

  test("contextOf continues a message's context for the async iterators", () => {
    const ctx = otel.contextOf({ traceparent: TP, tracestate: "k=v" });
    expect(trace.getSpanContext(ctx)).toMatchObject({ traceId: TP.slice(3, 35), spanId: TP.slice(36, 52), isRemote: true });
    expect(otel.contextOf({}, context.active())).toBe(context.active());
  });

  test("a publish in one process and its handling in another end up in one trace", async () => {
    const stream = fresh();
    const fixture = resolve(here, "fixtures", "otel-process.mjs");
    const run = (role: string, onLine?: (line: string) => void) => {
      const child = spawn(process.execPath, [fixture, role, server.url, stream], { stdio: ["ignore", "pipe", "inherit"] });
      const lines: string[] = [];
      let buf = "";
      child.stdout.on("data", (d: Buffer) => {
        buf += d.toString();
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          lines.push(line);
          onLine?.(line);
        }
      });
      const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
      return { lines, exited };
    };
    let ready!: () => void;
    const isReady = new Promise<void>((r) => (ready = r));
    const consumer = run("consumer", (line) => line === "ready" && ready());
    await isReady;
    const producer = run("producer");
    expect(await producer.exited).toBe(0);
    expect(await consumer.exited).toBe(0);
    type Dumped = { name: string; kind: number; traceId: string; spanId: string; parentSpanId?: string; links: Array<{ spanId: string }>; attributes: Record<string, unknown> };
    const p = JSON.parse(producer.lines.at(-1)!) as { spans: Dumped[] };
    const c = JSON.parse(consumer.lines.at(-1)!) as { spans: Dumped[]; message: StreamMessage };
    const request = p.spans.find((s) => s.name === "POST /api/events")!;
    const publish = p.spans.find((s) => s.name === `publish ${stream}`)!;
    const processSpan = c.spans.find((s) => s.name === `process ${stream}`)!;
    const handle = c.spans.find((s) => s.name === "handle")!;
    expect(publish.parentSpanId).toBe(request.spanId);
    expect(new Set([request.traceId, publish.traceId, processSpan.traceId, handle.traceId]).size).toBe(1);
    expect(processSpan.parentSpanId).toBe(publish.spanId);
    expect(processSpan.kind).toBe(SpanKind.CONSUMER);
    expect(handle.parentSpanId).toBe(processSpan.spanId);
    expect(c.message.data).toEqual({ hello: "world" });
  });
});

describe("OpenTelemetry metrics bridge", () => {
  test("observable instruments read metrics()", async () => {
    class Reader extends MetricReader {
      constructor() {
        super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
      }
      protected override async onForceFlush(): Promise<void> {}
      protected override async onShutdown(): Promise<void> {}
    }
    const reader = new Reader();
    const provider = new MeterProvider({ readers: [reader] });
    const stream = fresh();
    await client.publishMessage(stream, 1);
    const bridge = otel.registerMetrics(client, { meterProvider: provider });
    const { resourceMetrics } = await reader.collect();
    const metrics = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics);
    const published = metrics.find((m) => m.descriptor.name === "streamcast.published")!;
    expect(published.dataPoints[0]!.value).toBe(client.getStatus().counters.published);
    const failed = metrics.find((m) => m.descriptor.name === "streamcast.publish_failed")!;
    expect(failed.dataPoints.map((d) => d.attributes.reason).sort()).toEqual(["closed", "refused", "unavailable"]);
    expect(metrics.find((m) => m.descriptor.name === "streamcast.connected")!.dataPoints[0]!.value).toBe(1);
    bridge.unregister();
    await provider.shutdown();
  });
});
