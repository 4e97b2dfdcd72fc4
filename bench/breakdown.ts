// `pnpm bench:breakdown`: where a delivery's time and CPU go, read off the kernel's scheduler
// record, for streamcast and the ioredis port in one run.
//
//   pnpm bench:breakdown                         2,000 msg/s for 3 s (after 1 s of warm-up), both
//   pnpm bench:breakdown --rate 200 --seconds 10 --impls streamcast --repeats 3
//   pnpm bench:breakdown --profile               where each thread's CPU goes (perf record -g)
//
// Each implementation runs scenario 3's publisher and subscriber processes on a private
// redis-server, while `perf record -k mono -a` records every wake-up (sched_wakeup) and
// context switch (sched_switch) on the machine. The subscriber writes each measured message's
// send and receive times (process.hrtime: CLOCK_MONOTONIC, the clock perf is told to use), so
// every message is placed on the same timeline as the threads that carried it. A stage ends
// where the next thread on the path is woken or starts running:
//
//   publisher JS thread ─wake→ publisher tokio thread ─wake→ redis-server ─wake→
//   subscriber tokio thread ─wake→ subscriber JS thread → callback        (streamcast)
//   publisher JS thread ─wake→ redis-server ─wake→ subscriber JS thread → callback   (port)
//
// "wait" stages are a woken thread's wait for a core (wake-up to running); the others are work
// on the thread (its CPU, or blocked in between). A message whose path is not a chain of
// wake-ups (a thread on it was already running, so nobody woke it) counts as "not a chain" and
// is left out of the stages. CPU per delivery is each thread's on-core time over the measured
// window (first send to last receive) divided by the messages measured.
//
// Needs `perf` with access to the sched tracepoints (root, or kernel.perf_event_paranoid ≤ 1
// with tracefs readable). Prints a table and writes bench/results/tmp-breakdown-<ts>.json.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { IMPLS, type ImplName } from "./lib/impls.js";
import { BENCH_DIR, Worker } from "./lib/proc.js";
import { startRedis } from "./lib/redis.js";
import { percentileSorted, sleep } from "./lib/util.js";

interface Args {
  rate: number;
  seconds: number;
  warmSeconds: number;
  repeats: number;
  impls: ImplName[];
  /** Sample the two processes' CPU (perf record -g) instead, and print where it goes. */
  profile: boolean;
  /** Keep the perf data and the message times (their folder is printed). */
  keep: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { rate: 2000, seconds: 3, warmSeconds: 1, repeats: 1, impls: ["ioredis-port", "streamcast"], profile: false, keep: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const val = (): number => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v <= 0) throw new Error(`${k} needs a positive number`);
      return v;
    };
    if (k === "--") continue;
    else if (k === "--rate") a.rate = val();
    else if (k === "--seconds") a.seconds = val();
    else if (k === "--repeats") a.repeats = Math.round(val());
    else if (k === "--profile") a.profile = true;
    else if (k === "--keep") a.keep = true;
    else if (k === "--impls") {
      a.impls = (argv[++i] ?? "").split(",") as ImplName[];
      for (const impl of a.impls) if (!IMPLS.includes(impl) || impl === "glide") throw new Error(`--impls: streamcast or ioredis-port, not ${impl}`);
    } else throw new Error(`unknown argument ${k} (--rate N --seconds N --repeats N --impls a,b --profile --keep)`);
  }
  return a;
}

/** One scheduler event, times in ns on CLOCK_MONOTONIC. */
interface Wake {
  t: number;
  waker: number;
  wakee: number;
}
interface Switch {
  t: number;
  prev: number;
  next: number;
}

const LINE = /^\s*(.+?)\s+(-?\d+)\/(\d+)\s+\[(\d+)\]\s+(\d+\.\d+):\s+sched:(sched_wakeup|sched_switch):\s+(.*)$/;

