// Baseline for the benchmark: a straightforward port of the original TypeScript design
// (shared/seed/redis-streams-design.zh.md) on ioredis 5.8, written the way that design
// describes it, with no extra tuning:
//   - publishMessage: XADD <stream> <id> data <JSON> timestamp <ms> on the main connection
//     (bigint as decimal strings); publishBatch: one ioredis pipeline of XADDs.
//   - subscribe: one XREAD COUNT/BLOCK loop per subscription on its own duplicated connection,
//     one awaited callback at a time. "$" is resolved to the stream's last id before subscribe
//     resolves (XREVRANGE … COUNT 1), so that a publish that follows is never missed: the
//     benchmark measures speed, not a start-up race.
//   - consumeFromGroup: an XREADGROUP loop per consumer on its own duplicated connection, first
//     this consumer's pending entries (id 0), then new ones (">"); with autoAck one XACK per
//     message after its callback resolved (as in the design: "XACK follows a callback that
//     resolved"); a callback that throws leaves its entry pending.
//   - trimStream: XTRIM; auto-trim on a setInterval. Fail open: null/false/0 when Redis fails.
// Same wire format as streamcast, so either side can read the other's entries.
import Redis from "ioredis";

export interface StreamMessage<T = unknown> {
  id: string;
  stream: string;
  data: T;
  timestamp: number;
}

export interface PortConfig {
  redisUrl?: string;
  defaultBlockMs?: number;
  defaultCount?: number;
  autoTrimInterval?: number;
  defaultMaxLen?: number;
  enableAutoTrim?: boolean;
}

export interface SubscribeOptions {
  startId?: string;
  blockMs?: number;
  count?: number;
}

export interface ConsumeOptions {
  autoAck?: boolean;
  count?: number;
  blockMs?: number;
}

type Callback<T> = (message: StreamMessage<T>) => void | Promise<void>;

interface SubscriptionState {
  stream: string;
  lastId: string;
  active: boolean;
  conn: Redis;
  loop?: Promise<void>;
}

interface ConsumerGroupState {
  stream: string;
  group: string;
  consumer: string;
  active: boolean;
  conn: Redis;
  loop?: Promise<void>;
}

const log = {
  error: (msg: string, fields: Record<string, unknown> = {}) => console.error(`[RedisStreams] ${msg}`, fields),
};

