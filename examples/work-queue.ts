// Run note: a work queue with a consumer group. Creates group "workers" on a fresh stream,
// starts two consumers ("worker-1", "worker-2") in this one process, publishes COUNT tasks
// (default 20) plus one "poison" task whose handler always throws, and waits until every task
// was handled exactly once and the poison task landed in the dead-letter stream
// (`<stream>:dead`) after `maxDeliveries` attempts. Prints what each worker handled, stops
// both consumers, disconnects and exits by itself (non-zero if anything went wrong or it took
// longer than 20 s).
// From the repository root, after `pnpm install && pnpm build`:
//   pnpm exec tsx examples/work-queue.ts          # COUNT=100 for more tasks
// Redis comes from REDIS_URL, else redis://127.0.0.1:6379. In production each worker is its
// own process running the same consumeFromGroup() call with its own consumer name.
// In your own code, import from "streamcast" instead of "../index.js".
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { getStreamsClient, type StreamMessage } from "../index.js";

interface Task {
  n: number;
  poison?: boolean;
}

const count = Number(process.env.COUNT || 20);
const stream = `streamcast-work:${Date.now()}-${randomBytes(3).toString("hex")}`;
const deadLetters = `${stream}:dead`; // the default deadLetterStream
const group = "workers";
const workers = ["worker-1", "worker-2"];
const TIMEOUT_MS = 20_000;

const client = getStreamsClient();
await client.connect();

// "0": the group starts at the beginning of the stream (MKSTREAM creates the stream).
// Resolves true also when the group already exists; false only when Redis is unavailable.
if (!(await client.createConsumerGroup(stream, group, "0"))) throw new Error("Redis unavailable");

const handled = new Map<string, number[]>(workers.map((w) => [w, []]));
const seen = new Map<number, number>(); // task n -> times handled successfully
let poisonAttempts = 0;
let deadLettered: StreamMessage<Task> | undefined;
let finish!: () => void;
const allDone = new Promise<void>((resolve) => (finish = resolve));
const checkDone = () => {
  if (seen.size === count && deadLettered) finish();
};

for (const worker of workers) {
  // Each entry goes to exactly one consumer of the group. With autoAck (the default) an entry
  // is acknowledged (one XACK per batch) once its callback resolved; a throw leaves it pending.
  await client.consumeFromGroup<Task>(
    stream,
    group,
    worker,
    async (message) => {
      if (message.data.poison) {
        poisonAttempts += 1;
        throw new Error(`task ${message.data.n} cannot be processed`);
      }
      await sleep(5 + Math.random() * 20); // the "work"
      handled.get(worker)!.push(message.data.n);
      seen.set(message.data.n, (seen.get(message.data.n) ?? 0) + 1);
      checkDone();
    },
    {
      count: 5, // entries per read: small, so that both workers get a share
      blockMs: 2_000,
      maxDeliveries: 2, // a failed entry is retried; after more than 2 deliveries it's dead-lettered
      retryDelayMs: 200, // wait before a failed entry is delivered again (default 1000)
      claimIdleMs: 30_000, // take over entries a crashed worker left pending for 30 s
    },
  );
}

// Watch the dead-letter stream. Its entries keep the original fields (so `data` is the task)
// plus originalStream, originalId, group, consumer and deliveries.
await client.subscribe<Task>(
  deadLetters,
  (message) => {
    deadLettered = message;
    checkDone();
  },
  { startId: "0" },
);

console.log(`publishing ${count} tasks and 1 poison task to ${stream}`);
const poisonAt = Math.ceil(count / 2);
for (let n = 1; n <= count; n++) {
  // maxLen: trim in the same XADD (MAXLEN ~ 10000), the cheap way to keep a queue bounded.
  await client.publishMessage(stream, { n } satisfies Task, null, { maxLen: 10_000 });
  if (n === poisonAt) await client.publishMessage(stream, { n: 0, poison: true } satisfies Task);
}

let timer: NodeJS.Timeout | undefined;
const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), TIMEOUT_MS)));
const late = await Promise.race([allDone.then(() => false), timedOut]);
clearTimeout(timer);

// Resolves once the worker's running callback (if any) finished and was acknowledged.
for (const worker of workers) await client.stopConsumer(stream, group, worker);
const { counters, consumerGroups } = client.getStatus();
await client.disconnect();

for (const [worker, ns] of handled) console.log(`${worker} handled ${ns.length} tasks: ${ns.join(" ")}`);
console.log(
  deadLettered
    ? `dead letter ${deadLettered.id} in ${deadLetters}: ${JSON.stringify(deadLettered.data)} after ${poisonAttempts} failed attempts`
    : "no dead letter arrived",
);
console.log(`consumers still running after stopConsumer: ${consumerGroups.length}`);
console.log(
  `counters: acked ${counters.acked}, deadLettered ${counters.deadLettered}, ` +
    `callbackErrors ${counters.callbackErrors}, claimed ${counters.claimed}`,
);

const duplicates = [...seen.values()].filter((times) => times > 1).length;
const problems: string[] = [];
if (late) problems.push(`timed out after ${TIMEOUT_MS / 1000} s`);
if (seen.size !== count) problems.push(`handled ${seen.size}/${count} tasks`);
if (duplicates) problems.push(`${duplicates} tasks handled more than once`);
if (!deadLettered) problems.push("the poison task was not dead-lettered");
if (counters.acked !== count) problems.push(`acked ${counters.acked}, expected ${count}`);
console.log(problems.length ? `work-queue: FAILED: ${problems.join("; ")}` : "work-queue: OK");
// No process.exit(): after disconnect() nothing keeps Node alive.
process.exitCode = problems.length ? 1 : 0;