/** Parses `perf script` output: the events, and each thread's process and name. */
function parseScript(text: string): { wakes: Wake[]; switches: Switch[]; threads: Map<number, { pid: number; comm: string }> } {
  const wakes: Wake[] = [];
  const switches: Switch[] = [];
  const threads = new Map<number, { pid: number; comm: string }>();
  for (const line of text.split("\n")) {
    const m = LINE.exec(line);
    if (!m) continue;
    const [, comm, pid, tid, , time, kind, rest] = m;
    const t = Math.round(Number(time) * 1e9);
    const cur = Number(tid);
    if (cur !== 0) threads.set(cur, { pid: Number(pid), comm: comm! });
    if (kind === "sched_wakeup") {
      const wakee = /\bpid=(\d+)/.exec(rest!);
      if (wakee) wakes.push({ t, waker: cur, wakee: Number(wakee[1]) });
    } else {
      const p = /prev_pid=(\d+).*next_pid=(\d+)/.exec(rest!);
      if (p) switches.push({ t, prev: Number(p[1]), next: Number(p[2]) });
    }
  }
  return { wakes, switches, threads };
}

/** The first index in the sorted `ts` whose value is ≥ t. */
function firstAtOrAfter(ts: number[], t: number): number {
  let lo = 0;
  let hi = ts.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ts[mid]! < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Wake-ups and switch-ins of a set of threads, sorted by time. */
class Track {
  readonly wakeT: number[];
  readonly runT: number[];
  constructor(wakes: Wake[], switches: Switch[], tids: Set<number>) {
    this.wakeT = wakes.filter((w) => tids.has(w.wakee)).map((w) => w.t);
    this.runT = switches.filter((s) => tids.has(s.next)).map((s) => s.t);
  }
  /** The first wake-up at or after t, and the switch-in that followed it. */
  wokenAfter(t: number): [number, number] | null {
    const w = this.wakeT[firstAtOrAfter(this.wakeT, t)];
    if (w === undefined) return null;
    const r = this.runT[firstAtOrAfter(this.runT, w)];
    return r === undefined ? null : [w, r];
  }
}

interface Roles {
  pubJs: Set<number>;
  pubRt: Set<number>;
  redis: Set<number>;
  subRt: Set<number>;
  subJs: Set<number>;
  pubOther: Set<number>;
  subOther: Set<number>;
}

function roles(threads: Map<number, { pid: number; comm: string }>, pubPid: number, subPid: number, redisPid: number): Roles {
  const r: Roles = { pubJs: new Set([pubPid]), pubRt: new Set(), redis: new Set([redisPid]), subRt: new Set(), subJs: new Set([subPid]), pubOther: new Set(), subOther: new Set() };
  for (const [tid, { pid, comm }] of threads) {
    if (tid === pid) continue;
    const rt = comm.startsWith("streamcast-rt");
    if (pid === pubPid) (rt ? r.pubRt : r.pubOther).add(tid);
    if (pid === subPid) (rt ? r.subRt : r.subOther).add(tid);
  }
  return r;
}

/** One hop of a message's path: the thread woken, and the names of its two stages. */
interface Hop {
  /** The stage that ends when this hop's thread is woken (the previous thread's work). */
  before: string;
  track: Track;
  wait: string;
}

/** The path of a message, thread by thread. */
function pathOf(impl: ImplName, r: Roles, wakes: Wake[], switches: Switch[]): { hops: Hop[]; last: string } {
  const track = (tids: Set<number>): Track => new Track(wakes, switches, tids);
  if (impl === "streamcast")
    return {
      hops: [
        { before: "publisher JS thread: publish() until it wakes its tokio thread", track: track(r.pubRt), wait: "publisher tokio thread: wait for a core" },
        { before: "publisher tokio thread: encode, write to Redis", track: track(r.redis), wait: "redis-server: wait for a core" },
        { before: "redis-server: XADD, reply to the blocked XREAD", track: track(r.subRt), wait: "subscriber tokio thread: wait for a core" },
        { before: "subscriber tokio thread: read, parse, queue for JS", track: track(r.subJs), wait: "subscriber JS thread: wait for a core" },
      ],
      last: "subscriber JS thread: hand-over, JSON.parse, callback",
    };
  return {
    hops: [
      { before: "publisher JS thread: publish() until its write wakes Redis", track: track(r.redis), wait: "redis-server: wait for a core" },
      { before: "redis-server: XADD, reply to the blocked XREAD", track: track(r.subJs), wait: "subscriber JS thread: wait for a core" },
    ],
    last: "subscriber JS thread: read, parse, callback",
  };
}

/** A message's stages in ns, in path order, or null when its path is not a chain of wake-ups. */
function stagesOf(hops: Hop[], last: string, sentNs: number, receivedNs: number): Array<[string, number]> | null {
  const out: Array<[string, number]> = [];
  let t = sentNs;
  for (const hop of hops) {
    const woken = hop.track.wokenAfter(t);
    if (woken === null || woken[1] > receivedNs) return null;
    out.push([hop.before, woken[0] - t], [hop.wait, woken[1] - woken[0]]);
    t = woken[1];
  }
  out.push([last, receivedNs - t]);
  return out;
}

/** On-core ns of each thread between `from` and `to`. */
function onCore(switches: Switch[], from: number, to: number): Map<number, number> {
  const since = new Map<number, number>();
  const total = new Map<number, number>();
  for (const s of switches) {
    if (s.t > to) break;
    const t = Math.max(s.t, from);
    const began = since.get(s.prev);
    if (began !== undefined && s.t >= from) total.set(s.prev, (total.get(s.prev) ?? 0) + (t - began));
    since.delete(s.prev);
    since.set(s.next, t);
  }
  for (const [tid, began] of since) total.set(tid, (total.get(tid) ?? 0) + (to - Math.max(began, from)));
  return total;
}

/** What kind of work a sampled symbol does (`perf report` dso, [k] or [.], symbol). */
function kindOf(dso: string, ring: string, sym: string): string {
  if (ring === "k") {
    if (/tcp|sock|skb|inet|ip_|net_|__dev|loopback|recv|send|copy_(to|from)_user|_copy_/.test(sym)) return "kernel: socket I/O";
    return "kernel: wake-ups, scheduling, epoll, other syscalls";
  }
  if (/^(combine|redis)::|<combine|<redis/.test(sym)) return "redis crate: RESP parsing, connection";
  if (/serde_json|Entry::payload|fmt/.test(sym)) return "Rust: JSON text for JavaScript";
  if (/^_?mi_|mimalloc/.test(sym)) return "Rust: allocator (mimalloc)";
  if (/tokio|mio::|futures_/.test(sym)) return "tokio: tasks, I/O driver, channels";
  if (dso.includes("streamcast")) return "streamcast: decode, dispatch, hand-over";
  if (/JsonParser|JsonString|MakeString|NewRawOneByteString/.test(sym)) return "V8: JSON.parse";
  if (/napi|v8impl|ThreadSafeFunction|uv_|uv__/.test(sym)) return "node-API, threadsafe function, libuv";
  if (dso.startsWith("[JIT]")) return "JavaScript (JIT): callback, hub, trampoline";
  if (/libc|ld-linux|libm/.test(dso)) return "libc";
  return "node/V8: other (GC, interpreter, runtime)";
}

interface RunResult {
  impl: ImplName;
  rep: number;
  load1: number;
  messages: number;
  chains: number;
  e2e: { p50: number; p99: number };
  stages: Array<{ stage: string; p50: number; p99: number; mean: number }>;
  cpuPerDelivery: Record<string, number>;
  wakeupsPerDelivery: Record<string, number>;
}

const us = (ns: number): number => Math.round(ns / 100) / 10;

function waitForFile(path: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  return (async () => {
    while (!(existsSync(path) && statSync(path).size > 0)) {
      if (Date.now() > deadline) throw new Error(`perf did not start writing ${path} within ${ms} ms`);
      await sleep(20);
    }
  })();
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let err = "";
    c.stdout!.on("data", (d: Buffer) => out.push(d));
    c.stderr!.on("data", (d) => (err += d));
    c.on("error", reject);
    c.on("exit", (code) => (code === 0 ? resolve(Buffer.concat(out).toString("utf8")) : reject(new Error(`${cmd} ${args.join(" ")}: exit ${code}: ${err.slice(-500)}`))));
  });
}

