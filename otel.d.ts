// Types of streamcast/otel (otel.js). See docs/observability.md.
import type { Context, Meter, MeterProvider, Tracer, TracerProvider } from "@opentelemetry/api"

/** The version of the OpenTelemetry semantic conventions followed: `1.45.0`. */
export declare const SEMCONV_VERSION: string

/** The TracingChannel names streamcast publishes on (the same as its `CHANNEL_*` exports). */
export declare const CHANNELS: Readonly<{
  publish: "streamcast:publish"
  publishBatch: "streamcast:publishBatch"
  deliver: "streamcast:deliver"
  consume: "streamcast:consume"
  ack: "streamcast:ack"
  trim: "streamcast:trim"
  connect: "streamcast:connect"
}>

/** Options of `instrument()`. */
export interface InstrumentOptions {
  /** The tracer to use. Defaults to `tracerProvider.getTracer("streamcast")`. */
  tracer?: Tracer
  /** Where the tracer comes from. Defaults to the global tracer provider. */
  tracerProvider?: TracerProvider
  /** Overrides `OTEL_SEMCONV_STABILITY_OPT_IN` (`messaging/dup` also emits the deprecated `messaging.system`; otherwise `messaging.system.name` only). */
  semconvStabilityOptIn?: string
}

/**
 * Turns streamcast's TracingChannels into spans per the messaging semantic conventions:
 * `publish {stream}` (PRODUCER), `process {stream}` (CONSUMER, child of the publisher's span,
 * linked to it), `ack {stream}`, `trim {stream}`, `connect` (CLIENT).
 */
export declare function instrument(options?: InstrumentOptions): { disable(): void }

/** Options of `registerMetrics()`. */
export interface RegisterMetricsOptions {
  /** The meter to use. Defaults to `meterProvider.getMeter("streamcast")`. */
  meter?: Meter
  /** Where the meter comes from. Defaults to the global meter provider. */
  meterProvider?: MeterProvider
}

/**
 * Observable instruments (`streamcast.published`, `streamcast.group.lag`, …) reading
 * `client.metrics()` when the meter collects.
 */
export declare function registerMetrics(
  client: { metrics(): string },
  options?: RegisterMetricsOptions,
): { unregister(): void }

/**
 * The context continued from a message's `traceparent`/`tracestate` (for the async iterators,
 * whose loop body is not a callback run inside it); `base` (default: the active context)
 * when it carries none.
 */
export declare function contextOf(
  message: { traceparent?: string; tracestate?: string },
  base?: Context,
): Context

/** Parses Prometheus text as `metrics()` writes it: family name to type and samples. */
export declare function parseExposition(
  text: string,
): Map<string, { type: string; samples: Array<{ labels: Record<string, string>; value: number }> }>
