// Baseline for the benchmark: the raw stream commands on @valkey/valkey-glide (its Rust core
// behind a Node.js socket protocol), with the same wire format (data = JSON, timestamp = ms).
// Not an implementation of the streamcast API: just what a user writing the commands by hand
// would do. Blocking reads get a dedicated client each (glide multiplexes one connection per
// client, so a blocked XREAD would stall every other command of that client).
//   XADD, a non-atomic Batch of XADDs, an XREAD loop, an XREADGROUP loop with one XACK per read.
import { Batch, GlideClient, InfBoundary, type GlideString } from "@valkey/valkey-glide";

export interface RawMessage {
  id: string;
  stream: string;
  data: unknown;
  timestamp: number;
}

type Callback = (m: RawMessage) => void | Promise<void>;

function hostPort(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || 6379) };
}

function toMessage(stream: string, id: string, fields: [GlideString, GlideString][]): RawMessage {
  let data: unknown;
  let timestamp = NaN;
  for (const [k, v] of fields) {
    if (k === "data") {
      try {
        data = JSON.parse(String(v));
      } catch {
        data = String(v);
      }
    } else if (k === "timestamp") timestamp = Number(v);
  }
  return { id, stream, data, timestamp: Number.isFinite(timestamp) ? timestamp : Number(id.split("-")[0]) };
}

interface Loop {
  active: boolean;
  client: GlideClient;
  done: Promise<void>;
}

export class GlideStreams {
  private client: GlideClient | null = null;
  private readonly loops = new Map<string, Loop>();

  constructor(
    private readonly url: string,
    private readonly blockMs = 5000,
    private readonly count = 10,
  ) {}

  private newClient(): Promise<GlideClient> {
    // requestTimeout: glide's 250 ms default would fail requests queued behind a burst;
    // inflightRequestsLimit: its default 1,000 rejects a paced publisher that falls behind.
    return GlideClient.createClient({ addresses: [hostPort(this.url)], requestTimeout: 5000, inflightRequestsLimit: 100_000 });
  }

  async connect(): Promise<void> {
    this.client ??= await this.newClient();
  }

  private get c(): GlideClient {
    if (!this.client) throw new Error("not connected");
    return this.client;
  }

  async xadd(stream: string, data: unknown): Promise<string | null> {
    const id = await this.c.xadd(stream, [
      ["data", JSON.stringify(data)],
      ["timestamp", Date.now().toString()],
    ]);
    return id === null ? null : String(id);
  }

  async xaddBatch(stream: string, items: unknown[]): Promise<Array<string | null>> {
    const batch = new Batch(false);
    for (const data of items) {
      batch.xadd(stream, [
        ["data", JSON.stringify(data)],
        ["timestamp", Date.now().toString()],
      ]);
    }
    const res = await this.c.exec(batch, false);
    return (res ?? []).map((r) => (typeof r === "string" ? r : null));
  }

  /** XREAD loop from the stream's current end ("$" resolved first), one awaited callback at a time. */
  async subscribe(stream: string, callback: Callback): Promise<void> {
    const top = await this.c.xrevrange(stream, InfBoundary.PositiveInfinity, InfBoundary.NegativeInfinity, { count: 1 });
    let lastId = top && Object.keys(top).length > 0 ? Object.keys(top)[0]! : "0-0";
    const client = await this.newClient();
    const loop: Loop = { active: true, client, done: Promise.resolve() };
    loop.done = (async () => {
      while (loop.active) {
        try {
          const res = await client.xread({ [stream]: lastId }, { block: this.blockMs, count: this.count });
          if (!res) continue;
          for (const { value } of res) {
            for (const [id, fields] of Object.entries(value)) {
              if (!loop.active) return;
              lastId = id;
              try {
                await callback(toMessage(stream, id, fields));
              } catch (err) {
                console.error("[glide] callback failed", id, String(err));
              }
            }
          }
        } catch (err) {
          if (!loop.active) return;
          console.error("[glide] XREAD failed", String(err));
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
    })();
    this.loops.set(`sub:${stream}:${this.loops.size}`, loop);
  }

  async createGroup(stream: string, group: string, startId = "0"): Promise<void> {
    try {
      await this.c.xgroupCreate(stream, group, startId, { mkStream: true });
    } catch (err) {
      if (!String(err).includes("BUSYGROUP")) throw err;
    }
  }

  /** XREADGROUP loop (pending first, then ">"); with autoAck one XACK per read for the ids whose callback resolved. */
  async consume(stream: string, group: string, consumer: string, callback: Callback, autoAck = true): Promise<void> {
    const client = await this.newClient();
    const loop: Loop = { active: true, client, done: Promise.resolve() };
    loop.done = (async () => {
      let pending = true;
      while (loop.active) {
        try {
          const res = await client.xreadgroup(group, consumer, { [stream]: pending ? "0" : ">" }, { block: this.blockMs, count: this.count });
          const entries = res?.[0]?.value ?? {};
          const ids = Object.keys(entries);
          if (pending && ids.length === 0) {
            pending = false;
            continue;
          }
          const ok: string[] = [];
          for (const id of ids) {
            const fields = entries[id];
            if (!fields) continue; // deleted entry
            try {
              await callback(toMessage(stream, id, fields));
              ok.push(id);
            } catch (err) {
              console.error("[glide] consumer callback failed", id, String(err));
            }
          }
          if (autoAck && ok.length > 0) await this.c.xack(stream, group, ok);
        } catch (err) {
          if (!loop.active) return;
          console.error("[glide] XREADGROUP failed", String(err));
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
    })();
    this.loops.set(`grp:${stream}:${group}:${consumer}`, loop);
  }

  async close(): Promise<void> {
    for (const l of this.loops.values()) {
      l.active = false;
      l.client.close();
    }
    await Promise.allSettled([...this.loops.values()].map((l) => l.done));
    this.loops.clear();
    this.client?.close();
    this.client = null;
  }
}