async function measure(impl: ImplName, rep: number, a: Args, url: string, redisPid: number, dir: string): Promise<RunResult> {
  const expected = Math.round(a.rate * a.warmSeconds) + Math.round(a.rate * a.seconds);
  const dump = join(dir, `pairs-${impl}-${rep}.json`);
  const data = join(dir, `perf-${impl}-${rep}.data`);
  const load1 = loadavg()[0]!;
  const sub = new Worker(`bd-sub-${impl}`, "subscriber.ts", { impl, url, stream: "bd", mode: "latency", expected, idleMs: 3000, slowEvery: 0, sampleMs: 0, dump });
  let pub: Worker | null = null;
  let perf: ChildProcess | null = null;
  try {
    await sub.waitFor("ready", 30_000);
    pub = new Worker(`bd-pub-${impl}`, "publisher.ts", { impl, url, stream: "bd", mode: "rate", rate: a.rate, seconds: a.seconds, warmSeconds: a.warmSeconds, n: 0, inflight: 0 });
    const record = a.profile
      ? ["record", "-q", "-g", "-F", "4999", "-p", `${sub.child.pid},${pub.child.pid}`, "-o", data]
      : ["record", "-q", "-k", "mono", "-a", "-e", "sched:sched_wakeup", "-e", "sched:sched_switch", "-o", data];
    perf = spawn("perf", record, { stdio: ["ignore", "ignore", "inherit"] });
    await waitForFile(data, 10_000);
    await pub.waitFor("result", (a.seconds + a.warmSeconds) * 1000 + 60_000);
    sub.send({ type: "published" });
    const s = await sub.waitFor("result", 60_000);
    if (s.lost > 0) throw new Error(`${s.lost} of ${expected} messages never arrived`);
    const stopped = new Promise<void>((resolve) => perf!.once("exit", () => resolve()));
    perf.kill("SIGINT");
    await stopped;
    perf = null;
    const pubPid = pub.child.pid!;
    const subPid = sub.child.pid!;
    if (a.profile) {
      const report = (sort: string, limit: number): Promise<string> =>
        run("perf", ["report", "-i", data, "--no-children", "-g", "none", "--percent-limit", String(limit), "--sort", sort, "-q"]);
      console.log(`\n${impl}: subscriber pid ${subPid}, publisher pid ${pubPid}; share of all samples by thread and library:\n${await report("pid,comm,dso", 0.5)}`);
      const subThreads = new Map<number, string>();
      for (const line of (await run("perf", ["script", "-i", data, "-F", "comm,pid,tid"])).split("\n")) {
        const m = /^\s*(.+?)\s+(\d+)\/(\d+)\s*$/.exec(line);
        if (m && Number(m[2]) === subPid) subThreads.set(Number(m[3]), m[1]!);
      }
      console.log(`${impl} subscriber: share of each thread's samples by kind of work (symbols need a build with them: CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=line-tables-only pnpm build)`);
      for (const [tid, comm] of subThreads) {
        const lines = await run("perf", ["report", "-i", data, "--tid", String(tid), "--no-children", "-g", "none", "--sort", "dso,sym", "-q", "-F", "period,dso,sym"]);
        const byKind = new Map<string, number>();
        let total = 0;
        for (const line of lines.split("\n")) {
          const m = /^\s*(\d+)\s+(\S.*?)\s+\[(.)\]\s+(.*)$/.exec(line);
          if (!m) continue;
          const n = Number(m[1]);
          total += n;
          const k = kindOf(m[2]!, m[3]!, m[4]!);
          byKind.set(k, (byKind.get(k) ?? 0) + n);
        }
        if (total === 0) continue;
        console.log(`  ${comm} (tid ${tid}):`);
        for (const [k, n] of [...byKind].sort((x, y) => y[1] - x[1])) console.log(`    ${k} | ${((100 * n) / total).toFixed(1)}%`);
      }
      console.log(`${impl}: top symbols:\n${await report("pid,comm,sym", 0.7)}`);
      return { impl, rep, load1, messages: s.latency.n, chains: 0, e2e: { p50: s.latency.p50, p99: s.latency.p99 }, stages: [], cpuPerDelivery: {}, wakeupsPerDelivery: {} };
    }
    const text = await run("perf", ["script", "-i", data, "--ns", "-F", "comm,pid,tid,cpu,time,event,trace"]);
    const ev = parseScript(text);
    const r = roles(ev.threads, pubPid, subPid, redisPid);
    const pairs = JSON.parse(readFileSync(dump, "utf8")) as Array<[number, number]>;
    const { hops, last } = pathOf(impl, r, ev.wakes, ev.switches);
    const byStage = new Map<string, number[]>();
    const e2e: number[] = [];
    let chains = 0;
    for (const [sentUs, recvUs] of pairs) {
      e2e.push(recvUs - sentUs);
      const st = stagesOf(hops, last, sentUs * 1000, recvUs * 1000);
      if (st === null) continue;
      chains++;
      for (const [name, ns] of st) {
        let xs = byStage.get(name);
        if (!xs) byStage.set(name, (xs = []));
        xs.push(ns);
      }
    }
    const stages = [...byStage].map(([stage, xs]) => {
      const sorted = Float64Array.from(xs).sort();
      return { stage, p50: us(percentileSorted(sorted, 50)), p99: us(percentileSorted(sorted, 99)), mean: us(xs.reduce((x, y) => x + y, 0) / xs.length) };
    });
    const from = pairs[0]![0] * 1000;
    const to = pairs[pairs.length - 1]![1] * 1000;
    const core = onCore(ev.switches, from, to);
    const groups: Array<[string, Set<number>]> = [
      ["publisher JS thread", r.pubJs],
      ["publisher tokio thread", r.pubRt],
      ["publisher, other threads", r.pubOther],
      ["redis-server", r.redis],
      ["subscriber tokio thread", r.subRt],
      ["subscriber JS thread", r.subJs],
      ["subscriber, other threads", r.subOther],
    ];
    const cpuPerDelivery: Record<string, number> = {};
    const wakeupsPerDelivery: Record<string, number> = {};
    for (const [name, tids] of groups) {
      if (tids.size === 0) continue;
      let ns = 0;
      for (const tid of tids) ns += core.get(tid) ?? 0;
      cpuPerDelivery[name] = Math.round((ns / 1000 / pairs.length) * 100) / 100;
      const woke = ev.wakes.filter((w) => tids.has(w.wakee) && w.t >= from && w.t <= to).length;
      wakeupsPerDelivery[name] = Math.round((woke / pairs.length) * 100) / 100;
    }
    const sortedE2e = Float64Array.from(e2e).sort();
    return { impl, rep, load1, messages: pairs.length, chains, e2e: { p50: percentileSorted(sortedE2e, 50), p99: percentileSorted(sortedE2e, 99) }, stages, cpuPerDelivery, wakeupsPerDelivery };
  } finally {
    perf?.kill("SIGKILL");
    await Promise.all([sub.finish(), pub?.finish()]);
  }
}

