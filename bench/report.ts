// Results: the data model, the JSON files, the printed table and the SVG chart.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { median } from "./lib/util.js";

export const BASELINE = "ioredis-port";

export interface TargetSpec {
  /** Printed as is, e.g. "≥ 2× ioredis-port". */
  text: string;
  /** ratio: streamcast's median / `vs`'s median; abs: streamcast's `stat` against `value`. */
  kind: "ratio" | "abs";
  vs?: string;
  op: ">=" | "<=" | "<" | "==";
  value: number;
  stat?: "median" | "max";
}

export interface MetricSpec {
  key: string;
  scenario: number;
  label: string;
  unit: string;
  better: "higher" | "lower";
  targets?: TargetSpec[];
  /** Leave out of the ratio chart (absolute metrics such as a loss count). */
  noChart?: boolean;
}

export interface ImplResult {
  samples: number[];
  median: number;
  min: number;
  max: number;
  /** (max − min) / median, in percent. */
  spreadPct: number;
}

export interface MetricResult extends MetricSpec {
  results: Record<string, ImplResult>;
  /** Median of each implementation / median of the ioredis port. */
  ratioVsBaseline: Record<string, number>;
  targetResults: Array<TargetSpec & { actual: number; met: boolean }>;
}

export interface ScenarioResult {
  id: number;
  title: string;
  sizes: Record<string, unknown>;
  seconds: number;
  errors: string[];
  metrics: MetricResult[];
  runs: Array<Record<string, unknown>>;
}

export interface BenchReport {
  schema: 1;
  mode: "smoke" | "full";
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  argv: string[];
  repeats: number;
  machine: Record<string, unknown>;
  versions: Record<string, unknown>;
  redis: Record<string, unknown>;
  implementations: Record<string, string>;
  cuts: string[];
  notes: string[];
  scenarios: ScenarioResult[];
}

export function summarize(samples: number[]): ImplResult {
  const ok = samples.filter((x) => Number.isFinite(x));
  const med = median(ok);
  const min = ok.length ? Math.min(...ok) : NaN;
  const max = ok.length ? Math.max(...ok) : NaN;
  return { samples, median: med, min, max, spreadPct: med ? ((max - min) / Math.abs(med)) * 100 : 0 };
}

function compare(op: TargetSpec["op"], a: number, b: number): boolean {
  if (!Number.isFinite(a)) return false;
  switch (op) {
    case ">=":
      return a >= b;
    case "<=":
      return a <= b;
    case "<":
      return a < b;
    case "==":
      return a === b;
  }
}

export function finishMetric(spec: MetricSpec, samples: Record<string, number[]>): MetricResult {
  const results: Record<string, ImplResult> = {};
  for (const [impl, xs] of Object.entries(samples)) results[impl] = summarize(xs);
  const base = results[BASELINE]?.median;
  const ratioVsBaseline: Record<string, number> = {};
  for (const [impl, r] of Object.entries(results)) {
    ratioVsBaseline[impl] = base !== undefined && base !== 0 ? r.median / base : NaN;
  }
  const sc = results.streamcast;
  const targetResults = (spec.targets ?? []).map((t) => {
    let actual = NaN;
    if (sc) {
      if (t.kind === "ratio") {
        const vs = results[t.vs ?? BASELINE]?.median;
        actual = vs ? sc.median / vs : NaN;
      } else {
        actual = t.stat === "max" ? sc.max : sc.median;
      }
    }
    return { ...t, actual, met: compare(t.op, actual, t.value) };
  });
  return { ...spec, results, ratioVsBaseline, targetResults };
}

// ---- output --------------------------------------------------------------------------------

export function fmt(x: number, unit = ""): string {
  if (!Number.isFinite(x)) return "n/a";
  const a = Math.abs(x);
  let s: string;
  if (unit === "msgs/s" || unit === "deliveries/s") s = a >= 1e6 ? `${(x / 1e6).toFixed(2)}M` : a >= 1e3 ? `${(x / 1e3).toFixed(1)}k` : x.toFixed(0);
  else if (a >= 1000) s = x.toFixed(0);
  else if (a >= 100) s = x.toFixed(1);
  else if (a >= 1) s = x.toFixed(2);
  else if (a === 0) s = "0";
  else s = x.toFixed(3);
  return s;
}

function ratioText(r: number): string {
  return Number.isFinite(r) ? `${r.toFixed(2)}×` : "—";
}

