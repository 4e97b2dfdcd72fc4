// GET /api/status: this instance's streamcast status (connection, counters, one entry per
// subscription: the WebSocket broadcaster and every open SSE request), for humans and for tests.
import { client, INSTANCE, moduleLoadedAt } from "@/lib/streams";

export const runtime = "nodejs";
export const dynamic = "force-dynamic";

export function GET(): Response {
  return Response.json({ instance: INSTANCE, pid: process.pid, moduleLoadedAt, status: client.getStatus() });
}