function stringify(data: unknown): string {
  return JSON.stringify(data, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
}

/** `[id, [k, v, k, v…]]` → StreamMessage, tolerating foreign entries like streamcast does. */
function toMessage<T>(stream: string, id: string, fields: string[]): StreamMessage<T> {
  const map: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) map[fields[i]!] = fields[i + 1]!;
  let data: unknown;
  if (map.data !== undefined) {
    try {
      data = JSON.parse(map.data);
    } catch {
      data = map.data;
    }
  } else {
    data = map;
  }
  const ts = map.timestamp !== undefined ? Number(map.timestamp) : NaN;
  return {
    id,
    stream,
    data: data as T,
    timestamp: Number.isFinite(ts) ? ts : Number(id.split("-")[0]),
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class RedisStreamsClient {
  private readonly cfg: Required<PortConfig>;
  private redis: Redis | null = null;
  private readonly subscriptions = new Map<string, SubscriptionState[]>();
  private readonly consumers = new Map<string, ConsumerGroupState>();
  private trimTimer: NodeJS.Timeout | null = null;
  private readonly touched = new Set<string>();

  constructor(config: PortConfig = {}) {
    this.cfg = {
      redisUrl: config.redisUrl ?? process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
      defaultBlockMs: config.defaultBlockMs ?? 5000,
      defaultCount: config.defaultCount ?? 10,
      autoTrimInterval: config.autoTrimInterval ?? 3_600_000,
      defaultMaxLen: config.defaultMaxLen ?? 10_000,
      enableAutoTrim: config.enableAutoTrim ?? true,
    };
  }

  async connect(): Promise<void> {
    if (this.redis) return;
    this.redis = new Redis(this.cfg.redisUrl, {
      lazyConnect: true,
      maxRetriesPerRequest: 1,
      retryStrategy: (times) => Math.min(50 * 2 ** times, 2000),
    });
    this.redis.on("error", (err) => log.error("Connection error", { error: String(err) }));
    await this.redis.connect();
    if (this.cfg.enableAutoTrim) {
      this.trimTimer = setInterval(() => void this.autoTrim(), this.cfg.autoTrimInterval);
      this.trimTimer.unref();
    }
  }

  async disconnect(): Promise<void> {
    if (this.trimTimer) clearInterval(this.trimTimer);
    this.trimTimer = null;
    const loops: Promise<void>[] = [];
    for (const subs of this.subscriptions.values()) {
      for (const s of subs) {
        s.active = false;
        s.conn.disconnect();
        if (s.loop) loops.push(s.loop);
      }
    }
    this.subscriptions.clear();
    for (const c of this.consumers.values()) {
      c.active = false;
      c.conn.disconnect();
      if (c.loop) loops.push(c.loop);
    }
    this.consumers.clear();
    await Promise.allSettled(loops);
    if (this.redis) {
      await this.redis.quit().catch(() => this.redis?.disconnect());
      this.redis = null;
    }
  }

  private get conn(): Redis {
    if (!this.redis) throw new Error("RedisStreamsClient is not connected: call connect() first");
    return this.redis;
  }

  async publishMessage(stream: string, data: unknown, id = "*"): Promise<string | null> {
    try {
      this.touched.add(stream);
      return await this.conn.xadd(stream, id, "data", stringify(data), "timestamp", Date.now().toString());
    } catch (err) {
      log.error("Failed to publish message", { stream, error: String(err) });
      return null;
    }
  }

  async publishBatch(stream: string, items: unknown[]): Promise<Array<string | null>> {
    try {
      this.touched.add(stream);
      const pipeline = this.conn.pipeline();
      for (const data of items) {
        pipeline.xadd(stream, "*", "data", stringify(data), "timestamp", Date.now().toString());
      }
      const results = (await pipeline.exec()) ?? [];
      return results.map(([err, id]) => (err ? null : (id as string)));
    } catch (err) {
      log.error("Failed to publish batch", { stream, error: String(err) });
      return items.map(() => null);
    }
  }

  async subscribe<T = unknown>(stream: string, callback: Callback<T>, options: SubscribeOptions = {}): Promise<void> {
    const startId = options.startId ?? "$";
    const blockMs = options.blockMs ?? this.cfg.defaultBlockMs;
    const count = options.count ?? this.cfg.defaultCount;
    let lastId = startId;
    if (startId === "$") {
      const top = await this.conn.xrevrange(stream, "+", "-", "COUNT", 1);
      lastId = top.length > 0 ? top[0]![0] : "0-0";
    }
    const conn = this.conn.duplicate();
    conn.on("error", (err) => log.error("Subscriber connection error", { stream, error: String(err) }));
    const state: SubscriptionState = { stream, lastId, active: true, conn };
    const list = this.subscriptions.get(stream) ?? [];
    list.push(state);
    this.subscriptions.set(stream, list);
    state.loop = this.readLoop(state, callback, blockMs, count);
  }

  private async readLoop<T>(s: SubscriptionState, callback: Callback<T>, blockMs: number, count: number): Promise<void> {
    while (s.active) {
      try {
        const res = await s.conn.xread("COUNT", count, "BLOCK", blockMs, "STREAMS", s.stream, s.lastId);
        if (!res) continue;
        for (const [, entries] of res) {
          for (const [id, fields] of entries) {
            if (!s.active) return;
            s.lastId = id;
            try {
              await callback(toMessage<T>(s.stream, id, fields));
            } catch (err) {
              log.error("Subscription callback failed", { stream: s.stream, id, error: String(err) });
            }
          }
        }
      } catch (err) {
        if (!s.active) return;
        log.error("XREAD failed", { stream: s.stream, error: String(err) });
        await sleep(1000);
      }
    }
  }

  unsubscribe(stream: string): void {
    for (const s of this.subscriptions.get(stream) ?? []) {
      s.active = false;
      s.conn.disconnect();
    }
    this.subscriptions.delete(stream);
  }

  async createConsumerGroup(stream: string, group: string, startId = "$"): Promise<boolean> {
    try {
      await this.conn.xgroup("CREATE", stream, group, startId, "MKSTREAM");
      return true;
    } catch (err) {
      if (String(err).includes("BUSYGROUP")) return true;
      log.error("Failed to create consumer group", { stream, group, error: String(err) });
      return false;
    }
  }

  async consumeFromGroup<T = unknown>(
    stream: string,
    group: string,
    consumer: string,
    callback: Callback<T>,
    options: ConsumeOptions = {},
  ): Promise<void> {
    const autoAck = options.autoAck ?? true;
    const count = options.count ?? this.cfg.defaultCount;
    const blockMs = options.blockMs ?? this.cfg.defaultBlockMs;
    const key = `${stream}:${group}:${consumer}`;
    const conn = this.conn.duplicate();
    conn.on("error", (err) => log.error("Consumer connection error", { key, error: String(err) }));
    const state: ConsumerGroupState = { stream, group, consumer, active: true, conn };
    this.consumers.set(key, state);
    state.loop = (async () => {
      let pending = true; // first our own pending entries (a previous crash), then new ones
      while (state.active) {
        try {
          const res = (await conn.xreadgroup(
            "GROUP", group, consumer, "COUNT", count, "BLOCK", blockMs, "STREAMS", stream, pending ? "0" : ">",
          )) as [string, [string, string[]][]][] | null;
          const entries = res?.[0]?.[1] ?? [];
          if (pending && entries.length === 0) {
            pending = false;
            continue;
          }
          for (const [id, fields] of entries) {
            if (!state.active) return;
            try {
              await callback(toMessage<T>(stream, id, fields));
              if (autoAck) await this.acknowledgeMessages(stream, group, id);
            } catch (err) {
              log.error("Consumer callback failed", { key, id, error: String(err) });
            }
          }
        } catch (err) {
          if (!state.active) return;
          if (String(err).includes("NOGROUP")) {
            log.error("Consumer group does not exist", { key });
            return;
          }
          log.error("XREADGROUP failed", { key, error: String(err) });
          await sleep(1000);
        }
      }
    })();
  }

  async acknowledgeMessages(stream: string, group: string, ...ids: string[]): Promise<number> {
    try {
      return await this.conn.xack(stream, group, ...ids);
    } catch (err) {
      log.error("Failed to acknowledge", { stream, group, error: String(err) });
      return 0;
    }
  }

  async stopConsumer(stream: string, group: string, consumer: string): Promise<void> {
    const key = `${stream}:${group}:${consumer}`;
    const c = this.consumers.get(key);
    if (!c) return;
    c.active = false;
    c.conn.disconnect();
    this.consumers.delete(key);
    await c.loop?.catch(() => {});
  }

  async trimStream(stream: string, options: { maxLen: number; approximate?: boolean }): Promise<number> {
    try {
      return options.approximate === false
        ? await this.conn.xtrim(stream, "MAXLEN", options.maxLen)
        : await this.conn.xtrim(stream, "MAXLEN", "~", options.maxLen);
    } catch (err) {
      log.error("Failed to trim", { stream, error: String(err) });
      return 0;
    }
  }

  private async autoTrim(): Promise<void> {
    for (const s of this.touched) await this.trimStream(s, { maxLen: this.cfg.defaultMaxLen });
  }

  getStatus(): { connected: boolean; subscriptions: string[]; consumerGroups: string[]; config: Omit<Required<PortConfig>, "redisUrl"> } {
    const { redisUrl: _url, ...config } = this.cfg;
    return {
      connected: this.redis?.status === "ready",
      subscriptions: [...this.subscriptions.keys()],
      consumerGroups: [...this.consumers.keys()],
      config,
    };
  }
}
