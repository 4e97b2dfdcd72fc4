// The custom server: Next.js plus a WebSocket endpoint at /ws that broadcasts every message of
// the dashboard stream to this instance's WebSocket clients (the original design's scenario 1).
// Each instance subscribes on its own, so an event published through any instance reaches the
// WebSocket clients of all of them.
//
//   dev:   pnpm dev            (tsc compiles this file to dist/, next dev with HMR inside)
//   prod:  pnpm build && pnpm start    (PORT, HOSTNAME, REDIS_URL, INSTANCE_NAME from the env)
//
// Only upgrades to /ws are ours; every other upgrade (in dev, Next's HMR socket) goes to Next.
import { createServer } from "node:http";
import next from "next";
import { WebSocketServer, WebSocket } from "ws";
import { onShutdown, startServerSide } from "./lib/lifecycle";
import { client, INSTANCE, STREAM } from "./lib/streams";

const dev = process.env.NODE_ENV !== "production";
const hostname = process.env.HOSTNAME || "127.0.0.1";
const port = Number(process.env.PORT || 3000);

async function main(): Promise<void> {
  const app = next({ dev, hostname, port });
  const handle = app.getRequestHandler();
  await app.prepare(); // runs instrumentation.ts's register() (connect, signal handlers)
  const nextUpgrade = app.getUpgradeHandler(); // only available after prepare()
  await startServerSide(); // a no-op when register() already ran it

  const wss = new WebSocketServer({ noServer: true });
  const server = createServer((req, res) => void handle(req, res));
  server.on("upgrade", (req, socket, head) => {
    const { pathname } = new URL(req.url ?? "/", "http://localhost");
    if (pathname === "/ws") {
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit("connection", ws, req));
    } else {
      void nextUpgrade(req, socket, head);
    }
  });

  // One subscription per instance, fanned out to every socket: Redis is read once per message,
  // however many browsers are connected. The frame is built once, too.
  await client.subscribe(STREAM, (message) => {
    const frame = JSON.stringify({ id: message.id, timestamp: message.timestamp, ...(message.data as object) });
    for (const ws of wss.clients) {
      if (ws.readyState === WebSocket.OPEN) ws.send(frame);
    }
  });

  onShutdown(async () => {
    for (const ws of wss.clients) ws.close(1001, "server shutting down");
    server.close();
    server.closeIdleConnections();
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, hostname, resolve);
  });
  console.log(`[dashboard] ${INSTANCE}: ready on http://${hostname}:${port} (${dev ? "dev" : "production"})`);
}

main().catch((err) => {
  console.error("[dashboard] failed to start:", err);
  process.exit(1);
});
