import { INSTANCE, STREAM } from "@/lib/streams";
import Dashboard from "./dashboard";

// Rendered per request: it shows which instance served it.
export const dynamic = "force-dynamic";

export default function Page() {
  return (
    <main>
      <header>
        <h1>streamcast dashboard</h1>
        <p>
          Instance <strong data-testid="instance">{INSTANCE}</strong>, stream <code>{STREAM}</code>. Post an event
          on any instance; every instance&apos;s page shows it, over a WebSocket (custom server) and over
          Server-Sent Events (a route handler).
        </p>
      </header>
      <Dashboard />
    </main>
  );
}
