// streamcast/otel: OpenTelemetry spans from streamcast's diagnostics_channel TracingChannels,
// and an OpenTelemetry metrics bridge over client.metrics().
//
// Follows the OpenTelemetry messaging semantic conventions v1.45.0. Needs @opentelemetry/api
// (an optional peer dependency of streamcast); the SDK, exporters and context manager are the
// app's. Plain CommonJS, so that it loads in any Node or bundler set-up; types in otel.d.ts.
"use strict";

const api = require("@opentelemetry/api");
const dc = require("node:diagnostics_channel");

/** The version of the semantic conventions followed. */
const SEMCONV_VERSION = "1.45.0";

/** The TracingChannel names (the same as the CHANNEL_* exports of streamcast). */
const CHANNELS = Object.freeze({
  publish: "streamcast:publish",
  publishBatch: "streamcast:publishBatch",
  deliver: "streamcast:deliver",
  consume: "streamcast:consume",
  ack: "streamcast:ack",
  trim: "streamcast:trim",
  connect: "streamcast:connect",
});

const SYSTEM = "redis";
const SPAN = Symbol("streamcast.otel.span");

// The conventions renamed messaging.system to messaging.system.name. This instrumentation
// emits the current name by default (its first version emitted the old one: see
// CHANGELOG.md), and both with OTEL_SEMCONV_STABILITY_OPT_IN=messaging/dup (for a backend
// that still queries the old one); "messaging" alone is the default.
function stability(value) {
  const tokens = String(value ?? "")
    .split(",")
    .map((t) => t.trim());
  return { old: tokens.includes("messaging/dup"), stable: true };
}

function systemAttributes(mode) {
  const a = {};
  if (mode.old) a["messaging.system"] = SYSTEM;
  if (mode.stable) a["messaging.system.name"] = SYSTEM;
  return a;
}

function serverAttributes(ctx, a) {
  if (ctx.serverAddress !== undefined) a["server.address"] = ctx.serverAddress;
  if (ctx.serverPort !== undefined) a["server.port"] = ctx.serverPort;
  return a;
}

/** The OpenTelemetry Context continued from a message's `traceparent`/`tracestate` (for code
 * that handles messages of the async iterators, where no callback runs inside it), or
 * `base` (default: the active context) when the message carries none. */
function contextOf(message, base = api.context.active()) {
  const sc = spanContextOf(message?.traceparent, message?.tracestate);
  return sc === undefined ? base : api.trace.setSpanContext(base, sc);
}

function spanContextOf(traceparent, tracestate) {
  if (typeof traceparent !== "string") return undefined;
  const [, traceId, spanId, flags] = traceparent.split("-");
  const sc = {
    traceId,
    spanId,
    traceFlags: parseInt(flags, 16) & 0xff,
    isRemote: true,
    traceState: typeof tracestate === "string" && tracestate !== "" ? api.createTraceState(tracestate) : undefined,
  };
  return api.isSpanContextValid(sc) ? sc : undefined;
}

function endSpan(ctx) {
  const span = ctx[SPAN];
  if (span === undefined) return;
  ctx[SPAN] = undefined;
  span.end();
}

// The handlers of one channel: `open(ctx)` starts the span; `close(ctx, span)` adds what the
// result tells before it ends.
function handlers(open, close) {
  return {
    start(ctx) {
      const span = open(ctx);
      ctx[SPAN] = span;
      ctx.context = api.trace.setSpan(api.context.active(), span);
    },
    end(ctx) {
      // A call whose result is a Promise (ctx.async) ends at asyncEnd.
      if (ctx.async !== true) finish(ctx);
    },
    asyncEnd(ctx) {
      finish(ctx);
    },
    error(ctx) {
      const span = ctx[SPAN];
      if (span === undefined) return;
      const e = ctx.error;
      span.recordException(e instanceof Error ? e : String(e));
      span.setAttribute("error.type", (e && (e.code || e.name)) || "Error");
      span.setStatus({ code: api.SpanStatusCode.ERROR, message: e instanceof Error ? e.message : String(e) });
    },
  };
  function finish(ctx) {
    const span = ctx[SPAN];
    if (span === undefined) return;
    if (ctx.error === undefined) close(ctx, span);
    endSpan(ctx);
  }
}

/**
 * Turns streamcast's TracingChannels into OpenTelemetry spans: `publish {stream}` (PRODUCER),
 * `process {stream}` (CONSUMER, child of the publisher's span, with a link to it), `ack
 * {stream}`, `trim {stream}` and `connect` (CLIENT). Returns a handle whose `disable()`
 * unsubscribes.
 */
