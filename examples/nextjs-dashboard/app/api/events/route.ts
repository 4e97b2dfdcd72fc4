// POST /api/events  publishes { text } to the dashboard stream.
// GET  /api/events  is a Server-Sent Events stream of it: one streamcast subscription per open
//                   request, ended when the browser goes away (request.signal) — no custom
//                   server needed, this works with plain `next start`.
import { client, INSTANCE, STREAM, type DashboardEvent } from "@/lib/streams";

// streamcast is a native addon: Node.js runtime only (never "edge"), and never prerendered.
export const runtime = "nodejs";
export const dynamic = "force-dynamic";

const MAX_TEXT = 500;
/** A stream entry id, as sent back by EventSource in Last-Event-ID after a reconnect. */
const ENTRY_ID = /^\d+-\d+$/;
/** A comment line every 15 s keeps proxies and load balancers from closing an idle stream. */
const KEEPALIVE_MS = 15_000;

export async function POST(request: Request): Promise<Response> {
  let text: unknown;
  try {
    ({ text } = (await request.json()) as { text?: unknown });
  } catch {
    return Response.json({ error: "the body must be JSON: { \"text\": \"...\" }" }, { status: 400 });
  }
  if (typeof text !== "string" || text.trim() === "" || text.length > MAX_TEXT) {
    return Response.json({ error: `text must be a non-empty string of at most ${MAX_TEXT} characters` }, { status: 400 });
  }
  const event: DashboardEvent = { event: "note", data: { text: text.trim(), from: INSTANCE } };
  // No connect() needed; publishMessage resolves to null instead of throwing when Redis is down.
  const id = await client.publishMessage(STREAM, event);
  if (id === null) {
    return Response.json({ id: null, error: "Redis is unavailable; the event was not published" }, { status: 503 });
  }
  return Response.json({ id }, { status: 201 });
}

export async function GET(request: Request): Promise<Response> {
  // After a dropped connection EventSource reconnects with the last id it saw: resume from there,
  // so nothing published in between is missed. A first connection starts at "$" (new events).
  const lastEventId = request.headers.get("last-event-id");
  const startId = lastEventId && ENTRY_ID.test(lastEventId) ? lastEventId : "$";

  // The subscription ends when the browser disconnects (request.signal) or when the response
  // body is cancelled, whichever Next.js reports first.
  const cancelled = new AbortController();
  const signal = AbortSignal.any([request.signal, cancelled.signal]);
  const messages = client.stream<DashboardEvent>(STREAM, { startId, signal });
  const encoder = new TextEncoder();

  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      const send = (chunk: string): void => {
        try {
          controller.enqueue(encoder.encode(chunk));
        } catch {
          // the body was cancelled; the loop below ends with the signal
        }
      };
      const keepalive = setInterval(() => send(": keepalive\n\n"), KEEPALIVE_MS);
      send("retry: 2000\n\n");
      try {
        for await (const message of messages) {
          const payload = { id: message.id, timestamp: message.timestamp, ...message.data };
          send(`id: ${message.id}\ndata: ${JSON.stringify(payload)}\n\n`);
        }
      } catch (err) {
        // ERR_CLOSED when the server shuts down (disconnect()): end this response, the browser
        // reconnects to another instance and resumes from its Last-Event-ID.
        console.warn(`[dashboard] SSE stream ended: ${(err as { code?: string }).code ?? err}`);
      } finally {
        clearInterval(keepalive);
        try {
          controller.close();
        } catch {
          // already closed by a cancel
        }
      }
    },
    cancel() {
      cancelled.abort();
    },
  });

  return new Response(body, {
    headers: {
      "Content-Type": "text/event-stream; charset=utf-8",
      // no-transform: compression would buffer the stream; no-cache: every request is live.
      "Cache-Control": "no-cache, no-transform",
      "X-Accel-Buffering": "no",
    },
  });
}
