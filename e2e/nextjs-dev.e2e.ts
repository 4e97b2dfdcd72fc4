// The example app under `next dev` (its custom server in development mode): editing the module
// that creates the client re-evaluates it, and the process keeps one client and the same number
// of Redis connections (getStreamsClient() keeps its instance on globalThis). Next's own
// upgrades (the HMR socket) still reach Next through the custom server.
import { readFileSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import { startRedis, type RedisServer } from "../__test__/helpers/redis-server.js";
import { until } from "../__test__/helpers/until.js";
import { appStatus, redisClients, type AppStatus } from "./helpers/dashboard.js";
import { freePort, mustRun, startServer, type Server } from "./helpers/processes.js";

const appDir = inject("appDir");
const edited = join(appDir, "lib", "streams.ts");
let original: string;
let redis: RedisServer;
let dev: Server;

async function publish(text: string): Promise<string> {
  const res = await fetch(`${dev.url}/api/events`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ text }),
  });
  const body = (await res.json()) as { id?: string };
  expect(res.status, JSON.stringify(body)).toBe(201);
  return body.id!;
}

/** Sends an HTTP upgrade to `path` and resolves with the status code the server answered. */
function upgradeStatus(path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${dev.url}${path}`, {
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
      },
      timeout: 60_000,
    });
    req.once("upgrade", (res, socket) => {
      socket.destroy();
      resolve(res.statusCode ?? 0);
    });
    req.once("response", (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once("timeout", () => req.destroy(new Error(`no answer to the upgrade of ${path}`)));
    req.once("error", reject);
    req.end();
  });
}

describe("examples/nextjs-dashboard under next dev", () => {
  beforeAll(async () => {
    original = readFileSync(edited, "utf8");
    redis = await startRedis({ private: true });
    await mustRun("pnpm", ["exec", "tsc", "-p", "tsconfig.server.json"], { cwd: appDir, timeoutMs: 120_000 });
    const port = await freePort();
    dev = startServer({
      name: "dev",
      cwd: appDir,
      command: process.execPath,
      args: ["dist/server.js"],
      port,
      env: { NODE_ENV: "development", PORT: String(port), HOSTNAME: "127.0.0.1", REDIS_URL: redis.url, INSTANCE_NAME: "dev" },
      readyLine: /ready on http/,
      readyTimeoutMs: 120_000,
    });
    await dev.ready;
  });

  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => console.log(`[e2e] output of the dev server:\n${dev?.output()}`));
  });

  afterAll(async () => {
    writeFileSync(edited, original);
    await dev?.stop();
    await redis?.stop();
  });

  it("editing the module that creates the client does not add Redis connections", async () => {
    let status: AppStatus = await appStatus(dev.url); // compiles the route on first request
    await publish("before any edit");
    status = await appStatus(dev.url);
    const connections = (await redisClients(redis.port)).length;
    expect(connections).toBeGreaterThan(0);

    for (let edit = 1; edit <= 3; edit++) {
      const previous = status;
      writeFileSync(edited, `${original}\n// edit ${edit}: the e2e test re-evaluates this module\n`);
      // The reload is observable: the re-evaluated module reports a new moduleLoadedAt.
      await until(
        async () => (status = await appStatus(dev.url)).moduleLoadedAt !== previous.moduleLoadedAt,
        60_000,
        `lib/streams.ts re-evaluated after edit ${edit}`,
      );
      await publish(`after edit ${edit}`);
      status = await appStatus(dev.url);
      // Same process, same client: its counter goes on from where it was.
      expect(status.pid).toBe(previous.pid);
      expect(status.status.counters.published).toBe(previous.status.counters.published + 1);
      expect(await redisClients(redis.port)).toHaveLength(connections);
    }
  });

  it("hands Next's own upgrades (HMR) to Next and keeps /ws for the dashboard", async () => {
    expect(await upgradeStatus("/_next/hmr")).toBe(101);
    expect(await upgradeStatus("/ws")).toBe(101);
  });
});
