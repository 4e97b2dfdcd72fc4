// One load driver for the failover and resharding tests: steady publishing to a set of streams,
// subscriptions of every stream, and consumer-group consumption, all recorded, plus the final
// accounting: which resolved publishes were delivered, which fell into a gap the client reported,
// which were lost without a report, and which were delivered twice.
import { appendFileSync } from "node:fs";
import { afterAll, beforeAll } from "vitest";
import { setLogger, StreamsClient, type StreamMessage } from "../../index.js";
import { startCluster, type RedisCluster } from "./cluster.js";
import { FIXTURE_CLIENT_NAME, parseClientList } from "./topology.js";
import { notYet, waitFor } from "./until.js";

/** Runs one command on one node of a test topology (`RedisCluster.call`, `RedisSentinel.call`). */
export type NodeCall = (port: number, ...args: (string | number)[]) => Promise<unknown>;

/**
 * A client of `redisUrl` as the failover tests use it (no auto-trim, `warn` logs or `info` with
 * FAILOVER_LOAD_LOG set, reconnects at most 500 ms apart), added to `clients` so that the spec
 * disconnects it.
 */
export function loadClient(redisUrl: string, clients: StreamsClient[]): StreamsClient {
  const client = new StreamsClient({
    redisUrl,
    enableAutoTrim: false,
    logLevel: process.env.FAILOVER_LOAD_LOG ? "info" : "warn",
    reconnectMaxDelayMs: 500,
  });
  clients.push(client);
  return client;
}

/** What a cluster load spec reaches its cluster with (see {@link clusterForLoad}). */
export interface ClusterForLoad {
  /** The running cluster (throws before the file's `beforeAll` started it). */
  readonly cluster: RedisCluster;
  /** Runs one command on one node. */
  call: NodeCall;
  /** A new {@link loadClient} of the cluster, disconnected after the file's tests. */
  client(): StreamsClient;
  /** The entry ids `stream` holds, from the master that owns it now. */
  readStream(stream: string): Promise<string[]>;
  /** Subscription reader connections on node `port`. */
  readers(port: number): Promise<number>;
}

/**
 * A 3-master / 3-replica cluster for a load spec: started before the file's tests, stopped after
 * them together with every client `client()` made. Call it at the top of the spec file (it
 * registers the file's `beforeAll`/`afterAll`).
 */
export function clusterForLoad(): ClusterForLoad {
  const hookTimeoutMs = 120_000;
  let started: RedisCluster | undefined;
  const clients: StreamsClient[] = [];
  beforeAll(async () => {
    started = await startCluster();
  }, hookTimeoutMs);
  afterAll(async () => {
    for (const c of clients) await c.disconnect();
    await started?.stop();
  }, hookTimeoutMs);
  const cluster = (): RedisCluster => {
    if (!started) throw new Error("the cluster is not started yet (use it inside a test)");
    return started;
  };
  const call: NodeCall = (port, ...args) => cluster().call(port, ...args);
  return {
    get cluster() {
      return cluster();
    },
    call,
    client: () => loadClient(`redis+cluster://${cluster().seedNodes.map((n) => `${n.host}:${n.port}`).join(",")}`, clients),
    readStream: async (stream) => entryIds(call, await cluster().masterForKey(stream), stream),
    readers: (port) => readerConnections(call, port),
  };
}

/** The entry ids `stream` holds on node `port`. */
export async function entryIds(call: NodeCall, port: number, stream: string): Promise<string[]> {
  const entries = (await call(port, "XRANGE", stream, "-", "+")) as [string, unknown][];
  return entries.map((e) => e[0]);
}

/** Subscription reader connections on node `port`: those other than the fixture's whose last command was XREAD. */
export async function readerConnections(call: NodeCall, port: number): Promise<number> {
  const list = parseClientList(String(await call(port, "CLIENT", "LIST")));
  return list.filter((c) => c.name !== FIXTURE_CLIENT_NAME && c.cmd === "xread").length;
}

/** What each published entry carries: its stream and its number within that stream. */
interface Payload {
  s: string;
  n: number;
}

/** One publish: its number within its stream and what `publishMessage` resolved to. */
interface Publish {
  n: number;
  id: string | null;
}

/**
 * A gap the client reported (a `warn` log record whose message names a gap): entries of
 * `stream` after `after` (its `cursor`) and before `before` (its `first_entry`) may be missing.
 * Without a first entry (a failover lost the stream's last entries) the gap ends at the report:
 * entries written later are not in it.
 */
