// GET /api/metrics of a running dashboard instance, read with a real Prometheus text parser.
import parsePrometheusTextFormat from "parse-prometheus-text-format";

export type Families = Map<string, ReturnType<typeof parsePrometheusTextFormat>[number]>;

/** Scrapes `${url}/api/metrics`: the families by name. */
export async function scrapeMetrics(url: string): Promise<Families> {
  const res = await fetch(`${url}/api/metrics`);
  const text = await res.text();
  if (!res.ok) throw new Error(`GET ${url}/api/metrics: HTTP ${res.status}: ${text}`);
  const type = res.headers.get("content-type") ?? "";
  if (!type.startsWith("text/plain")) throw new Error(`GET ${url}/api/metrics: Content-Type ${type}, not the Prometheus text format`);
  return new Map(parsePrometheusTextFormat(text).map((f) => [f.name, f]));
}

/**
 * The value of counter `name`'s sample with `labels` (those given must match). A counter that
 * has no such sample yet (no delivery from that stream so far) is 0; a family that is missing
 * or not a counter throws, so a renamed metric fails the test instead of reading as 0.
 */
export function counter(families: Families, name: string, labels: Record<string, string> = {}): number {
  const family = families.get(name);
  if (family === undefined) throw new Error(`no metric family ${name} in ${[...families.keys()].join(", ")}`);
  if (family.type !== "COUNTER") throw new Error(`${name} is a ${family.type}, not a COUNTER`);
  const sample = family.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  return sample === undefined ? 0 : Number(sample.value);
}
