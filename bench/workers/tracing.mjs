// One measurement of bench/tracing.ts, in a process of its own (channel subscribers and the
// OpenTelemetry globals are process-wide): `node tracing.mjs <mode> <addon index.js> <url> <n>`.
// Prints {"publish": msgs/s, "deliver": msgs/s, "netInPerPublish": bytes, "entryBytes": bytes}:
// the bytes Redis received per publishMessage during the publish run (INFO stats
// total_net_input_bytes; the command and its share of the connection's other traffic), and
// the field names and values of one stored entry (what tracing adds to each entry, if anything).
//   pre   the build before tracing existed (its index.js)
//   off   this build, nobody subscribed, no OpenTelemetry
//   noop  this build, a no-op subscriber on every streamcast TracingChannel
//   otel  this build, an OpenTelemetry SDK (AsyncLocalStorage context, always-on sampling, a
//         span processor that drops spans) with streamcast/otel: a span per publish and per
//         delivery, every entry published inside a span and carrying its context
import { createRequire } from "node:module";
import { randomUUID } from "node:crypto";
import diagnostics_channel from "node:diagnostics_channel";

// A run that loses deliveries fails with how many arrived instead of waiting forever (CI
// runs --smoke). Far above any real run's time: it is not a timing test.
const DELIVER_TIMEOUT_MS = 60_000;

const require = createRequire(import.meta.url);
const [mode, addon, url, nArg] = process.argv.slice(2);
const n = Number(nArg);
const { StreamsClient } = require(addon);
const Redis = require("ioredis");

let inSpan = (fn) => fn();
if (mode === "noop") {
  const noop = { start() {}, end() {}, asyncStart() {}, asyncEnd() {}, error() {} };
  for (const name of ["publish", "publishBatch", "deliver", "consume", "ack", "trim", "connect"]) {
    diagnostics_channel.tracingChannel(`streamcast:${name}`).subscribe(noop);
  }
} else if (mode === "otel") {
  const { context, trace } = require("@opentelemetry/api");
  const { AsyncLocalStorageContextManager } = require("@opentelemetry/context-async-hooks");
  const { BasicTracerProvider } = require("@opentelemetry/sdk-trace-base");
  const drop = { onStart() {}, onEnd() {}, forceFlush: async () => {}, shutdown: async () => {} };
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [drop] }));
  require("../../otel.js").instrument();
  const tracer = trace.getTracer("bench");
  inSpan = (fn) => tracer.startActiveSpan("request", (span) => fn().finally(() => span.end()));
}

const client = new StreamsClient({ redisUrl: url, enableAutoTrim: false, logLevel: "error" });
await client.connect();

const checker = new Redis(url);
const netInput = async () => Number(/total_net_input_bytes:(\d+)/.exec(await checker.info("stats"))[1]);

async function publish(stream) {
  const inflight = 256;
  let next = 0;
  const bytesBefore = await netInput();
  const started = performance.now();
  async function lane() {
    while (next < n) {
      next++;
      await client.publishMessage(stream, { i: next, payload: "x".repeat(100) });
    }
  }
  await inSpan(() => Promise.all(Array.from({ length: inflight }, lane)));
  const rate = n / ((performance.now() - started) / 1000);
  const netInPerPublish = ((await netInput()) - bytesBefore) / n;
  const [[, fields]] = await checker.xrange(stream, "-", "+", "COUNT", 1);
  const entryBytes = fields.reduce((sum, f) => sum + Buffer.byteLength(f), 0);
  return { rate, netInPerPublish, entryBytes };
}

async function deliver(stream) {
  const items = Array.from({ length: 1000 }, (_, i) => ({ i, payload: "x".repeat(100) }));
  for (let k = 0; k < n; k += 1000) await inSpan(() => client.publishBatch(stream, items.slice(0, Math.min(1000, n - k))));
  let got = 0;
  let done;
  const all = new Promise((r) => (done = r));
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`bench:tracing ${mode}: ${got} of ${n} deliveries arrived within ${DELIVER_TIMEOUT_MS / 1000} s`)),
      DELIVER_TIMEOUT_MS,
    );
  });
  const started = performance.now();
  await client.subscribe(stream, () => {
    if (++got === n) done();
  }, { startId: "0" });
  try {
    await Promise.race([all, deadline]);
  } finally {
    clearTimeout(timer);
  }
  return n / ((performance.now() - started) / 1000);
}

const published = await publish(`bench:tracing:${randomUUID()}`);
const out = {
  publish: published.rate,
  deliver: await deliver(`bench:tracing:${randomUUID()}`),
  netInPerPublish: published.netInPerPublish,
  entryBytes: published.entryBytes,
};
await client.disconnect();
checker.disconnect();
console.log(JSON.stringify(out));
