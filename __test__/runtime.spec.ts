// The addon's own JavaScript (src/js/runtime/*.js) on its own, without the addon or Redis: the
// trampoline's ordering and reports, the delivery hub's parse-once cache, and the iterator's
// backpressure and ending. The addon evaluates the same files (include_str!).
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runInThisContext } from "node:vm";
import { afterEach, describe, expect, test, vi } from "vitest";

interface Message {
  id: string;
  data: unknown;
}
type Report = null | string[];
interface Trampoline {
  deliver(batch: Message[], from: number): Report | Promise<Report>;
  stop(): void;
}
interface Deliveries {
  add(key: number, callback: (m: Message) => unknown, concurrency: number): void;
  stop(key: number): boolean;
  dispatch(released: number[], items: unknown[]): Array<Report | Promise<Report>>;
  cached(): number;
  size(): number;
}
interface Runtime {
  stringify(v: unknown): string | [string];
  stringifyLines(items: unknown[]): string | [number, string];
  trampoline(cb: (m: Message) => unknown, concurrency: number): Trampoline;
  createDeliveries(): Deliveries;
  streamIterator(client: unknown, stream: string, options?: unknown): AsyncIterableIterator<Message>;
}

const here = dirname(fileURLToPath(import.meta.url));
// The pieces in the order src/js/runtime.rs evaluates them, each given what the earlier ones
// returned.
const PIECES = ["json", "trampoline", "deliveries", "iterators", "process", "tracing"];
const runtime = {} as Runtime;
for (const name of PIECES) {
  const source = readFileSync(resolve(here, "..", "src", "js", "runtime", `${name}.js`), "utf8");
  const piece = runInThisContext(source, { filename: `streamcast/runtime/${name}.js` }) as (r: Runtime) => object;
  Object.assign(runtime, piece(runtime));
}

const batch = (...ids: number[]): Message[] => ids.map((n) => ({ id: `${n}-0`, data: n }));
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

afterEach(() => vi.restoreAllMocks());

describe("stringify", () => {
  test("bigints become decimal strings; values without JSON give a reason", () => {
    expect(runtime.stringify({ n: 10n ** 20n })).toBe('{"n":"100000000000000000000"}');
    expect(runtime.stringify(undefined)).toEqual(["undefined cannot be represented as JSON"]);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(Array.isArray(runtime.stringify(cyclic))).toBe(true);
    expect(runtime.stringifyLines([1, "a\nb", { c: 2n }])).toBe('1\n"a\\nb"\n{"c":"2"}');
    expect(runtime.stringifyLines([1, () => 1])).toEqual([1, "function cannot be represented as JSON"]);
  });
});