export interface GapReport {
  stream: string;
  after: string;
  before?: string;
  /** When it was reported, ms since the epoch. */
  at: number;
  message: string;
}

/** The counts every failover test prints and the issue's closing note quotes. */
export interface LoadCounts {
  published: number;
  resolved: number;
  failOpen: number;
  /** Resolved publishes delivered to every subscription. */
  delivered: number;
  /** Resolved publishes some subscription did not get, inside a gap the client reported. */
  gapReported: number;
  /** Resolved publishes some subscription did not get, with no gap report covering them: must be 0. */
  lostUnreported: number;
  /** Deliveries of an id a subscription had already received: must be 0. */
  duplicates: number;
  /** Deliveries not in id order within a stream: must be 0. */
  outOfOrder: number;
  /** Entries a subscription got although their publish resolved null (written, then timed out): allowed. */
  deliveredFailOpen: number;
  /** Resolved publishes that still exist in the stream at the end. */
  inStream: number;
  /** Resolved publishes the streams no longer hold: the failover lost them (`resolved - inStream`). */
  lostInFailover: number;
  /** What the publishing client reported as lost (`counters.publishLost`): must equal `lostInFailover`. */
  reportedToPublisher: number;
  /** Of those, ones the group never handled: must be 0. */
  groupUnhandled: number;
  /** Group deliveries beyond the first of an id (at least once allows them). */
  groupRedelivered: number;
  /** Gap reports logged. */
  gapReports: number;
}

export interface LoadOptions {
  publisher: StreamsClient;
  subscriber: StreamsClient;
  /** The client that consumes with a group; none: no group consumption. */
  consumer?: StreamsClient;
  streams: string[];
  /** Subscriptions per stream on `subscriber`. Defaults to 2. */
  subscriptionsPerStream?: number;
  /** Pause between two publishes of one stream, in ms (the load's pace, not a wait). Defaults to 5. */
  paceMs?: number;
  /** Reads the entry ids a stream holds now (from its current master). */
  readStream: (stream: string) => Promise<string[]>;
}

/** Compares two `<ms>-<seq>` ids. */
export function compareIds(a: string, b: string): number {
  const [am, as] = a.split("-").map(BigInt) as [bigint, bigint];
  const [bm, bs] = b.split("-").map(BigInt) as [bigint, bigint];
  if (am !== bm) return am < bm ? -1 : 1;
  if (as !== bs) return as < bs ? -1 : 1;
  return 0;
}

const GROUP = "failover-load";
const SETTLE_MS = 30_000;

/** Messages of log records that report entries a subscription may have missed. */
const GAP_MESSAGE = /\bgap\b/i;

/** The gap a client log record reports (a `warn`/`error` record whose message names a gap), if any. */
export function gapReportOf(r: Record<string, unknown>): GapReport | undefined {
  const level = String(r.level).toLowerCase();
  if (level !== "warn" && level !== "error") return undefined;
  const message = String(r.message);
  if (!GAP_MESSAGE.test(message) || typeof r.stream !== "string" || typeof r.cursor !== "string") return undefined;
  const first = typeof r.first_entry === "string" && /^\d+-\d+$/.test(r.first_entry) ? r.first_entry : undefined;
  return { stream: r.stream, after: r.cursor, before: first, at: Date.parse(String(r.timestamp)), message };
}

/** Whether entry `id` of `stream` lies inside one of the reported `gaps`. */
export function inReportedGap(gaps: readonly GapReport[], stream: string, id: string): boolean {
  const ms = Number(id.split("-")[0]);
  return gaps.some((g) => g.stream === stream && compareIds(g.after, id) < 0 && (g.before === undefined ? ms <= g.at : compareIds(id, g.before) < 0));
}

export class FailoverLoad {
  private readonly publishes = new Map<string, Publish[]>();
  /** Per subscription (stream, index), the ids in delivery order. */
  private readonly deliveries = new Map<string, string[][]>();
  /** Per stream, id -> times the group handled it. */
  private readonly handled = new Map<string, Map<string, number>>();
  readonly gaps: GapReport[] = [];
  /** Log records at warn or above, for a failing test's message. */
  readonly warnings: string[] = [];
  private running = false;
  private loops: Promise<void>[] = [];
  private mismatches: string[] = [];

