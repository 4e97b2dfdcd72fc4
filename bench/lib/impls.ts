// One small adapter per implementation, so that every worker runs the same code for each.
// Each implementation is imported lazily: a worker loads only the one it measures.
export type ImplName = "streamcast" | "ioredis-port" | "glide";
export const IMPLS: ImplName[] = ["ioredis-port", "streamcast", "glide"];

export interface Msg {
  id: string;
  data: any;
  timestamp: number;
}
export type Cb = (m: Msg) => void | Promise<void>;

export interface Adapter {
  name: ImplName;
  connect(): Promise<void>;
  close(): Promise<void>;
  publish(stream: string, data: unknown): Promise<string | null>;
  publishBatch(stream: string, items: unknown[]): Promise<Array<string | null>>;
  /** From the stream's current end; resolves once every later publish will be delivered. */
  subscribe(stream: string, cb: Cb): Promise<void>;
  createGroup(stream: string, group: string, startId: string): Promise<void>;
  consume(stream: string, group: string, consumer: string, cb: Cb): Promise<void>;
  /** Implementation counters worth reporting (streamcast's getStatus().counters). */
  counters(): Record<string, number>;
}

/**
 * The shared client settings: the documented defaults (count 10, block 5000 ms), auto-trim off
 * (it would trim the pre-loaded streams), log level warn.
 */
export const COMMON = { defaultBlockMs: 5000, defaultCount: 10 } as const;

export async function makeAdapter(name: ImplName, redisUrl: string): Promise<Adapter> {
  if (name === "streamcast") {
    const { StreamsClient } = await import("../../index.js");
    const c = new StreamsClient({ redisUrl, enableAutoTrim: false, logLevel: "warn", ...COMMON });
    return {
      name,
      connect: () => c.connect(),
      close: () => c.disconnect(),
      publish: (s, d) => c.publishMessage(s, d),
      publishBatch: (s, items) => c.publishBatch(s, items),
      subscribe: async (s, cb) => void (await c.subscribe(s, cb)),
      createGroup: async (s, g, id) => {
        if (!(await c.createConsumerGroup(s, g, id))) throw new Error("createConsumerGroup returned false");
      },
      consume: (s, g, consumer, cb) => c.consumeFromGroup(s, g, consumer, cb, { autoAck: true }),
      counters: () => ({ ...c.getStatus().counters }) as unknown as Record<string, number>,
    };
  }
  if (name === "ioredis-port") {
    const { RedisStreamsClient } = await import("../ioredis-port.js");
    const c = new RedisStreamsClient({ redisUrl, enableAutoTrim: false, ...COMMON });
    return {
      name,
      connect: () => c.connect(),
      close: () => c.disconnect(),
      publish: (s, d) => c.publishMessage(s, d),
      publishBatch: (s, items) => c.publishBatch(s, items),
      subscribe: (s, cb) => c.subscribe(s, cb),
      createGroup: async (s, g, id) => {
        if (!(await c.createConsumerGroup(s, g, id))) throw new Error("createConsumerGroup returned false");
      },
      consume: (s, g, consumer, cb) => c.consumeFromGroup(s, g, consumer, cb, { autoAck: true }),
      counters: () => ({}),
    };
  }
  const { GlideStreams } = await import("../glide.js");
  const c = new GlideStreams(redisUrl, COMMON.defaultBlockMs, COMMON.defaultCount);
  return {
    name,
    connect: () => c.connect(),
    close: () => c.close(),
    publish: (s, d) => c.xadd(s, d),
    publishBatch: (s, items) => c.xaddBatch(s, items),
    subscribe: (s, cb) => c.subscribe(s, cb),
    createGroup: (s, g, id) => c.createGroup(s, g, id),
    consume: (s, g, consumer, cb) => c.consume(s, g, consumer, cb, true),
    counters: () => ({}),
  };
}
