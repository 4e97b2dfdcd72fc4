// Finds a Redis for the demo, so that `pnpm demo` works on a fresh machine:
//   1. REDIS_URL, when set (it must answer; the demo never replaces a server you named);
//   2. else the probe URL (env DEMO_PROBE_URL, default redis://127.0.0.1:6379), if it answers PING;
//   3. else a private `redis-server` on a free port, with no persistence, stopped by `stop()`.
// It speaks just enough RESP over a plain TCP socket to probe and to clean up; the demo itself
// talks to Redis only through streamcast.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const DEFAULT_PROBE_URL = "redis://127.0.0.1:6379";

/**
 * @typedef {object} DemoRedis
 * @property {string} url          redis:// URL to hand to streamcast
 * @property {string} description  where it came from, for the demo's output
 * @property {() => Promise<void>} stop  stops the private server (no-op otherwise)
 */

/** @returns {Promise<DemoRedis>} */
export async function findRedis() {
  const given = process.env.REDIS_URL;
  if (given) {
    // A TLS URL can't be probed with a plain socket; let streamcast report problems itself.
    if (!given.startsWith("rediss:") && !(await ping(given))) {
      throw new Error(`REDIS_URL=${redact(given)} does not answer PING; start that server or unset REDIS_URL`);
    }
    return { url: given, description: `REDIS_URL (${redact(given)})`, stop: async () => {} };
  }
  const probe = process.env.DEMO_PROBE_URL || DEFAULT_PROBE_URL;
  if (await ping(probe)) {
    return { url: probe, description: `the Redis at ${redact(probe)}`, stop: async () => {} };
  }
  return startPrivateServer(`nothing answered at ${redact(probe)}`);
}

/**
 * REDIS_URL when set (it must answer), else always a private `redis-server` on a free port: for
 * scripts that must not write to a shared server nobody named (`pnpm test:pack`).
 * @returns {Promise<DemoRedis>}
 */
export async function privateOrGivenRedis() {
  if (process.env.REDIS_URL) return findRedis();
  return startPrivateServer("REDIS_URL is not set");
}

/** True when something at `url` answers a RESP PING (`+PONG`, or `-NOAUTH`: a Redis that wants a password). */
export async function ping(url, timeoutMs = 500) {
  try {
    const reply = await command(url, ["PING"], timeoutMs, { auth: false });
    return reply === "PONG";
  } catch (err) {
    return /NOAUTH/.test(String(err?.message));
  }
}

/**
 * Sends one command (after AUTH and SELECT taken from the URL) and returns its reply when that is
 * a simple string, an integer or a bulk string (as a string; null for a nil), the first line of
 * anything else; an error reply rejects.
 */
export function command(url, args, timeoutMs = 1000, { auth = true } = {}) {
  const u = new URL(url);
  const pre = [];
  if (auth && u.password) {
    const user = u.username ? [decodeURIComponent(u.username)] : [];
    pre.push(["AUTH", ...user, decodeURIComponent(u.password)]);
  }
  const db = u.pathname.replace(/^\//, "");
  if (auth && db && db !== "0") pre.push(["SELECT", db]);
  const all = [...pre, args];
  const encode = (cmd) => `*${cmd.length}\r\n` + cmd.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join("");

  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: u.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1", port: Number(u.port) || 6379 });
    const finish = (fn, value) => {
      clearTimeout(timer);
      socket.destroy();
      fn(value);
    };
    const timer = setTimeout(() => finish(reject, new Error(`no answer from ${redact(url)} within ${timeoutMs} ms`)), timeoutMs);
    let buf = "";
    let replies = 0;
    let bulk = false;
    socket.on("connect", () => socket.write(all.map(encode).join("")));
    socket.on("error", (err) => finish(reject, err));
    socket.on("data", (chunk) => {
      buf += chunk.toString("latin1");
      let nl;
      while ((nl = buf.indexOf("\r\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        if (!bulk && line[0] === "-") return finish(reject, new Error(line.slice(1)));
        let value = bulk ? line : line.slice(1);
        if (!bulk && line[0] === "$" && line !== "$-1") {
          bulk = true; // a bulk string: its value is on the next line
          continue;
        }
        if (!bulk && line === "$-1") value = null;
        bulk = false;
        if (++replies === all.length) return finish(resolve, value);
      }
    });
  });
}

/** `redis://user:***@host:port/db`: the password never reaches the demo's output. */
export function redact(url) {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "<unparsable URL>";
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function startPrivateServer(why) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "streamcast-demo-redis-"));
  const url = `redis://127.0.0.1:${port}`;
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir];
  // Where available, setpriv makes the kernel kill the server when the demo dies in any way.
  const SETPRIV = "/usr/bin/setpriv";
  const [cmd, ...argv] = existsSync(SETPRIV)
    ? [SETPRIV, "--pdeathsig", "KILL", "redis-server", ...args]
    : ["redis-server", ...args];
  const child = spawn(cmd, argv, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise((resolve) => child.once("exit", resolve));
  // Even when the demo dies of an uncaught error, don't leave the server behind.
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  exited.then(() => process.off("exit", killOnExit));
  const spawnError = new Promise((resolve) => child.once("error", resolve));

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(killer);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const notInstalled = new Error(
    `${why}, and redis-server is not on PATH: install it (apt-get install -y redis-server) or set REDIS_URL`,
  );
  const deadline = Date.now() + 5000;
  for (;;) {
    const failed = await Promise.race([spawnError, new Promise((r) => setTimeout(() => r(null), 50))]);
    if (failed) {
      rmSync(dir, { recursive: true, force: true });
      throw failed.code === "ENOENT" ? notInstalled : new Error(`${why}, and redis-server could not start: ${failed.message}`);
    }
    if (child.exitCode !== null) {
      rmSync(dir, { recursive: true, force: true });
      if (child.exitCode === 127 || /No such file/.test(stderr)) throw notInstalled;
      throw new Error(`${why}, and redis-server exited with code ${child.exitCode}: ${stderr.trim()}`);
    }
    if (await ping(url, 200)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`${why}, and the private redis-server on port ${port} did not answer within 5 s`);
    }
  }
  return { url, description: `a private redis-server on port ${port} (${why})`, stop };
}
