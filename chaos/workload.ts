// The chaos run's workload and its checker: several clients publish (one with an offline buffer,
// one without), one subscribes every stream from four kinds of start ids, two consume every
// stream in one group (a callback consumer and a `consume()` iterator). Everything each of them
// saw is recorded; `check()` holds it against what Redis has at the end (Jepsen's way: the
// invariants are checked over the whole history, not at each step).
import { StreamsClient, type StreamMessage, type StreamsClientConfig } from "../index.js";
import { compareIds, inReportedGap, type GapReport } from "../__test__/helpers/failover-load.js";
import { notYet, waitFor } from "../__test__/helpers/until.js";

/** What the workload needs from the topology it runs on. */
export interface Store {
  /** The URL every client of the workload uses. */
  url: string;
  /** The ids `stream` holds now, from its current primary. */
  entryIds(stream: string): Promise<string[]>;
  /** Entries of `stream` pending in `group` (XPENDING's count), from its current primary. */
  pending(stream: string, group: string): Promise<number>;
}

/** A publish and what it resolved to (`undefined` while in flight). */
interface Publish {
  publisher: string;
  n: number;
  id: string | null | undefined;
}

/** The kinds of start ids the subscriptions use. */
export type StartKind = "$" | "0" | "behind" | "ahead";

interface Sub {
  stream: string;
  kind: StartKind;
  /** Entries with an id above this one are owed to it. */
  after: string;
  inbox: string[];
}

interface Payload {
  s: string;
  p: string;
  n: number;
}

/** The counts a chaos run prints; the `must be 0` ones are its invariants. */
export interface Counts {
  published: number;
  resolved: number;
  failOpen: number;
  deliveries: number;
  /** Resolved publishes owed to a subscription, missing there, inside a gap the client reported. */
  gapReported: number;
  /** Resolved publishes owed to a subscription, missing there, with no gap report: must be 0. */
  lostUnreported: number;
  /** Deliveries of an id a subscription already had: must be 0. */
  duplicates: number;
  /** Deliveries not in id order within a subscription: must be 0. */
  outOfOrder: number;
  /** Deliveries of an id at or before the subscription's start id: must be 0. */
  beforeStart: number;
  /** Resolved publishes the streams no longer hold (lost by a failover or a restart), trims aside. */
  lostByServer: number;
  /** Of those, ones still within their publisher's ledger when lost (the newest 1,000 per stream). */
  lostReportable: number;
  /** What the publishing clients reported lost (`counters.publishLost`): at least `lostReportable`. */
  reportedLost: number;
  /** Resolved publishes still in their stream that no group consumer handled: must be 0. */
  groupUnhandled: number;
  /** Group deliveries beyond the first of an id (at least once allows them). */
  groupRedelivered: number;
  /** Entries left pending in the group at the end: must be 0. */
  groupPending: number;
  /** Gap reports logged. */
  gapReports: number;
  /** Errors the library threw at the workload (an iterator ended, a publish rejected): must be 0. */
  libraryErrors: number;
  /** Deliveries whose payload belongs to another publish (an id a failover gave away again). */
  reusedIds: number;
}

export const GROUP = "chaos";
/** History written before the subscriptions start, so "0" and "behind" have something to replay. */
const HISTORY = 20;
/**
 * Ids each publishing client remembers per stream to report what a server lost
 * (`IDS_PER_STREAM` in src/connection/ledger.rs): a loss older than that is not reportable.
 */
const LEDGER_IDS = 1_000;
/**
 * How long after the load resumed from a fault that can lose data its publishers' audits may
 * still run (src/connection/audit.rs): they wait commandTimeoutMs (1 s by default), then try
 * up to 5 times, each within commandTimeoutMs, reconnectMaxDelayMs (500 ms here) apart.
 */
const AUDIT_WINDOW_MS = 1_000 + 5 * 1_000 + 4 * 500;
/** How far ahead of now an "ahead" subscription starts. */
const AHEAD_MS = 3_000;

/** The client options every workload client shares (fast reconnects, no auto-trim). */
const BASE: StreamsClientConfig = { enableAutoTrim: false, reconnectMaxDelayMs: 500, logLevel: "warn" };

