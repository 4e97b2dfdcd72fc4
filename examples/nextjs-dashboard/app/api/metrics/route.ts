// GET /api/metrics: this instance's streamcast counters and gauges in the Prometheus text format,
// for a Prometheus scrape (docs/observability.md lists the metrics).
import { client } from "@/lib/streams";

export const runtime = "nodejs";
export const dynamic = "force-dynamic";

export function GET(): Response {
  return new Response(client.metrics(), { headers: { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" } });
}
