// TypeScript consumer of the installed package: `tsc --noEmit` must accept it against the
// shipped index.d.ts (strict, NodeNext). It is type-checked only, never run.
import { getStreamsClient, StreamsClient, setLogger, type StreamMessage, type Status } from "streamcast";

interface Update {
  type: string;
  sessionId: string;
}

export async function example(): Promise<void> {
  const client: StreamsClient = getStreamsClient({ redisUrl: "redis://127.0.0.1:6379", defaultBlockMs: 5000 });
  const id: string | null = await client.publishMessage("updates", { type: "created", sessionId: "a" });
  await client.subscribe<Update>("updates", async (message: StreamMessage<Update>) => {
    const kind: string = message.data.type;
    const at: number = message.timestamp;
    void kind;
    void at;
  });
  await client.createConsumerGroup("jobs", "workers", "0");
  await client.consumeFromGroup<Update>("jobs", "workers", "w1", (m) => void m.data.sessionId, { count: 10 });
  const acked: number = await client.acknowledgeMessages("jobs", "workers", "1-0", "2-0");
  const status: Status = client.getStatus();
  setLogger((record) => void record);
  void id;
  void acked;
  void status;
  await client.disconnect();
}

// Misuse must not type-check: the stream name is a string.
// @ts-expect-error
await getStreamsClient().publishMessage(42, {});