export class Workload {
  private readonly publishes = new Map<string, Publish[]>();
  private readonly subs: Sub[] = [];
  /** Per stream, id -> times a group consumer handled it. */
  private readonly handled = new Map<string, Map<string, number>>();
  /** Per stream, the ids the chaos run's trims removed. */
  private readonly trimmedIds = new Map<string, Set<string>>();
  /**
   * Per stream, trims made while the publishers' audits of a fault that can lose data may
   * still run (see AUDIT_WINDOW_MS): the newest id each removed, and the publish count at
   * that fault.
   */
  private readonly trimsAfterLoss = new Map<string, { newest: string; lossMark: number }[]>();
  /** Faults that can lose data: their publish count per stream, and when the load resumed. */
  private readonly losses: { marks: Map<string, number>; resumedAt?: number }[] = [];
  private readonly reused: string[] = [];
  /** Per stream, the publish count at each fault that can lose data (see `faultStarts`). */
  private readonly lossPoints = new Map<string, number[]>();
  /** Errors the library threw at the workload (an iterator that ended, a publish that rejected). */
  readonly failures: string[] = [];
  /** A few examples of each violation of the last count, for the report. */
  examples: string[] = [];
  private readonly clients: StreamsClient[] = [];
  private readonly publishers: { name: string; client: StreamsClient }[] = [];
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly iterators: AbortController[] = [];

  private constructor(
    private readonly store: Store,
    readonly streams: string[],
    private readonly gaps: GapReport[],
  ) {}

  /** Creates the clients, writes some history, subscribes, starts consumers and publishing. */
  static async start(store: Store, streams: string[], gaps: GapReport[]): Promise<Workload> {
    const w = new Workload(store, streams, gaps);
    const client = (extra: StreamsClientConfig = {}): StreamsClient => {
      const c = new StreamsClient({ redisUrl: store.url, ...BASE, ...extra });
      w.clients.push(c);
      return c;
    };
    w.publishers.push({ name: "buffered", client: client({ offlineBuffer: 10_000 }) });
    w.publishers.push({ name: "direct", client: client() });
    const subscriber = client({ defaultBlockMs: 500 });
    const consumer = client({ defaultBlockMs: 500 });
    const iterating = client({ defaultBlockMs: 500 });
    for (const c of w.clients) await c.connect();

    for (const stream of streams) {
      w.publishes.set(stream, []);
      w.handled.set(stream, new Map());
      const history: string[] = [];
      for (let i = 0; i < HISTORY; i++) {
        const id = await w.publishOnce(stream, w.publishers[1]!);
        if (id === null) throw new Error(`${stream}: a history publish failed before any fault`);
        history.push(id);
      }
      const starts: [StartKind, string][] = [
        ["$", history.at(-1)!],
        ["0", "0-0"],
        ["behind", history[HISTORY / 2]!],
        ["ahead", `${Date.now() + AHEAD_MS}-0`],
      ];
      for (const [kind, after] of starts) {
        const sub: Sub = { stream, kind, after, inbox: [] };
        w.subs.push(sub);
        await subscriber.subscribe<Payload>(stream, (m) => w.delivered(sub, m), { startId: kind === "$" ? "$" : after });
      }
      await w.createGroup(consumer, stream);
      await consumer.consumeFromGroup<Payload>(stream, GROUP, "callback", (m) => w.handle(stream, m.id));
      w.iterate(iterating, stream);
    }
    w.running = true;
    w.loops = streams.flatMap((s) => w.publishers.map((p) => w.publishLoop(s, p)));
    return w;
  }

  private async createGroup(client: StreamsClient, stream: string): Promise<void> {
    if (!(await client.createConsumerGroup(stream, GROUP, "0"))) throw new Error(`cannot create the group of ${stream}`);
  }

  /** Creates the group of every stream again (after a server restarted empty); an existing one is kept. */
  async createGroups(): Promise<void> {
    for (const stream of this.streams) await this.createGroup(this.publishers[1]!.client, stream);
  }

