// Tracing: Node diagnostics_channel TracingChannels around publish, delivery, ack, trim and
// connect, and the W3C trace context carried in entries (the `trace` field).
// One piece of the addon's JavaScript: src/js/runtime.rs evaluates the pieces in order, each
// given what the earlier ones returned.
//
// Nothing here depends on OpenTelemetry. The active context is read from the global slot of
// @opentelemetry/api 1.x (where any copy of the API registers its context manager), so an app
// with an OpenTelemetry SDK gets context propagation and an app without one pays a property
// read. Channels publish only while someone subscribes (hasSubscribers).
(function streamcastTracing(runtime) {
  "use strict";

  const { ON_STOP, UNTRACED } = runtime;

  const CHANNELS = {
    publish: "streamcast:publish",
    publishBatch: "streamcast:publishBatch",
    deliver: "streamcast:deliver",
    consume: "streamcast:consume",
    ack: "streamcast:ack",
    trim: "streamcast:trim",
    connect: "streamcast:connect",
  };

  // process.getBuiltinModule: Node >= 20.16; on older versions there are no channels.
  const dc =
    typeof process === "object" && process !== null && typeof process.getBuiltinModule === "function"
      ? process.getBuiltinModule("node:diagnostics_channel")
      : undefined;
  const channels = {};
  if (dc !== undefined && typeof dc.tracingChannel === "function") {
    for (const [key, name] of Object.entries(CHANNELS)) channels[key] = dc.tracingChannel(name);
  }

  function active(tc) {
    if (tc === undefined) return false;
    if (typeof tc.hasSubscribers === "boolean") return tc.hasSubscribers;
    return (
      tc.start.hasSubscribers ||
      tc.end.hasSubscribers ||
      tc.asyncStart.hasSubscribers ||
      tc.asyncEnd.hasSubscribers ||
      tc.error.hasSubscribers
    );
  }

  // ---- OpenTelemetry's global slot (no dependency) ----------------------------------------

  // @opentelemetry/api keeps its registered globals here (one slot per major version), and
  // its context keys are Symbol.for(description).
  const OTEL_API = Symbol.for("opentelemetry.js.api.1");
  const SPAN_KEY = Symbol.for("OpenTelemetry Context Key SPAN");

  function contextManager() {
    const api = globalThis[OTEL_API];
    return api !== undefined && api !== null && api.context !== undefined ? api.context : null;
  }

  const HEX32 = /^[0-9a-f]{32}$/;
  const HEX16 = /^[0-9a-f]{16}$/;

  // The W3C trace context of the span in `context` (an OpenTelemetry Context), or undefined.
  function traceContextOf(context) {
    if (context === undefined || context === null || typeof context.getValue !== "function") return undefined;
    const span = context.getValue(SPAN_KEY);
    if (span === undefined || span === null || typeof span.spanContext !== "function") return undefined;
    const sc = span.spanContext();
    if (sc === undefined || sc === null || !HEX32.test(sc.traceId) || !HEX16.test(sc.spanId)) return undefined;
    if (/^0+$/.test(sc.traceId) || /^0+$/.test(sc.spanId)) return undefined;
    const flags = ((sc.traceFlags | 0) & 0xff).toString(16).padStart(2, "0");
    const traceparent = `00-${sc.traceId}-${sc.spanId}-${flags}`;
    const state = sc.traceState !== undefined && sc.traceState !== null ? sc.traceState.serialize() : "";
    return state ? { traceparent, tracestate: state } : { traceparent };
  }

  // The trace context of the active OpenTelemetry context, or undefined.
  function activeTraceContext() {
    const cm = contextManager();
    return cm === null ? undefined : traceContextOf(cm.active());
  }

  // A read-only W3C tracestate, as the OpenTelemetry API's TraceState interface asks.
  class TraceState {
    constructor(entries) {
      this._entries = entries;
    }
    static parse(text) {
      const entries = new Map();
      for (const member of String(text).split(",")) {
        const i = member.indexOf("=");
        if (i > 0) entries.set(member.slice(0, i).trim(), member.slice(i + 1).trim());
      }
      return new TraceState(entries);
    }
    get(key) {
      return this._entries.get(key);
    }
    set(key, value) {
      const entries = new Map([[key, value]]);
      for (const [k, v] of this._entries) if (k !== key) entries.set(k, v);
      return new TraceState(entries);
    }
    unset(key) {
      const entries = new Map(this._entries);
      entries.delete(key);
      return new TraceState(entries);
    }
    serialize() {
      return Array.from(this._entries, ([k, v]) => `${k}=${v}`).join(",");
    }
  }

  // The publisher's span as a non-recording remote parent (the API's wrapSpanContext).
  class RemoteSpan {
    constructor(spanContext) {
      this._spanContext = spanContext;
    }
    spanContext() {
      return this._spanContext;
    }
    setAttribute() {
      return this;
    }
    setAttributes() {
      return this;
    }
    addEvent() {
      return this;
    }
    addLink() {
      return this;
    }
    addLinks() {
      return this;
    }
    setStatus() {
      return this;
    }
    updateName() {
      return this;
    }
    end() {}
    isRecording() {
      return false;
    }
    recordException() {}
  }

  // The span context a message's traceparent/tracestate describe, or undefined.
  function spanContextOf(traceparent, tracestate) {
    if (typeof traceparent !== "string") return undefined;
    const parts = traceparent.split("-");
    if (parts.length < 4 || !HEX32.test(parts[1]) || !HEX16.test(parts[2])) return undefined;
    return {
      traceId: parts[1],
      spanId: parts[2],
      traceFlags: parseInt(parts[3], 16) & 0xff,
      isRemote: true,
      traceState: typeof tracestate === "string" ? TraceState.parse(tracestate) : undefined,
    };
  }

  const BAGGAGE_KEY = Symbol.for("OpenTelemetry Baggage Key");

  // An empty context of the same kind as `ctx` (what @opentelemetry/api calls ROOT_CONTEXT):
  // a delivery starts from nothing. Deliveries run in the async context in which the addon was
  // loaded (runtime/deliveries.js), which may be inside a span (a traced start-up), and on Node
  // < 20.16 in that of the client's first subscribe (in a web app a request's): no such span
  // may become the parent of every later delivery.
  function emptyLike(ctx) {
    try {
      const empty = new (Object.getPrototypeOf(ctx).constructor)();
      if (typeof empty.getValue === "function" && typeof empty.setValue === "function" && empty.getValue(SPAN_KEY) === undefined) return empty;
    } catch {
      // Not a class we can make empty: drop what we know a request leaves.
    }
    return ctx.deleteValue(SPAN_KEY).deleteValue(BAGGAGE_KEY);
  }

  // `base` (an OpenTelemetry Context) continued from a message's trace context.
  function remoteContext(base, traceparent, tracestate) {
    const sc = spanContextOf(traceparent, tracestate);
    return sc === undefined ? base : base.setValue(SPAN_KEY, new RemoteSpan(sc));
  }

  // ---- TracingChannel calls ----------------------------------------------------------------

  function isThenable(value) {
    return value !== null && (typeof value === "object" || typeof value === "function") && typeof value.then === "function";
  }

  // traceSync/tracePromise in one: start, end, and for a returned thenable (`ctx.async` set
  // before end) asyncStart and asyncEnd once it settles; error with `ctx.error`. Returns what `fn` returns (a thenable
  // becomes a Promise settling the same way).
  function traceCall(tc, ctx, fn) {
    return tc.start.runStores(ctx, () => {
      let result;
      try {
        result = fn();
      } catch (error) {
        ctx.error = error;
        tc.error.publish(ctx);
        tc.end.publish(ctx);
        throw error;
      }
      if (!isThenable(result)) {
        ctx.result = result;
        tc.end.publish(ctx);
        return result;
      }
      ctx.async = true;
      tc.end.publish(ctx);
      return Promise.resolve(result).then(
        (value) => {
          ctx.result = value;
          tc.asyncStart.publish(ctx);
          tc.asyncEnd.publish(ctx);
          return value;
        },
        (error) => {
          ctx.error = error;
          tc.error.publish(ctx);
          tc.asyncStart.publish(ctx);
          tc.asyncEnd.publish(ctx);
          throw error;
        },
      );
    });
  }

  // ---- server address --------------------------------------------------------------------

  const addresses = new WeakMap();

  // { serverAddress, serverPort } of the server a client's commands go to, when its URL says
  // which: a single server's host and port (6379 when the URL has none), or a unix socket's
  // path (no port). None for Sentinel (the configured nodes are sentinels, and the primary
  // they name changes with each failover) or a cluster (the seeds are not the node that
  // serves a given stream): an address that is not the serving node's would be wrong, not
  // merely vague. Worked out once per client (the URL does not change).
  function addressOf(client) {
    let a = addresses.get(client);
    if (a !== undefined) return a;
    a = { serverAddress: undefined, serverPort: undefined };
    try {
      const url = new URL(String(client.getStatus().config.redisUrl));
      if (url.protocol === "redis:" || url.protocol === "rediss:") {
        a.serverAddress = url.hostname.replace(/^\[|\]$/g, "") || undefined;
        a.serverPort = a.serverAddress === undefined ? undefined : url.port ? Number(url.port) : 6379;
      } else if (url.protocol === "unix:" || url.protocol === "redis+unix:") {
        a.serverAddress = decodeURIComponent(url.pathname) || undefined;
      }
    } catch {
      // A URL the WHATWG parser does not take (or a client without status): no address.
    }
    addresses.set(client, a);
    return a;
  }

  function baseContext(client, fields) {
    const a = addressOf(client);
    return { ...fields, serverAddress: a.serverAddress, serverPort: a.serverPort };
  }

  // ---- wrappers ------------------------------------------------------------------------------

  function isOptionsObject(o) {
    return o !== null && typeof o === "object" && !Array.isArray(o);
  }

  // Options with the trace context of `context` (or the active one) added, unless the caller
  // gave one; the same object when there is nothing to add.
  function withTraceContext(options, context) {
    if (isOptionsObject(options) && options.traceContext !== undefined && options.traceContext !== null) return options;
    if (options !== undefined && options !== null && !isOptionsObject(options)) return options; // rejected natively
    const traceContext = context !== undefined ? traceContextOf(context) : activeTraceContext();
    if (traceContext === undefined) return options;
    return options === undefined || options === null ? { traceContext } : { ...options, traceContext };
  }

  function wrapPublish(proto) {
    const native = proto.publishMessage;
    const tc = channels.publish;
    function publishMessage(stream, data, id, options) {
      if (!active(tc)) {
        if (contextManager() === null) return native.call(this, stream, data, id, options);
        return native.call(this, stream, data, id, withTraceContext(options));
      }
      const ctx = baseContext(this, { stream, data, id, options, context: undefined, traceContext: undefined });
      return traceCall(tc, ctx, () => {
        const o = withTraceContext(options, ctx.context);
        ctx.traceContext = isOptionsObject(o) ? o.traceContext : undefined;
        return native.call(this, stream, data, id, o);
      });
    }
    return publishMessage;
  }

  function wrapPublishBatch(proto) {
    const native = proto.publishBatch;
    const tc = channels.publishBatch;
    function publishBatch(stream, items, options) {
      if (!active(tc)) {
        if (contextManager() === null) return native.call(this, stream, items, options);
        return native.call(this, stream, items, withTraceContext(options));
      }
      const batchSize = Array.isArray(items) ? items.length : 0;
      const ctx = baseContext(this, { stream, items, batchSize, options, context: undefined, traceContext: undefined });
      return traceCall(tc, ctx, () => {
        const o = withTraceContext(options, ctx.context);
        ctx.traceContext = isOptionsObject(o) ? o.traceContext : undefined;
        return native.call(this, stream, items, o);
      });
    }
    return publishBatch;
  }

  // What a delivery of `message` is traced with on the deliver or consume channel.
  function deliveryContext(client, fields, message) {
    return baseContext(client, {
      ...fields,
      stream: message.stream,
      id: message.id,
      message,
      traceparent: message.traceparent,
      tracestate: message.tracestate,
      context: undefined,
    });
  }

  // The context continued from a delivered message's trace context (a fresh one without it),
  // for the context manager `cm`.
  function continuedContext(cm, message) {
    const traceparent = message !== null && typeof message === "object" ? message.traceparent : undefined;
    return remoteContext(emptyLike(cm.active()), traceparent, traceparent === undefined ? undefined : message.tracestate);
  }

  // The callback of a subscription or consumer, run inside the context continued from each
  // message's trace context, and traced on `tc` (deliver or consume) while it has
  // subscribers. A subscriber may set `ctx.context` (an OpenTelemetry Context, e.g. its
  // process span's) for the callback to run in.
  function wrapCallback(client, tc, callback, fields) {
    if (typeof callback !== "function" || callback[UNTRACED] === true) return callback;
    function streamcastCallback(message) {
      const traced = active(tc);
      const cm = contextManager();
      const base = cm === null ? undefined : continuedContext(cm, message);
      if (!traced) {
        if (cm === null) return callback(message);
        return cm.with(base, callback, undefined, message);
      }
      const ctx = deliveryContext(client, fields, message);
      const body = () => {
        const now = contextManager();
        return now !== null && ctx.context !== undefined ? now.with(ctx.context, callback, undefined, message) : callback(message);
      };
      if (cm === null) return traceCall(tc, ctx, body);
      return cm.with(base, traceCall, undefined, tc, ctx, body);
    }
    if (callback[ON_STOP] !== undefined) streamcastCallback[ON_STOP] = callback[ON_STOP];
    return streamcastCallback;
  }

  // The handling of one message an async iterator (stream(), consume()) yielded, traced on
  // the deliver or consume channel like a callback that returned a Promise: start and end
  // when the iterator yields it, asyncStart and asyncEnd when the loop is done with it (it
  // asks for the next message, acknowledges this one, or ends), so a process span measures
  // the handling, not the time the message waited in the buffer. The subscribers' start
  // handlers run inside the context continued from the message, as for a callback; the loop
  // body is not a call made here, so it runs in its own context (contextOf(message)).
  // Returns the function that ends it, or null when the channel has no subscribers.
  function traceYield(client, kind, fields, message) {
    const tc = channels[kind];
    if (!active(tc) || message === null || typeof message !== "object") return null;
    const ctx = deliveryContext(client, fields, message);
    const open = () =>
      tc.start.runStores(ctx, () => {
        ctx.async = true;
        tc.end.publish(ctx);
      });
    const cm = contextManager();
    if (cm === null) open();
    else cm.with(continuedContext(cm, message), open);
    let running = true;
    return () => {
      if (!running) return;
      running = false;
      tc.asyncStart.publish(ctx);
      tc.asyncEnd.publish(ctx);
    };
  }

  function wrapSubscribe(proto) {
    const native = proto.subscribe;
    function subscribe(stream, callback, options) {
      return native.call(this, stream, wrapCallback(this, channels.deliver, callback, {}), options);
    }
    return subscribe;
  }

  function wrapConsumeFromGroup(proto) {
    const native = proto.consumeFromGroup;
    function consumeFromGroup(stream, group, consumer, callback, options) {
      const wrapped = wrapCallback(this, channels.consume, callback, { group, consumer });
      return native.call(this, stream, group, consumer, wrapped, options);
    }
    return consumeFromGroup;
  }

  // A method traced as a whole on `tc`, with `fields(args)` in its context.
  function wrapMethod(native, tc, name, fields) {
    const wrapped = {
      [name](...args) {
        if (!active(tc)) return native.apply(this, args);
        return traceCall(tc, baseContext(this, fields(args)), () => native.apply(this, args));
      },
    }[name];
    return wrapped;
  }

  function ackIds(rest) {
    return rest.length === 1 && Array.isArray(rest[0]) ? rest[0] : rest;
  }

  function define(proto, name, value) {
    Object.defineProperty(proto, name, { value, writable: true, configurable: true });
  }

  // Wraps the methods of StreamsClient.prototype (after patchExports). The names are exported
  // as CHANNEL_* constants by src/js/channels.rs.
  function patchTracing(exports) {
    const proto = exports.StreamsClient.prototype;
    define(proto, "publishMessage", wrapPublish(proto));
    define(proto, "publishBatch", wrapPublishBatch(proto));
    define(proto, "subscribe", wrapSubscribe(proto));
    define(proto, "consumeFromGroup", wrapConsumeFromGroup(proto));
    define(
      proto,
      "acknowledgeMessages",
      wrapMethod(proto.acknowledgeMessages, channels.ack, "acknowledgeMessages", ([stream, group, ...rest]) => {
        const ids = ackIds(rest);
        return { stream, group, ids, batchSize: Array.isArray(ids) ? ids.length : 0 };
      }),
    );
    define(
      proto,
      "trimStream",
      wrapMethod(proto.trimStream, channels.trim, "trimStream", ([stream, options]) => ({ stream, options })),
    );
    define(proto, "connect", wrapMethod(proto.connect, channels.connect, "connect", () => ({})));
  }

  return { patchTracing, traceYield, CHANNELS };
})
