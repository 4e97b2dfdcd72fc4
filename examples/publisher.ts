// Run note: publishes COUNT small messages INTERVAL_MS apart and prints each id.
// From the repository root, after `pnpm install && pnpm build`, start a subscriber first:
//   STREAM=demo COUNT=10 pnpm exec tsx examples/subscriber.ts     # first: prints "ready ..."
//   STREAM=demo COUNT=10 pnpm exec tsx examples/publisher.ts      # then
// Redis comes from REDIS_URL, else redis://127.0.0.1:6379. `pnpm demo` runs both for you.
// In your own code, import from "streamcast" instead of "../index.js".
import { setTimeout as sleep } from "node:timers/promises";
import { getStreamsClient } from "../index.js";

const stream = process.env.STREAM || "streamcast-demo";
const count = Number(process.env.COUNT || 10);
const intervalMs = Number(process.env.INTERVAL_MS || 100);

const client = getStreamsClient();
// Rejects (err.code ERR_UNAVAILABLE or ERR_TIMEOUT) when Redis can't be reached in time.
await client.connect();

let failed = 0;
for (let n = 1; n <= count; n++) {
  // bigint goes out as a decimal string, a Date as its ISO string (JSON.stringify semantics).
  const id = await client.publishMessage(stream, { n, of: count, total: 2n ** 64n + BigInt(n), at: new Date() });
  if (id === null) {
    // Fail open: publishing never throws because Redis is down; it resolves to null.
    failed += 1;
    console.log(`n=${n} not published: Redis unavailable`);
  } else {
    console.log(`${id} n=${n}`);
  }
  if (n < count) await sleep(intervalMs);
}

await client.disconnect();
console.log(`published ${count - failed}/${count}`);
process.exitCode = failed ? 1 : 0;
