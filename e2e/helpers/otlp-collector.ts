// A small OTLP/HTTP trace receiver for the e2e tests: the instances export their spans here
// (OTEL_EXPORTER_OTLP_ENDPOINT = `url`), and the tests poll what arrived. It accepts only what
// the example's exporter sends, POST /v1/traces in the OTLP JSON encoding (hex ids, enums as
// numbers), and keeps every span flat with its resource's service.name. Anything else (a
// protobuf body, another path, a body that does not parse) is answered with an error and
// recorded in `rejected()`, which a test expects to be empty.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { gunzipSync } from "node:zlib";

/** OTLP's SpanKind values (SPAN_KIND_*), as the JSON encoding writes them. */
export const SpanKind = { UNSPECIFIED: 0, INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 } as const;

export type AttributeValue = string | number | boolean | null;

export interface ReceivedSpan {
  /** The `service.name` of the span's resource. */
  service: string;
  /** The instrumentation scope (`streamcast`, `next.js`, …). */
  scope: string;
  traceId: string;
  spanId: string;
  /** Empty or absent for a root span. */
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: Record<string, AttributeValue>;
  links: Array<{ traceId: string; spanId: string }>;
}

export interface Collector {
  /** The base URL for OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends /v1/traces). */
  url: string;
  /** Every span received so far, in arrival order. */
  spans(): ReceivedSpan[];
  /** What was refused, one line per request (content type, path or parse error). */
  rejected(): string[];
  close(): Promise<void>;
}

interface OtlpKeyValue {
  key: string;
  value?: OtlpAnyValue;
}
interface OtlpAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: number | string;
  doubleValue?: number;
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: OtlpKeyValue[];
  links?: Array<{ traceId: string; spanId: string }>;
}
interface OtlpTraces {
  resourceSpans?: Array<{
    resource?: { attributes?: OtlpKeyValue[] };
    scopeSpans?: Array<{ scope?: { name?: string }; spans?: OtlpSpan[] }>;
  }>;
}

function scalar(v: OtlpAnyValue | undefined): AttributeValue {
  if (v === undefined) return null;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  return null;
}

function attributes(list: OtlpKeyValue[] | undefined): Record<string, AttributeValue> {
  return Object.fromEntries((list ?? []).map((kv) => [kv.key, scalar(kv.value)]));
}

function flatten(body: OtlpTraces): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of body.resourceSpans ?? []) {
    const service = String(attributes(rs.resource?.attributes)["service.name"] ?? "");
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          service,
          scope: ss.scope?.name ?? "",
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId,
          name: s.name,
          kind: s.kind,
          attributes: attributes(s.attributes),
          links: (s.links ?? []).map((l) => ({ traceId: l.traceId, spanId: l.spanId })),
        });
      }
    }
  }
  return out;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const raw = Buffer.concat(chunks);
  return req.headers["content-encoding"] === "gzip" ? gunzipSync(raw) : raw;
}

/** Starts the receiver on a free port of 127.0.0.1. */
export async function startCollector(): Promise<Collector> {
  const received: ReceivedSpan[] = [];
  const rejected: string[] = [];
  const answer = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { "Content-Type": "application/json" });
    res.end(JSON.stringify(body));
  };
  const server = createServer((req, res) => {
    void (async () => {
      const type = req.headers["content-type"] ?? "";
      if (req.method !== "POST" || req.url !== "/v1/traces") {
        rejected.push(`${req.method} ${req.url}`);
        return answer(res, 404, { message: "only POST /v1/traces" });
      }
      if (!type.startsWith("application/json")) {
        rejected.push(`POST /v1/traces with Content-Type ${type || "(none)"}`);
        return answer(res, 415, { message: "only the OTLP JSON encoding (OTEL_EXPORTER_OTLP_PROTOCOL=http/json)" });
      }
      try {
        received.push(...flatten(JSON.parse((await readBody(req)).toString("utf8")) as OtlpTraces));
      } catch (err) {
        rejected.push(`POST /v1/traces: ${err instanceof Error ? err.message : String(err)}`);
        return answer(res, 400, { message: "the body is not OTLP JSON" });
      }
      // An ExportTraceServiceResponse without partialSuccess: everything was accepted.
      return answer(res, 200, {});
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    spans: () => [...received],
    rejected: () => [...rejected],
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