describe("trampoline", () => {
  test("plain callbacks: reports at once, null when all succeeded", () => {
    const seen: string[] = [];
    const t = runtime.trampoline((m) => void seen.push(m.id), 1);
    expect(t.deliver(batch(1, 2, 3), 0)).toBeNull();
    expect(seen).toEqual(["1-0", "2-0", "3-0"]);
  });

  test("starts at `from`; handled counts from there", () => {
    const seen: string[] = [];
    const t = runtime.trampoline((m) => void seen.push(m.id), 1);
    expect(t.deliver(batch(1, 2, 3, 4), 2)).toBeNull();
    expect(seen).toEqual(["3-0", "4-0"]);
  });

  test("a throwing callback is reported with its id and the batch goes on", () => {
    const t = runtime.trampoline((m) => {
      if (m.id === "2-0") throw new Error("boom");
    }, 1);
    const report = t.deliver(batch(1, 2, 3), 0) as string[];
    expect(report[0]).toBe("3");
    expect(report[1]).toBe("2-0");
    expect(report[2]).toContain("boom");
    // Named functions of the runtime show in the stack.
    expect(report[2]).toMatch(/callFrom \(streamcast\/runtime\/trampoline\.js/);
  });

  test("async callbacks run one at a time, batches strictly in arrival order", async () => {
    const log: string[] = [];
    let active = 0;
    let maxActive = 0;
    const t = runtime.trampoline(async (m) => {
      active++;
      maxActive = Math.max(maxActive, active);
      log.push(`start ${m.id}`);
      await tick();
      log.push(`end ${m.id}`);
      active--;
    }, 1);
    const first = t.deliver(batch(1, 2), 0);
    const second = t.deliver(batch(3), 0);
    expect(first).toBeInstanceOf(Promise);
    expect(await first).toBeNull();
    expect(await second).toBeNull();
    expect(maxActive).toBe(1);
    expect(log).toEqual(["start 1-0", "end 1-0", "start 2-0", "end 2-0", "start 3-0", "end 3-0"]);
  });

  test("stop(): no callback starts afterwards; the report says how many were handed over", async () => {
    const seen: string[] = [];
    let t: Trampoline;
    t = runtime.trampoline(async (m) => {
      seen.push(m.id);
      if (m.id === "2-0") t.stop();
      await tick();
    }, 1);
    expect(await t.deliver(batch(1, 2, 3, 4), 0)).toEqual(["2"]);
    expect(seen).toEqual(["1-0", "2-0"]);
  });

  test("concurrency: up to n callbacks at once", async () => {
    let active = 0;
    let maxActive = 0;
    const t = runtime.trampoline(async () => {
      active++;
      maxActive = Math.max(maxActive, active);
      await tick();
      await tick();
      active--;
    }, 3);
    expect(await t.deliver(batch(1, 2, 3, 4, 5, 6, 7), 0)).toBeNull();
    expect(maxActive).toBe(3);
  });
});

describe("delivery hub", () => {
  const json = (ids: number[]): string => JSON.stringify(batch(...ids));

  test("a read handed to 1,000 subscriptions is parsed once; each gets its tail from `from`", () => {
    const hub = runtime.createDeliveries();
    const got = new Map<number, string[]>();
    for (let k = 1; k <= 1000; k++) {
      got.set(k, []);
      hub.add(k, (m) => void got.get(k)!.push(m.id), 1);
    }
    const parse = vi.spyOn(JSON, "parse");
    const items: unknown[] = [];
    for (let k = 1; k <= 1000; k++) items.push(k, 7, k === 1 ? json([1, 2, 3]) : null, k % 2);
    const reports = hub.dispatch([], items);
    expect(parse).toHaveBeenCalledTimes(1);
    expect(reports.every((r) => r === null)).toBe(true);
    expect(got.get(1)).toEqual(["2-0", "3-0"]);
    expect(got.get(2)).toEqual(["1-0", "2-0", "3-0"]);
    // The same objects for every subscription, as an EventEmitter does.
    expect(hub.cached()).toBe(1);
    hub.dispatch([7], []);
    expect(hub.cached()).toBe(0);
  });

  test("a stopped loop gets nothing and reports zero handed over; stop hooks run", () => {
    const hub = runtime.createDeliveries();
    const seen: string[] = [];
    const callback = Object.assign((m: Message) => void seen.push(m.id), {});
    hub.add(1, callback, 1);
    expect(hub.stop(1)).toBe(true);
    expect(hub.stop(1)).toBe(false);
    expect(hub.dispatch([], [1, 1, json([1]), 0])).toEqual([["0"]]);
    expect(seen).toEqual([]);
    expect(hub.size()).toBe(0);
  });

  test("a read given in parts arrives whole; entries that could not cross are failures, not callbacks", () => {
    for (const concurrency of [1, 3]) {
      const hub = runtime.createDeliveries();
      const seen: string[] = [];
      hub.add(1, (m) => void seen.push(m.id), concurrency);
      const parts = [json([1, 2]), ["too long", "3-0"], json([4])];
      const [r] = hub.dispatch([], [1, 5, parts, 1]);
      if (concurrency === 1) expect(r).toEqual(["3", "3-0", "too long"]);
      expect(seen).toEqual(["2-0", "4-0"]);
    }
  });

  test("a read neither cached nor given is a failed batch, not a crash", async () => {
    const hub = runtime.createDeliveries();
    hub.add(1, () => {}, 1);
    const [r] = hub.dispatch([], [1, 99, null, 0]);
    await expect(r).rejects.toThrow(/read 99/);
  });
});

describe("stream iterator (with a fake client)", () => {
  /** A client whose subscribe() hands the callback to the test. */
  function fakeClient() {
    const state = {
      callback: null as null | ((m: Message) => unknown),
      unsubscribed: 0,
      subscribeOptions: undefined as unknown,
    };
    const client = {
      async subscribe(_stream: string, cb: (m: Message) => unknown, options: unknown) {
        state.callback = cb;
        state.subscribeOptions = options;
        return { unsubscribe: () => void state.unsubscribed++ };
      },
    };
    return { client, state };
  }

  test("backpressure: the callback waits once highWaterMark messages are unread", async () => {
    const { client, state } = fakeClient();
    const it = runtime.streamIterator(client, "s", { highWaterMark: 2, count: 5 });
    const first = it.next();
    await tick();
    expect(state.subscribeOptions).toEqual({ count: 5 });
    expect(state.callback!({ id: "1-0", data: 1 })).toBeUndefined();
    expect((await first).value).toEqual({ id: "1-0", data: 1 });
    expect(state.callback!({ id: "2-0", data: 2 })).toBeUndefined();
    const paused = state.callback!({ id: "3-0", data: 3 }) as Promise<void>;
    expect(paused).toBeInstanceOf(Promise);
    let resumed = false;
    void paused.then(() => (resumed = true));
    await tick();
    expect(resumed).toBe(false);
    expect((await it.next()).value).toEqual({ id: "2-0", data: 2 });
    await tick();
    expect(resumed).toBe(true);
    expect((await it.next()).value).toEqual({ id: "3-0", data: 3 });
  });

  test("return() ends the subscription; an aborted signal ends the loop normally", async () => {
    const { client, state } = fakeClient();
    const it = runtime.streamIterator(client, "s");
    await tick();
    expect(await it.return!()).toEqual({ value: undefined, done: true });
    expect(state.unsubscribed).toBe(1);

    const b = fakeClient();
    const ac = new AbortController();
    const it2 = runtime.streamIterator(b.client, "s", { signal: ac.signal });
    const pending = it2.next();
    await tick();
    ac.abort();
    expect(await pending).toEqual({ value: undefined, done: true });
    await tick();
    expect(b.state.unsubscribed).toBe(1);

    const c = fakeClient();
    const aborted = AbortSignal.abort();
    const it3 = runtime.streamIterator(c.client, "s", { signal: aborted });
    expect(await it3.next()).toEqual({ value: undefined, done: true });
    expect(c.state.callback).toBeNull();
  });

  test("return() while subscribe() is still pending waits for it and then unsubscribes", async () => {
    // Messages can arrive before subscribe() resolves (startId "0" reads at once).
    let unsubscribed = 0;
    let callback: ((m: Message) => unknown) | null = null;
    let resolveSubscribe!: () => void;
    const client = {
      subscribe(_s: string, cb: (m: Message) => unknown) {
        callback = cb;
        return new Promise((r) => (resolveSubscribe = () => r({ unsubscribe: () => void unsubscribed++ })));
      },
    };
    const it = runtime.streamIterator(client, "s");
    await tick();
    callback!({ id: "1-0", data: 1 });
    expect((await it.next()).value).toEqual({ id: "1-0", data: 1 });
    let returned = false;
    const ret = it.return!().then(() => (returned = true));
    await tick();
    expect(returned).toBe(false);
    resolveSubscribe();
    await ret;
    expect(unsubscribed).toBe(1);
    expect(await it.next()).toEqual({ value: undefined, done: true });
  });

  test("a failed start rejects next(); bad options throw at once", async () => {
    const client = {
      subscribe: () => Promise.reject(Object.assign(new Error("closed"), { code: "ERR_CLOSED" })),
    };
    await expect(runtime.streamIterator(client, "s").next()).rejects.toMatchObject({ code: "ERR_CLOSED" });
    expect(() => runtime.streamIterator(client, "s", { highWaterMark: 0 })).toThrow(/highWaterMark/);
    expect(() => runtime.streamIterator(client, "s", { signal: "x" })).toThrow(/AbortSignal/);
  });
});
