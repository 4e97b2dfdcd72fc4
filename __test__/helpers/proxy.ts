import { createConnection, createServer, type Server, type Socket } from "node:net";

/** A TCP proxy on 127.0.0.1 in front of one local port, for fault injection. */
export interface Proxy {
  /** The port the proxy listens on. */
  port: number;
  /** `redis://127.0.0.1:<port>` plus `path` (e.g. "/1" for a db). */
  url(path?: string): string;
  /** Destroys every open client+upstream socket pair at once (the client sees RST, Redis FIN). */
  cutAll(): void;
  /**
   * Stops forwarding bytes in both directions on every connection open now, keeping the
   * sockets open (no FIN, no RST: a silent dead link). Nothing is lost: bytes wait (in the
   * proxy and the kernel buffers) until `resume()`. Connections opened after this call are
   * not stalled and work normally. A stalled connection that its client closes is torn down;
   * one that Redis closes stays silently open towards the client.
   */
  stall(): void;
  /** Forwards on every stalled connection again, delivering what waited, in order. */
  resume(): void;
  /** Delays each forwarded chunk by `ms` (0: none); order per direction is kept. */
  setDelay(ms: number): void;
  /** Sends connections opened from now on to `targetPort` (a DNS switch after a failover); open ones stay where they are. */
  retarget(targetPort: number): void;
  /** Number of open client connections. */
  connections(): number;
  /** Stops listening and destroys every connection. */
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  upstream: Socket;
  stalled: boolean;
  /** Resolves when the pair is resumed (a fresh promise per stall). */
  unstalled: Promise<void>;
  release: () => void;
}

/** Starts a proxy on 127.0.0.1 (free port) forwarding to 127.0.0.1:`targetPort`. */
export async function startProxy(initialPort: number): Promise<Proxy> {
  const pairs = new Set<Pair>();
  let targetPort = initialPort;
  let delayMs = 0;

  const setStalled = (pair: Pair, stalled: boolean): void => {
    if (pair.stalled === stalled) return;
    pair.stalled = stalled;
    if (stalled) {
      pair.unstalled = new Promise<void>((r) => (pair.release = r));
      pair.client.pause();
      pair.upstream.pause();
    } else {
      pair.release();
      pair.client.resume();
      pair.upstream.resume();
      // Redis closed it during the stall: the link comes back only to end.
      if (pair.upstream.destroyed) destroyPair(pair, false);
    }
  };

  /** Forwards `from` to `to`; chunks go through a queue only when delayed or stalled, so order holds. */
  const forward = (pair: Pair, from: Socket, to: Socket): void => {
    let queued = 0;
    let chain: Promise<void> = Promise.resolve();
    from.on("data", (chunk: Buffer) => {
      if (queued === 0 && delayMs <= 0 && !pair.stalled) {
        if (!to.destroyed) to.write(chunk);
        return;
      }
      queued++;
      const wait = delayMs;
      chain = chain.then(async () => {
        if (wait > 0) await new Promise<void>((r) => setTimeout(r, wait));
        while (pair.stalled) await pair.unstalled;
        queued--;
        if (!to.destroyed) to.write(chunk);
      });
    });
  };

  const destroyPair = (pair: Pair, reset: boolean): void => {
    pairs.delete(pair);
    pair.release();
    if (reset && !pair.client.destroyed) pair.client.resetAndDestroy();
    else pair.client.destroy();
    pair.upstream.destroy();
  };

  const server: Server = createServer((client) => {
    client.setNoDelay(true);
    const upstream = createConnection({ host: "127.0.0.1", port: targetPort });
    upstream.setNoDelay(true);
    const pair: Pair = { client, upstream, stalled: false, unstalled: Promise.resolve(), release: () => {} };
    pairs.add(pair);
    const clientGone = (): void => {
      if (pairs.has(pair)) destroyPair(pair, false);
    };
    const upstreamGone = (): void => {
      // A stalled link says nothing to the client: it stays open until the client drops it.
      if (pair.stalled) return;
      if (pairs.has(pair)) destroyPair(pair, false);
    };
    client.on("error", clientGone);
    client.on("close", clientGone);
    upstream.on("error", upstreamGone);
    upstream.on("close", upstreamGone);
    forward(pair, client, upstream);
    forward(pair, upstream, client);
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;

  return {
    port,
    url: (path = "") => `redis://127.0.0.1:${port}${path}`,
    cutAll() {
      for (const pair of [...pairs]) destroyPair(pair, true);
    },
    stall() {
      for (const pair of pairs) setStalled(pair, true);
    },
    resume() {
      for (const pair of pairs) setStalled(pair, false);
    },
    setDelay(ms: number) {
      delayMs = Math.max(0, ms);
    },
    retarget(port: number) {
      targetPort = port;
    },
    connections: () => pairs.size,
    close() {
      for (const pair of [...pairs]) destroyPair(pair, false);
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