  private iterate(client: StreamsClient, stream: string): void {
    const abort = new AbortController();
    this.iterators.push(abort);
    void (async () => {
      for await (const m of client.consume<Payload>(stream, GROUP, "iterator", { signal: abort.signal })) {
        this.handle(stream, m.id);
        await m.ack();
      }
    })().catch((err: unknown) => {
      // A `for await` loop of an application ends here: that is a failure of the library.
      if (!abort.signal.aborted) this.failures.push(`${stream}: the consume() iterator threw ${String(err)} (code ${(err as { code?: string }).code})`);
    });
  }

  private handle(stream: string, id: string): void {
    const seen = this.handled.get(stream)!;
    seen.set(id, (seen.get(id) ?? 0) + 1);
  }

  private delivered(sub: Sub, m: StreamMessage<Payload>): void {
    const d = m.data;
    const sent = d ? this.publishes.get(sub.stream)?.find((p) => p.publisher === d.p && p.n === d.n) : undefined;
    if (sent?.id && sent.id !== m.id) this.reused.push(`${sub.stream} ${m.id}: ${JSON.stringify(d)} was published as ${sent.id}`);
    sub.inbox.push(m.id);
  }

  private async publishOnce(stream: string, p: { name: string; client: StreamsClient }): Promise<string | null> {
    const list = this.publishes.get(stream)!;
    const entry: Publish = { publisher: p.name, n: list.length, id: undefined };
    list.push(entry);
    try {
      entry.id = await p.client.publishMessage(stream, { s: stream, p: p.name, n: entry.n } satisfies Payload);
    } catch (err) {
      // Publishing fails open: a rejection is a failure of the library, not of the server.
      this.failures.push(`${stream}: publishMessage rejected: ${String(err)} (code ${(err as { code?: string }).code})`);
      entry.id = null;
    }
    return entry.id;
  }