/** The printed table: scenario, metric, impl, median, spread, ratio vs ioredis-port, target, met? */
export function table(report: BenchReport): string {
  const rows: string[][] = [["scenario", "metric", "impl", "median", "spread (min–max)", "vs ioredis-port", "target", "met?"]];
  for (const s of report.scenarios) {
    for (const m of s.metrics) {
      const impls = Object.keys(m.results).sort((a, b) => order(a) - order(b));
      for (const impl of impls) {
        const r = m.results[impl]!;
        const targets = impl === "streamcast" ? m.targetResults : [];
        const tText = targets.map((t) => `${t.text} (${t.kind === "ratio" ? ratioText(t.actual) : fmt(t.actual, m.unit)})`).join("; ");
        const met = targets.length ? (targets.every((t) => t.met) ? "yes" : targets.some((t) => t.met) ? "partly" : "NO") : "";
        rows.push([
          `${s.id}. ${s.title}`,
          `${m.label} [${m.unit}]`,
          impl,
          fmt(r.median, m.unit),
          `${fmt(r.min, m.unit)}–${fmt(r.max, m.unit)} (n=${r.samples.filter(Number.isFinite).length})`,
          impl === BASELINE ? "1.00×" : ratioText(m.ratioVsBaseline[impl] ?? NaN),
          tText,
          met,
        ]);
      }
    }
    for (const e of s.errors) rows.push([`${s.id}. ${s.title}`, "ERROR", "", "", "", "", e.split("\n")[0]!.slice(0, 140), ""]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  const line = (r: string[]) => r.map((cell, c) => (cell ?? "").padEnd(widths[c]!)).join(" | ");
  const out = [line(rows[0]!), widths.map((w) => "-".repeat(w)).join("-|-")];
  let prev = "";
  for (const r of rows.slice(1)) {
    const same = r[0] === prev;
    prev = r[0]!;
    out.push(line(same ? ["", ...r.slice(1)] : r));
  }
  return out.join("\n");
}

function order(impl: string): number {
  return ["streamcast", "ioredis-port", "glide", "redis-benchmark"].indexOf(impl) + 1 || 9;
}

// ---- SVG chart -----------------------------------------------------------------------------

const COLORS: Record<string, string> = { streamcast: "#d9480f", glide: "#1971c2", "redis-benchmark": "#5c940d" };

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/**
 * A grouped bar chart: per metric, how many times better than the ioredis port each other
 * implementation is (impl/port for higher-is-better, port/impl for lower-is-better), on a log
 * scale, with streamcast's target (where there is a ratio target) as a dashed mark.
 */
export function svgChart(report: BenchReport): string {
  const groups: Array<{ label: string; sub: string; bars: Array<{ impl: string; v: number; lo: number; hi: number }>; target?: number }> = [];
  for (const s of report.scenarios) {
    for (const m of s.metrics) {
      if (m.noChart) continue;
      const base = m.results[BASELINE];
      if (!base || !(base.median > 0)) continue;
      const bars = Object.keys(m.results)
        .filter((i) => i !== BASELINE)
        .sort((a, b) => order(a) - order(b))
        .map((impl) => {
          const r = m.results[impl]!;
          const adv = (x: number) => (m.better === "higher" ? x / base.median : base.median / x);
          const a = adv(r.min);
          const b = adv(r.max);
          return { impl, v: adv(r.median), lo: Math.min(a, b), hi: Math.max(a, b) };
        })
        .filter((b) => Number.isFinite(b.v) && b.v > 0);
      if (!bars.length) continue;
      const t = m.targetResults.find((t) => t.kind === "ratio" && (t.vs ?? BASELINE) === BASELINE);
      const target = t ? (m.better === "higher" ? t.value : 1 / t.value) : undefined;
      groups.push({ label: `${s.id}. ${m.label}`, sub: m.better === "higher" ? `${m.unit}, higher better` : `${m.unit}, lower better`, bars, target });
    }
  }
  const right = 150; // room for the last rotated label
  const W = Math.max(720, 70 + groups.length * 92 + right);
  const H = 500;
  const left = 70;
  const top = 60;
  const plotH = 260;
  const plotW = W - left - right;
  const minL = -3; // log2: 1/8× … 32×
  const maxL = 5;
  const y = (v: number) => {
    const l = Math.min(maxL, Math.max(minL, Math.log2(v)));
    return top + plotH - ((l - minL) / (maxL - minL)) * plotH;
  };
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect width="100%" height="100%" fill="#fff"/>`);
  const when = report.startedAt.replace("T", " ").slice(0, 16);
  out.push(`<text x="${left}" y="22" font-size="15" font-weight="bold">streamcast benchmark: × better than the ioredis port (log scale)</text>`);
  out.push(
    `<text x="${left}" y="40" fill="#555">${esc(`${report.mode} run ${when} UTC · ${report.repeats} repeats, medians, whiskers min–max · ${String(report.machine.cpuModel ?? "")} ×${String(report.machine.nproc ?? "?")} · redis ${String(report.redis.version ?? "")}`)}</text>`,
  );
  for (let l = minL; l <= maxL; l++) {
    const v = 2 ** l;
    const yy = y(v);
    out.push(`<line x1="${left}" x2="${left + plotW}" y1="${yy}" y2="${yy}" stroke="${l === 0 ? "#333" : "#e5e5e5"}" stroke-width="${l === 0 ? 1.2 : 1}"/>`);
    out.push(`<text x="${left - 6}" y="${yy + 4}" text-anchor="end" fill="#555">${v >= 1 ? v : `1/${1 / v}`}×</text>`);
  }
  const gw = plotW / Math.max(1, groups.length);
  groups.forEach((g, gi) => {
    const x0 = left + gi * gw;
    const bw = Math.min(26, (gw - 16) / g.bars.length);
    const start = x0 + (gw - bw * g.bars.length) / 2;
    g.bars.forEach((b, bi) => {
      const bx = start + bi * bw;
      const y1 = y(1);
      const yv = y(b.v);
      out.push(`<rect x="${bx + 1}" y="${Math.min(y1, yv)}" width="${bw - 2}" height="${Math.max(1, Math.abs(y1 - yv))}" fill="${COLORS[b.impl] ?? "#888"}"><title>${esc(`${b.impl}: ${b.v.toFixed(2)}×`)}</title></rect>`);
      const cx = bx + bw / 2;
      out.push(`<line x1="${cx}" x2="${cx}" y1="${y(b.lo)}" y2="${y(b.hi)}" stroke="#222" stroke-width="1"/>`);
      out.push(`<text x="${cx}" y="${(b.v >= 1 ? Math.min(yv, y(b.hi)) : Math.max(yv, y(b.lo)) + 10) - 3}" text-anchor="middle" font-size="9">${b.v >= 10 ? b.v.toFixed(0) : b.v >= 0.1 ? b.v.toFixed(1) : `1/${Math.round(1 / b.v)}`}</text>`);
    });
    if (g.target !== undefined) {
      const ty = y(g.target);
      out.push(`<line x1="${x0 + 4}" x2="${x0 + gw - 4}" y1="${ty}" y2="${ty}" stroke="#d9480f" stroke-dasharray="4 3" stroke-width="1.5"/>`);
    }
    const lx = x0 + gw / 2;
    const ly = top + plotH + 14;
    out.push(`<text transform="translate(${lx},${ly}) rotate(35)" font-size="10">${esc(g.label)}<tspan x="0" dy="12" fill="#777" font-size="9">${esc(g.sub)}</tspan></text>`);
  });
  const ly = H - 12;
  let lx = left;
  for (const impl of ["streamcast", "glide", "redis-benchmark"]) {
    out.push(`<rect x="${lx}" y="${ly - 9}" width="12" height="10" fill="${COLORS[impl]}"/><text x="${lx + 16}" y="${ly}">${impl} vs ioredis-port</text>`);
    lx += impl === "redis-benchmark" ? 210 : 170;
  }
  out.push(`<line x1="${lx}" x2="${lx + 24}" y1="${ly - 4}" y2="${ly - 4}" stroke="#d9480f" stroke-dasharray="4 3" stroke-width="1.5"/><text x="${lx + 30}" y="${ly}">streamcast target</text>`);
  out.push(`</svg>`);
  return out.join("\n");
}

/**
 * A complete full run writes `<timestamp>.json`, `latest.json` and `latest.svg` (what docs/benchmarks.md
 * shows). A smoke or partial run (`--smoke`, `--only`) writes only git-ignored `tmp-*` files, so it
 * never replaces the published numbers.
 */
export function writeReport(dir: string, report: BenchReport, complete: boolean): { json: string; latest: string; svg: string } {
  mkdirSync(dir, { recursive: true });
  const stamp = report.startedAt.replace(/[:.]/g, "-");
  const published = complete && report.mode === "full";
  const prefix = published ? "" : `tmp-${report.mode === "smoke" ? "smoke" : "partial"}-`;
  const json = join(dir, `${prefix}${stamp}.json`);
  const text = JSON.stringify(report, null, 2) + "\n";
  writeFileSync(json, text);
  const latest = join(dir, `${published ? "" : "tmp-"}latest.json`);
  writeFileSync(latest, text);
  const svg = join(dir, `${published ? "" : "tmp-"}latest.svg`);
  writeFileSync(svg, svgChart(report));
  return { json, latest, svg };
}

// `pnpm exec tsx bench/report.ts bench/results/latest.json` re-prints the table and re-renders
// the SVG next to the JSON (e.g. after changing the chart), without running anything.
if (require.main === module) {
  const file = process.argv[2] ?? join(__dirname, "results", "latest.json");
  const report = JSON.parse(readFileSync(file, "utf8")) as BenchReport;
  console.log(table(report));
  const svg = file.replace(/\.json$/, ".svg");
  writeFileSync(svg, svgChart(report));
  console.log(`wrote ${svg}`);
}
