"use strict";
// The installed-package smoke: publish, subscribe and a consumer group against a real Redis,
// through a streamcast that a package manager installed from the packed tarballs. esm.mjs and
// cjs.cjs load the package (import / require) and hand it here. scripts/test-pack.mjs copies
// this folder into a scratch project outside the repository and runs it there (with x64 Node,
// and with arm64 Node under qemu for the arm64 package).
//
// Environment:
//   REDIS_URL            the Redis to use (required)
//   SMOKE_PREFIX         prefix of every key it writes (the runner deletes them afterwards)
//   SMOKE_EXPECT_BINARY  `<platform>`, e.g. linux-x64-gnu: the addon must be loaded from the
//                        installed package `streamcast-<platform>`, below SMOKE_ROOT
//   SMOKE_ROOT           the scratch project's directory
// Prints one line per check; exits non-zero (uncaught error) on the first failure.
const assert = require("node:assert/strict");
const { readdirSync, readFileSync, realpathSync } = require("node:fs");
const { dirname, join, sep } = require("node:path");

const TIMEOUT_MS = Number(process.env.SMOKE_TIMEOUT_MS || 20_000);

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

/** Polls `cond` every 10 ms until it is true; fails with `what` after TIMEOUT_MS. */
async function until(cond, what) {
  const deadline = Date.now() + TIMEOUT_MS;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`smoke: ${what} did not happen within ${TIMEOUT_MS} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Checks that the one native addon in this process came from the installed platform package. */
function checkBinary(label) {
  const platform = env("SMOKE_EXPECT_BINARY");
  const root = realpathSync(env("SMOKE_ROOT")) + sep;
  const loaded = Object.keys(require.cache).filter((f) => f.endsWith(".node"));
  assert.equal(loaded.length, 1, `exactly one .node is loaded, got ${JSON.stringify(loaded)}`);
  const file = realpathSync(loaded[0]);
  assert.ok(file.startsWith(root), `the addon ${file} is inside the scratch project ${root}`);
  assert.ok(file.endsWith(`${sep}streamcast.${platform}.node`), `the addon ${file} is the ${platform} binary`);
  const manifest = JSON.parse(readFileSync(join(dirname(file), "package.json"), "utf8"));
  assert.equal(manifest.name, `streamcast-${platform}`, "the addon comes from the platform package");
  assert.ok(manifest.cpu.includes(process.arch), `${manifest.name} is for ${manifest.cpu}, this Node.js is ${process.arch}`);
  assert.ok(manifest.os.includes(process.platform), `${manifest.name} is for ${manifest.os}, this is ${process.platform}`);
  const main = realpathSync(dirname(require.resolve("streamcast", { paths: [root] })));
  const strays = readdirSync(main).filter((f) => f.endsWith(".node"));
  assert.deepEqual(strays, [], "the main package carries no binary of its own");
  console.log(`[${label}] addon: ${file.slice(root.length)} (${manifest.name}@${manifest.version}, ${process.arch})`);
}

module.exports = async function smoke(streamcast, label) {
  const { getStreamsClient, StreamsClient } = streamcast;
  assert.equal(typeof getStreamsClient, "function", "getStreamsClient is exported");
  assert.equal(typeof StreamsClient, "function", "StreamsClient is exported");
  checkBinary(label);

  const prefix = `${env("SMOKE_PREFIX")}:${label}`;
  const client = getStreamsClient({ redisUrl: env("REDIS_URL"), defaultBlockMs: 1000 });
  assert.equal(getStreamsClient(), client, "getStreamsClient() returns one client");
  await client.connect();

  // Broadcast: a subscriber from the start of the stream sees every message, in order.
  const events = `${prefix}:events`;
  const seen = [];
  await client.subscribe(events, (m) => void seen.push(m), { startId: "0" });
  const sent = [];
  for (let i = 0; i < 3; i++) {
    const id = await client.publishMessage(events, { n: i, big: 2n ** 64n + BigInt(i), label });
    assert.match(String(id), /^\d+-\d+$/, "publishMessage resolves to an entry id");
    sent.push(id);
  }
  await until(() => seen.length >= 3, "delivery of 3 messages to the subscriber");
  assert.deepEqual(seen.map((m) => m.id), sent, "the subscriber got every message, in order");
  assert.deepEqual(seen.map((m) => m.data), [0, 1, 2].map((n) => ({ n, big: (2n ** 64n + BigInt(n)).toString(), label })));
  assert.ok(seen.every((m) => m.stream === events && Number.isFinite(m.timestamp)));
  client.unsubscribe(events);
  console.log(`[${label}] publish + subscribe: 3 messages in order`);

  // Work queue: a consumer group hands out each job once and acknowledges it.
  const jobs = `${prefix}:jobs`;
  assert.equal(await client.createConsumerGroup(jobs, "workers", "0"), true, "the group exists");
  const jobIds = await client.publishBatch(jobs, [{ job: "a" }, { job: "b" }, { job: "c" }]);
  assert.equal(jobIds.length, 3);
  const done = [];
  await client.consumeFromGroup(jobs, "workers", "w1", async (m) => {
    done.push(m);
  });
  await until(() => done.length >= 3, "the group consumer receiving 3 jobs");
  await client.stopConsumer(jobs, "workers", "w1");
  assert.deepEqual(done.map((m) => m.data.job), ["a", "b", "c"]);
  assert.deepEqual(done.map((m) => m.id), jobIds);
  // autoAck acknowledged them all: acknowledging again finds none pending.
  assert.equal(await client.acknowledgeMessages(jobs, "workers", ...jobIds), 0, "no job is still pending");
  console.log(`[${label}] consumer group: 3 jobs consumed and acknowledged`);

  const status = client.getStatus();
  assert.equal(typeof status, "object");
  await client.disconnect();
  console.log(`[${label}] ok`);
};