function print(results: RunResult[]): void {
  for (const impl of new Set(results.map((r) => r.impl))) {
    const rs = results.filter((r) => r.impl === impl);
    console.log(`\n${impl}: ${rs.map((r) => `e2e p50 ${r.e2e.p50} / p99 ${r.e2e.p99} µs, ${r.chains} of ${r.messages} messages a chain (load1 ${r.load1.toFixed(2)})`).join("; ")}`);
    console.log("  stage | p50 µs | p99 µs | mean µs (median over repeats)");
    const med = (xs: number[]): number => [...xs].sort((x, y) => x - y)[xs.length >> 1]!;
    for (const { stage } of rs[0]!.stages) {
      const pick = (k: "p50" | "p99" | "mean"): number => med(rs.map((r) => r.stages.find((s) => s.stage === stage)?.[k] ?? NaN));
      console.log(`  ${stage} | ${pick("p50")} | ${pick("p99")} | ${pick("mean")}`);
    }
    console.log("  thread | CPU µs per delivery | wake-ups per delivery");
    for (const name of Object.keys(rs[0]!.cpuPerDelivery)) {
      console.log(`  ${name} | ${med(rs.map((r) => r.cpuPerDelivery[name] ?? 0))} | ${med(rs.map((r) => r.wakeupsPerDelivery[name] ?? 0))}`);
    }
  }
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const redis = await startRedis();
  const dir = mkdtempSync(join(tmpdir(), "streamcast-breakdown-"));
  const results: RunResult[] = [];
  let failed = false;
  try {
    const info = await redis.admin.info("server");
    const redisPid = Number(/process_id:(\d+)/.exec(info)?.[1]);
    console.log(`breakdown at ${a.rate} msg/s, ${a.seconds} s measured, ${a.repeats} repeat(s), load average ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
    for (let rep = 0; rep < a.repeats; rep++) {
      for (const impl of a.impls) {
        await redis.flushall();
        try {
          results.push(await measure(impl, rep, a, redis.url, redisPid, dir));
        } catch (e) {
          failed = true;
          console.error(`${impl} #${rep + 1}: ${(e as Error).message}`);
        }
      }
    }
  } finally {
    await redis.stop();
    if (a.keep) console.log(`perf data and message times kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
  print(results);
  const out = join(BENCH_DIR, "results", `tmp-breakdown-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  writeFileSync(out, JSON.stringify({ args: a, loadavgAtEnd: loadavg(), results }, null, 2));
  console.log(`\nwrote ${out}`);
  if (failed) process.exit(1);
}

void main().catch((e) => {
  console.error(e);
  process.exit(1);
});
