// Run note: a broadcast subscriber that prints each message as it arrives and exits after COUNT.
// From the repository root, after `pnpm install && pnpm build`, in two terminals:
//   STREAM=demo COUNT=10 pnpm exec tsx examples/subscriber.ts     # first: prints "ready ..."
//   STREAM=demo COUNT=10 pnpm exec tsx examples/publisher.ts      # then
// Redis comes from REDIS_URL, else redis://127.0.0.1:6379. `pnpm demo` runs both for you.
// In your own code, import from "streamcast" instead of "../index.js".
import { getStreamsClient, type StreamMessage } from "../index.js";

/** What examples/publisher.ts sends: the bigint and the Date arrive as strings (JSON). */
interface Tick {
  n: number;
  of: number;
  total: string;
  at: string;
}

const stream = process.env.STREAM || "streamcast-demo";
const expected = Number(process.env.COUNT || 10);

// The process-wide client; with no config it reads REDIS_URL itself.
const client = getStreamsClient();
await client.connect();

let received = 0;
let outOfOrder = 0;
let finish!: () => void;
const allReceived = new Promise<void>((resolve) => (finish = resolve));

// Resolves once the subscription is live: "$" is pinned to the stream's current last id, so
// every message published from now on is delivered; nothing earlier is replayed.
await client.subscribe<Tick>(stream, (message: StreamMessage<Tick>) => {
  received += 1;
  if (message.data.n !== received) outOfOrder += 1;
  const lag = Date.now() - message.timestamp;
  console.log(`${message.id} ${JSON.stringify(message.data)} (${lag} ms after publish)`);
  // Don't await disconnect() in here: it waits for running callbacks, this one included.
  if (received === expected) finish();
});
console.log(`ready: subscribed to ${stream}, waiting for ${expected} messages`);

process.once("SIGINT", () => void client.disconnect().then(() => process.exit(130)));

await allReceived;
await client.disconnect();
console.log(`received ${received}/${expected}${outOfOrder ? `, ${outOfOrder} out of order` : ", in order"}`);
// No process.exit(): after disconnect() nothing keeps Node alive, so the process ends by itself.
process.exitCode = outOfOrder ? 1 : 0;