  private constructor(private readonly opts: LoadOptions) {}

  /**
   * Subscribes every stream, creates the group and starts its consumers, routes the client log
   * to the gap recorder, and starts publishing.
   */
  static async start(opts: LoadOptions): Promise<FailoverLoad> {
    const load = new FailoverLoad(opts);
    setLogger((r) => load.onLog(r));
    const perStream = opts.subscriptionsPerStream ?? 2;
    for (const stream of opts.streams) {
      load.publishes.set(stream, []);
      load.handled.set(stream, new Map());
      const inboxes: string[][] = [];
      load.deliveries.set(stream, inboxes);
      for (let i = 0; i < perStream; i++) {
        const inbox: string[] = [];
        inboxes.push(inbox);
        await opts.subscriber.subscribe<Payload>(stream, (m) => load.onMessage(stream, inbox, m));
      }
      if (opts.consumer) {
        if (!(await opts.consumer.createConsumerGroup(stream, GROUP, "$"))) throw new Error(`cannot create the group of ${stream}`);
        await opts.consumer.consumeFromGroup<Payload>(stream, GROUP, "worker", (m) => {
          const seen = load.handled.get(stream)!;
          seen.set(m.id, (seen.get(m.id) ?? 0) + 1);
        });
      }
    }
    load.running = true;
    load.loops = opts.streams.map((s) => load.publishLoop(s));
    return load;
  }

  private onLog(r: Record<string, unknown>): void {
    if (process.env.FAILOVER_LOAD_LOG) appendFileSync(process.env.FAILOVER_LOAD_LOG, `${JSON.stringify(r)}\n`);
    const level = String(r.level).toLowerCase();
    if (level !== "warn" && level !== "error") return;
    const message = String(r.message);
    this.warnings.push(`${level} ${message} ${JSON.stringify(r)}`);
    const gap = gapReportOf(r);
    if (gap) this.gaps.push(gap);
  }

  private onMessage(stream: string, inbox: string[], m: StreamMessage<Payload>): void {
    const d = m.data;
    const sent = this.publishes.get(stream)?.[d?.n];
    // A lost entry's id can be generated again by the promoted master for another entry.
    if (!d || d.s !== stream || (sent?.id != null && sent.id !== m.id)) this.mismatches.push(`${stream} ${m.id}: ${JSON.stringify(d)} published as ${sent?.id}`);
    inbox.push(m.id);
  }

  private async publishLoop(stream: string): Promise<void> {
    const list = this.publishes.get(stream)!;
    const pace = this.opts.paceMs ?? 5;
    while (this.running) {
      const entry: Publish = { n: list.length, id: null };
      list.push(entry);
      entry.id = await this.opts.publisher.publishMessage(stream, { s: stream, n: entry.n } satisfies Payload);
      await new Promise((r) => setTimeout(r, pace));
    }
  }

  /** Resolved publishes so far, over all streams. */
  resolvedCount(): number {
    let n = 0;
    for (const list of this.publishes.values()) n += list.filter((p) => p.id !== null).length;
    return n;
  }

  /**
   * Waits until, on every stream, `atLeast` publishes made after this call resolved with an id,
   * were delivered to every subscription and handled by the group: the load runs (resumed by
   * itself).
   */
  async waitResumed(what: string, atLeast = 1): Promise<void> {
    const marks = new Map([...this.publishes].map(([s, l]) => [s, l.length]));
    const resumed = waitFor(`${what}: publishing, subscriptions and the group resume on every stream`, SETTLE_MS, async () => {
      for (const [stream, list] of this.publishes) {
        // Counted, not the first ones: a publish that resolved just before the client followed
        // a failover may have gone to the old primary and be lost.
        const fresh = list.slice(marks.get(stream)).filter((p) => p.id !== null);
        const inboxes = this.deliveries.get(stream)!.map((inbox) => new Set(inbox));
        const handled = this.handled.get(stream)!;
        const through = fresh.filter((p) => inboxes.every((s) => s.has(p.id!)) && (!this.opts.consumer || handled.has(p.id!)));
        if (through.length < atLeast) {
          notYet(`${stream}: ${through.length} of ${atLeast} publishes since the mark resolved with an id, were delivered to every subscription and handled by the group (${fresh.length} resolved)`);
        }
      }
      return true;
    });
    await resumed.catch((err: Error) => {
      throw new Error(`${err.message}\nlast warnings:\n${this.warnings.slice(-20).join("\n")}`);
    });
  }