function instrument(options = {}) {
  const tracer =
    options.tracer ?? (options.tracerProvider ?? api.trace).getTracer("streamcast", options.version ?? undefined);
  const mode = stability(options.semconvStabilityOptIn ?? process.env.OTEL_SEMCONV_STABILITY_OPT_IN);
  const base = systemAttributes(mode);

  const publish = (batch) =>
    handlers(
      (ctx) => {
        const a = serverAttributes(ctx, {
          ...base,
          "messaging.operation.type": "send",
          "messaging.operation.name": batch ? "publishBatch" : "publish",
          "messaging.destination.name": String(ctx.stream),
        });
        if (batch) a["messaging.batch.message_count"] = ctx.batchSize;
        return tracer.startSpan(`publish ${ctx.stream}`, { kind: api.SpanKind.PRODUCER, attributes: a });
      },
      (ctx, span) => {
        const r = ctx.result;
        if (batch) {
          const written = Array.isArray(r) ? r.filter((id) => id !== null).length : 0;
          if (Array.isArray(r) && written < r.length) {
            span.setAttribute("error.type", "unavailable");
            span.setStatus({ code: api.SpanStatusCode.ERROR, message: `${r.length - written} entries not written` });
          }
        } else if (typeof r === "string") {
          span.setAttribute("messaging.message.id", r);
        } else {
          span.setAttribute("error.type", "unavailable");
          span.setStatus({ code: api.SpanStatusCode.ERROR, message: "Redis unavailable: not published" });
        }
      },
    );

  const process_ = handlers(
    (ctx) => {
      const parent = api.context.active();
      const producer = spanContextOf(ctx.traceparent, ctx.tracestate);
      const a = serverAttributes(ctx, {
        ...base,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": String(ctx.stream),
        "messaging.message.id": String(ctx.id),
      });
      if (ctx.group !== undefined) a["messaging.consumer.group.name"] = String(ctx.group);
      return tracer.startSpan(
        `process ${ctx.stream}`,
        { kind: api.SpanKind.CONSUMER, attributes: a, links: producer === undefined ? [] : [{ context: producer }] },
        parent,
      );
    },
    () => {},
  );

  const client = (name, attrs, close) =>
    handlers(
      (ctx) =>
        tracer.startSpan(ctx.stream === undefined ? name : `${name} ${ctx.stream}`, {
          kind: api.SpanKind.CLIENT,
          attributes: serverAttributes(ctx, { ...base, ...attrs(ctx) }),
        }),
      close,
    );

  const subscriptions = [
    [CHANNELS.publish, publish(false)],
    [CHANNELS.publishBatch, publish(true)],
    [CHANNELS.deliver, process_],
    [CHANNELS.consume, process_],
    [
      CHANNELS.ack,
      client(
        "ack",
        (ctx) => ({
          "messaging.operation.type": "settle",
          "messaging.operation.name": "ack",
          "messaging.destination.name": String(ctx.stream),
          "messaging.consumer.group.name": String(ctx.group),
          "messaging.batch.message_count": ctx.batchSize,
        }),
        () => {},
      ),
    ],
    [
      CHANNELS.trim,
      client(
        "trim",
        (ctx) => ({ "messaging.operation.name": "trim", "messaging.destination.name": String(ctx.stream) }),
        (ctx, span) => {
          if (typeof ctx.result === "number") span.setAttribute("streamcast.trim.removed", ctx.result);
        },
      ),
    ],
    [CHANNELS.connect, client("connect", () => ({}), () => {})],
  ];
  for (const [name, h] of subscriptions) dc.tracingChannel(name).subscribe(h);
  let enabled = true;
  return {
    disable() {
      if (!enabled) return;
      enabled = false;
      for (const [name, h] of subscriptions) dc.tracingChannel(name).unsubscribe(h);
    },
  };
}

// ---- metrics bridge ------------------------------------------------------------------------

// Reads the Prometheus text of metrics(): families with their type and samples.
function parseExposition(text) {
  const families = new Map();
  for (const line of text.split("\n")) {
    if (line.startsWith("# TYPE ")) {
      const [, , name, type] = line.split(" ");
      families.set(name, { type, samples: [] });
      continue;
    }
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) continue;
    const family = families.get(m[1]);
    if (family === undefined) continue;
    const labels = {};
    if (m[2]) {
      for (const [, k, v] of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
        labels[k] = v.replace(/\\(["\\n])/g, (_, c) => (c === "n" ? "\n" : c));
      }
    }
    family.samples.push({ labels, value: Number(m[3]) });
  }
  return families;
}

// streamcast_published_total -> streamcast.published; _seconds -> unit "s".
function otelName(name) {
  let n = name.replace(/^streamcast_/, "streamcast.").replace(/_total$/, "");
  let unit = "1";
  if (n.endsWith("_seconds")) {
    n = n.slice(0, -"_seconds".length);
    unit = "s";
  }
  return { name: n, unit };
}

/**
 * Observable OpenTelemetry instruments over `client.metrics()`: each Prometheus family
 * becomes an observable counter (`_total`, without the suffix) or gauge named
 * `streamcast.*`, read when the meter collects. Returns a handle whose `unregister()` stops it.
 */
function registerMetrics(client, options = {}) {
  const meter = options.meter ?? (options.meterProvider ?? api.metrics).getMeter("streamcast");
  const instruments = new Map();
  for (const [name, family] of parseExposition(client.metrics())) {
    const { name: otel, unit } = otelName(name);
    const opts = { unit, description: `${name} of streamcast's metrics()` };
    const instrument =
      family.type === "counter" ? meter.createObservableCounter(otel, opts) : meter.createObservableGauge(otel, opts);
    instruments.set(name, instrument);
  }
  const callback = (result) => {
    for (const [name, family] of parseExposition(client.metrics())) {
      const instrument = instruments.get(name);
      if (instrument === undefined) continue;
      for (const s of family.samples) result.observe(instrument, s.value, s.labels);
    }
  };
  const list = [...instruments.values()];
  meter.addBatchObservableCallback(callback, list);
  return {
    unregister() {
      meter.removeBatchObservableCallback(callback, list);
    },
  };
}

module.exports = { instrument, registerMetrics, contextOf, CHANNELS, SEMCONV_VERSION, parseExposition };
