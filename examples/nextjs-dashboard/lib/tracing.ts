// OpenTelemetry tracing for this process, exported over OTLP/HTTP (JSON). instrumentation.ts
// imports this module only when OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) is set: with
// neither, no SDK is loaded, no span is made, and streamcast writes its entries as before.
//
// What it sets up, once per process:
// - a tracer provider with the AsyncLocalStorage context manager and the W3C propagator, so
//   Next.js's own request spans and streamcast's spans share one context;
// - a batch exporter to `${OTEL_EXPORTER_OTLP_ENDPOINT}/v1/traces` (the exporter reads the
//   OTEL_EXPORTER_OTLP_* variables, the batch processor the OTEL_BSP_* ones);
// - the resource: service.name from OTEL_SERVICE_NAME (each instance may set its own), else
//   "streamcast-nextjs-dashboard", plus OTEL_RESOURCE_ATTRIBUTES;
// - streamcast's spans (`instrument()` from streamcast/otel): `publish dashboard-updates` in the
//   POST route, and `process dashboard-updates` around each delivery. streamcast writes the
//   publish span's traceparent into the entry, so a delivery on another instance continues the
//   publisher's trace: its process span is a child of the publish span.
//
// The state lives on globalThis (as in lifecycle.ts): Next.js may evaluate this module more
// than once in a process, and a second provider would export every span twice.
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { ATTR_SERVICE_NAME } from "@opentelemetry/semantic-conventions";
import { instrument } from "streamcast/otel";
import { afterDisconnect } from "./lifecycle";

/** The service name when OTEL_SERVICE_NAME is not set. */
const DEFAULT_SERVICE_NAME = "streamcast-nextjs-dashboard";

const KEY = Symbol.for("nextjs-dashboard.tracing");
const holder = globalThis as typeof globalThis & { [KEY]?: NodeTracerProvider };

/**
 * Registers the tracer provider and streamcast's instrumentation (idempotent). Spans still in
 * the batch are exported after the client has disconnected on SIGTERM/SIGINT.
 */
export function startTracing(): void {
  if (holder[KEY] !== undefined) return;
  const resource = defaultResource()
    .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: DEFAULT_SERVICE_NAME }))
    .merge(detectResources({ detectors: [envDetector] }));
  const provider = new NodeTracerProvider({
    resource,
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
  });
  provider.register();
  holder[KEY] = provider;
  instrument();
  afterDisconnect(() => provider.shutdown());
  const service = resource.attributes[ATTR_SERVICE_NAME];
  const endpoint = process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  console.log(`[dashboard] OpenTelemetry tracing on: service.name ${String(service)}, OTLP/HTTP endpoint ${endpoint}`);
}