  private async publishLoop(stream: string, p: { name: string; client: StreamsClient }): Promise<void> {
    while (this.running) {
      await this.publishOnce(stream, p);
      // The load's pace, not a wait for anything.
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /**
   * Marks the start of a fault; `loses`: it can lose acknowledged data (a restart without
   * persistence, a failover).
   */
  faultStarts(loses: boolean): void {
    if (!loses) return;
    const marks = new Map<string, number>();
    for (const [stream, list] of this.publishes) {
      const points = this.lossPoints.get(stream) ?? [];
      points.push(list.length);
      this.lossPoints.set(stream, points);
      marks.set(stream, list.length);
    }
    this.losses.push({ marks });
  }

  /** Marks the end of a fault's recovery (the load resumed on every stream). */
  faultRecovered(): void {
    const last = this.losses.at(-1);
    if (last && last.resumedAt === undefined) last.resumedAt = Date.now();
  }

  /**
   * Whether the publisher of `list[index]` must report its loss: fewer than LEDGER_IDS later
   * publishes of that client resolved before the last fault that could have lost it (which
   * one did is not known; the last one is the latest its publisher could have been asked).
   */
  private reportable(stream: string, list: Publish[], index: number): boolean {
    const point = (this.lossPoints.get(stream) ?? []).filter((m) => m > index).at(-1) ?? list.length;
    const publisher = list[index]!.publisher;
    let later = 0;
    for (let i = index + 1; i < point; i++) if (list[i]!.publisher === publisher && list[i]!.id) later++;
    return later < LEDGER_IDS;
  }

  /** Records a trim made by the chaos run: the entries `gone` left `stream` on purpose. */
  trimmed(stream: string, gone: string[]): void {
    const set = this.trimmedIds.get(stream) ?? new Set<string>();
    for (const id of gone) set.add(id);
    this.trimmedIds.set(stream, set);
    const newest = gone.at(-1);
    if (newest === undefined) return;
    const now = Date.now();
    for (const loss of this.losses) {
      const lossMark = loss.marks.get(stream);
      if (lossMark === undefined || (loss.resumedAt !== undefined && now > loss.resumedAt + AUDIT_WINDOW_MS)) continue;
      const list = this.trimsAfterLoss.get(stream) ?? [];
      list.push({ newest, lossMark });
      this.trimsAfterLoss.set(stream, list);
    }
  }

  /**
   * Waits until, on every stream, `atLeast` publishes made after this call resolved, reached
   * every subscription owed them and a group consumer: the workload runs again after a fault.
   */
  async waitResumed(what: string, timeoutMs: number, atLeast = 3): Promise<void> {
    const marks = new Map([...this.publishes].map(([s, l]) => [s, l.length]));
    await waitFor(`${what}: publishing, subscriptions and the group resume on every stream`, timeoutMs, async () => {
      for (const [stream, list] of this.publishes) {
        const fresh = list.slice(marks.get(stream)).filter((p) => p.id);
        const subs = this.subs.filter((s) => s.stream === stream).map((s) => ({ s, inbox: new Set(s.inbox) }));
        const handled = this.handled.get(stream)!;
        const through = fresh.filter((p) => subs.every(({ s, inbox }) => compareIds(p.id!, s.after) <= 0 || inbox.has(p.id!)) && handled.has(p.id!));
        if (through.length < atLeast) notYet(`${stream}: ${through.length} of ${atLeast} fresh publishes went all the way (${fresh.length} resolved)`);
      }
      return true;
    });
  }

  /**
   * Stops publishing and waits for the publishes in flight (a parked one resolves when Redis is
   * back); one still unresolved after `timeoutMs` is a library error (a promise that never
   * settles hangs a request handler).
   */
  async stopPublishing(timeoutMs: number): Promise<void> {
    this.running = false;
    const done = Promise.all(this.loops).then(() => true);
    const late = new Promise<false>((r) => setTimeout(() => r(false), timeoutMs));
    if (await Promise.race([done, late])) return;
    for (const [stream, list] of this.publishes) {
      for (const p of list) if (p.id === undefined) this.failures.push(`${stream}: publish ${p.publisher} #${p.n} unresolved ${timeoutMs} ms after publishing stopped`);
    }
  }

  private async count(): Promise<Counts> {
    const c: Counts = {
      published: 0, resolved: 0, failOpen: 0, deliveries: 0, gapReported: 0, lostUnreported: 0, duplicates: 0, outOfOrder: 0,
      beforeStart: 0, lostByServer: 0, lostReportable: 0, reportedLost: 0, groupUnhandled: 0, groupRedelivered: 0, groupPending: 0,
      gapReports: this.gaps.length, reusedIds: this.reused.length, libraryErrors: this.failures.length,
    };
    const examples = new Map<string, string[]>();
    const example = (kind: string, text: string): void => {
      const list = examples.get(kind) ?? [];
      if (list.length < 4) list.push(text);
      examples.set(kind, list);
    };
    for (const p of this.publishers) c.reportedLost += p.client.getStatus().counters.publishLost;
    for (const sub of this.subs) {
      c.deliveries += sub.inbox.length;
      c.duplicates += sub.inbox.length - new Set(sub.inbox).size;
      for (let i = 1; i < sub.inbox.length; i++) if (compareIds(sub.inbox[i - 1]!, sub.inbox[i]!) >= 0) c.outOfOrder++;
      const early = sub.inbox.filter((id) => compareIds(id, sub.after) <= 0);
      c.beforeStart += early.length;
      if (early.length > 0) example("beforeStart", `${sub.stream} (${sub.kind}, after ${sub.after}): ${early.length}, first ${early[0]}`);
    }
    for (const [stream, list] of this.publishes) {
      const stored = new Set(await this.store.entryIds(stream));
      const trimmed = this.trimmedIds.get(stream) ?? new Set<string>();
      const subs = this.subs.filter((s) => s.stream === stream).map((s) => ({ s, inbox: new Set(s.inbox) }));
      const handled = this.handled.get(stream)!;
      for (const [index, p] of list.entries()) {
        c.published++;
        if (!p.id) {
          c.failOpen++;
          continue;
        }
        c.resolved++;
        // An entry the server lost before a subscription read it is the publisher's to report
        // (no reader can see a loss of entries it never saw); one still there or trimmed is
        // the subscription's: delivered, or inside a gap it reported.
        const lostByServer = !stored.has(p.id) && !trimmed.has(p.id);
        for (const { s, inbox } of subs) {
          if (compareIds(p.id, s.after) <= 0 || inbox.has(p.id) || lostByServer) continue;
          if (inReportedGap(this.gaps, stream, p.id)) c.gapReported++;
          else {
            c.lostUnreported++;
            example("lostUnreported", `${stream} ${p.id} (${p.publisher} #${p.n}) not delivered to the ${s.kind} subscription${stored.has(p.id) ? "" : ", trimmed"}`);
          }
        }
        if (stored.has(p.id)) {
          if (!handled.has(p.id)) {
            c.groupUnhandled++;
            example("groupUnhandled", `${stream} ${p.id}`);
          }
        } else if (!trimmed.has(p.id)) {
          c.lostByServer++;
          // A publisher's audit cannot tell an id of its own below the first entry of a
          // stream that has since removed entries from one a trim took (the stream may be a
          // new one, written again after a restart): a lost id at or below the newest a trim
          // removed while the audit of a later fault that could have lost it may still run is
          // not counted as reportable.
          const ambiguous = (this.trimsAfterLoss.get(stream) ?? []).some((t) => t.lossMark > index && compareIds(p.id!, t.newest) <= 0);
          if (!ambiguous && this.reportable(stream, list, index)) {
            c.lostReportable++;
            example("lostReportable", `${stream} ${p.id} (${p.publisher} #${p.n} of ${list.length})`);
          }
        }
      }
      for (const times of handled.values()) c.groupRedelivered += times - 1;
      const pendingNow = await this.store.pending(stream, GROUP);
      c.groupPending += pendingNow;
      if (pendingNow > 0) example("groupPending", `${stream}: ${pendingNow}`);
    }
    if (this.failures.length > 0) examples.set("libraryErrors", this.failures.slice(0, 4));
    this.examples = [...examples].map(([k, v]) => `${k}: ${v.join("; ")}`);
    return c;
  }

  /** Problems in `c`: the invariants a chaos run must hold. */
  static violations(c: Counts): string[] {
    const out: string[] = [];
    if (c.lostUnreported > 0) out.push(`${c.lostUnreported} resolved publishes missing from a subscription with no gap report`);
    if (c.duplicates > 0) out.push(`${c.duplicates} duplicate deliveries`);
    if (c.outOfOrder > 0) out.push(`${c.outOfOrder} deliveries out of id order`);
    if (c.beforeStart > 0) out.push(`${c.beforeStart} deliveries at or before the subscription's start id`);
    if (c.groupUnhandled > 0) out.push(`${c.groupUnhandled} entries in the streams no group consumer handled`);
    if (c.libraryErrors > 0) out.push(`${c.libraryErrors} errors thrown by the library`);
    if (c.groupPending > 0) out.push(`${c.groupPending} entries left pending in the group`);
    if (c.reportedLost < c.lostReportable) out.push(`the servers lost ${c.lostReportable} resolved publishes the publishers could report (${c.lostByServer} in all), they reported ${c.reportedLost}`);
    return out;
  }

  /**
   * Stops the load and waits (up to `settleMs`) until the invariants hold; returns the counts
   * as they stand then (a violation that did not settle stays in them).
   */
  async finish(settleMs: number): Promise<Counts> {
    await this.stopPublishing(settleMs);
    let counts = await this.count();
    try {
      await waitFor("every invariant holds", settleMs, async () => {
        counts = await this.count();
        const v = Workload.violations(counts);
        return v.length === 0 ? true : notYet(v.join("; "));
      });
    } catch {
      // The caller reports the violations in the counts.
    }
    return counts;
  }

  /** Ends the iterators and disconnects every client. */
  async close(): Promise<void> {
    for (const a of this.iterators) a.abort();
    await Promise.all(this.clients.map((c) => c.disconnect()));
  }

  /** Examples of ids a failover gave to another entry (for the report). */
  get reusedIds(): string[] {
    return this.reused;
  }
}
