"use client";

import { useEffect, useState, type FormEvent } from "react";

/** One event as both views receive it: the stream entry's id and timestamp plus `{ event, data }`. */
interface LiveEvent {
  id: string;
  timestamp: number;
  event: string;
  data: { text: string; from: string };
}

type Connection = "connecting" | "open" | "closed" | "unavailable";

const KEEP = 50;

/** Newest first, each id once (an SSE reconnect may resend what it already delivered). */
function prepend(list: LiveEvent[], next: LiveEvent): LiveEvent[] {
  if (list.some((e) => e.id === next.id)) return list;
  return [next, ...list].slice(0, KEEP);
}

/** Events over the custom server's WebSocket (/ws); "unavailable" under plain `next start`. */
function useWebSocketEvents(): [LiveEvent[], Connection] {
  const [events, setEvents] = useState<LiveEvent[]>([]);
  const [state, setState] = useState<Connection>("connecting");
  useEffect(() => {
    let ws: WebSocket | undefined;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let opened = false;
    let stopped = false;
    let delay = 500;
    const open = (): void => {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      ws = new WebSocket(`${scheme}://${location.host}/ws`);
      ws.onopen = () => {
        opened = true;
        delay = 500;
        setState("open");
      };
      ws.onmessage = (e) => setEvents((list) => prepend(list, JSON.parse(String(e.data)) as LiveEvent));
      ws.onclose = () => {
        if (stopped) return;
        setState(opened ? "closed" : "unavailable");
        retry = setTimeout(open, delay);
        delay = Math.min(delay * 2, 10_000);
      };
    };
    open();
    return () => {
      stopped = true;
      clearTimeout(retry);
      ws?.close();
    };
  }, []);
  return [events, state];
}

/** Events over Server-Sent Events from GET /api/events; EventSource reconnects by itself. */
function useServerSentEvents(): [LiveEvent[], Connection] {
  const [events, setEvents] = useState<LiveEvent[]>([]);
  const [state, setState] = useState<Connection>("connecting");
  useEffect(() => {
    const source = new EventSource("/api/events");
    source.onopen = () => setState("open");
    source.onerror = () => setState(source.readyState === EventSource.CLOSED ? "closed" : "connecting");
    source.onmessage = (e) => setEvents((list) => prepend(list, JSON.parse(e.data) as LiveEvent));
    return () => source.close();
  }, []);
  return [events, state];
}

function EventList({ title, testId, events, state }: { title: string; testId: string; events: LiveEvent[]; state: Connection }) {
  return (
    <section className="view">
      <h2>
        {title} <span className={`badge ${state}`} data-testid={`${testId}-state`}>{state}</span>
      </h2>
      <ol data-testid={testId}>
        {events.map((e) => (
          <li key={e.id} data-id={e.id}>
            <span className="text">{e.data.text}</span>
            <span className="meta">
              from {e.data.from} · {new Date(e.timestamp).toLocaleTimeString()} · <code>{e.id}</code>
            </span>
          </li>
        ))}
        {events.length === 0 && <li className="empty">No events yet</li>}
      </ol>
    </section>
  );
}

export default function Dashboard() {
  const [wsEvents, wsState] = useWebSocketEvents();
  const [sseEvents, sseState] = useServerSentEvents();
  const [text, setText] = useState("");
  const [result, setResult] = useState("");

  async function post(e: FormEvent<HTMLFormElement>): Promise<void> {
    e.preventDefault();
    const res = await fetch("/api/events", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text }),
    });
    const body = (await res.json()) as { id?: string | null; error?: string };
    setResult(res.ok ? `published ${body.id}` : body.error ?? `HTTP ${res.status}`);
    if (res.ok) setText("");
  }

  return (
    <>
      <form onSubmit={post}>
        <input
          name="text"
          value={text}
          onChange={(e) => setText(e.target.value)}
          placeholder="Something happened…"
          maxLength={500}
          required
        />
        <button type="submit">Publish</button>
        <output data-testid="post-result">{result}</output>
      </form>
      <div className="views">
        <EventList title="WebSocket" testId="ws-events" events={wsEvents} state={wsState} />
        <EventList title="Server-Sent Events" testId="sse-events" events={sseEvents} state={sseState} />
      </div>
    </>
  );
}