  /** Stops publishing and waits for the publishes in flight. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  private covered(stream: string, id: string): boolean {
    return inReportedGap(this.gaps, stream, id);
  }

  /** The counts as they stand now (`stored`: the ids each stream holds now). */
  private count(stored: Map<string, Set<string>>): LoadCounts {
    const c: LoadCounts = {
      published: 0, resolved: 0, failOpen: 0, delivered: 0, gapReported: 0, lostUnreported: 0, duplicates: 0, outOfOrder: 0,
      deliveredFailOpen: 0, inStream: 0, lostInFailover: 0, groupUnhandled: 0, groupRedelivered: 0, gapReports: this.gaps.length,
      reportedToPublisher: this.opts.publisher.getStatus().counters.publishLost,
    };
    for (const [stream, list] of this.publishes) {
      const inboxes = this.deliveries.get(stream)!;
      const sets = inboxes.map((inbox) => new Set(inbox));
      for (const inbox of inboxes) {
        c.duplicates += inbox.length - new Set(inbox).size;
        for (let i = 1; i < inbox.length; i++) if (compareIds(inbox[i - 1]!, inbox[i]!) >= 0) c.outOfOrder++;
      }
      const resolvedIds = new Set<string>();
      for (const p of list) {
        c.published++;
        if (p.id === null) {
          c.failOpen++;
          continue;
        }
        c.resolved++;
        resolvedIds.add(p.id);
        if (sets.every((s) => s.has(p.id!))) c.delivered++;
        else if (this.covered(stream, p.id)) c.gapReported++;
        else c.lostUnreported++;
        if (stored.get(stream)?.has(p.id)) {
          c.inStream++;
          if (!this.handled.get(stream)!.has(p.id) && this.opts.consumer) c.groupUnhandled++;
        }
      }
      for (const id of new Set(inboxes.flat())) if (!resolvedIds.has(id)) c.deliveredFailOpen++;
      c.lostInFailover = c.resolved - c.inStream;
      for (const times of this.handled.get(stream)!.values()) c.groupRedelivered += times - 1;
    }
    return c;
  }

  /**
   * Stops the load, waits until every resolved publish is delivered or reported as a gap and
   * every one still in its stream was handled by the group (or until that stops being likely:
   * the counts then show what is missing), prints the summary line and returns the counts.
   */
  async finish(label: string): Promise<LoadCounts> {
    await this.stop();
    let counts: LoadCounts | undefined;
    const readAll = async (): Promise<Map<string, Set<string>>> =>
      new Map(await Promise.all(this.opts.streams.map(async (s) => [s, new Set(await this.opts.readStream(s))] as const)));
    try {
      await waitFor(`${label}: every resolved publish accounted for`, SETTLE_MS, async () => {
        counts = this.count(await readAll());
        if (counts.lostUnreported > 0) notYet(`${counts.lostUnreported} resolved publishes neither delivered nor in a reported gap`);
        if (counts.groupUnhandled > 0) notYet(`${counts.groupUnhandled} entries in the streams not handled by the group`);
        if (counts.reportedToPublisher !== counts.lostInFailover) {
          notYet(`the publisher reported ${counts.reportedToPublisher} lost publishes, the streams lack ${counts.lostInFailover}`);
        }
        return true;
      });
    } catch {
      // The assertions on the counts say what is missing.
    }
    counts = this.count(await readAll());
    setLogger(null);
    console.log(
      `[failover-counts] ${label}: published=${counts.published} resolved=${counts.resolved} fail-open=${counts.failOpen} ` +
        `delivered=${counts.delivered} gap-reported=${counts.gapReported} lost-unreported=${counts.lostUnreported} ` +
        `duplicates=${counts.duplicates} out-of-order=${counts.outOfOrder} delivered-fail-open=${counts.deliveredFailOpen} ` +
        `lost-in-failover=${counts.lostInFailover} reported-to-publisher=${counts.reportedToPublisher} ` +
        `group: in-stream=${counts.inStream} unhandled=${counts.groupUnhandled} redelivered=${counts.groupRedelivered} gap-reports=${counts.gapReports}`,
    );
    return counts;
  }

  /** Deliveries whose payload did not match the publish of that number (an id reused for another entry). */
  get payloadMismatches(): string[] {
    return this.mismatches;
  }
}
