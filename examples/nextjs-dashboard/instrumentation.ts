// Next.js calls register() once when a server process starts (`next start`, `next dev`, or a
// custom server's app.prepare()). It also runs for the Edge runtime, where a native addon cannot
// load: the NEXT_RUNTIME guard and the dynamic imports keep streamcast out of the Edge bundle.
// register() has been seen to run twice in one process, so both start functions are idempotent.
export async function register(): Promise<void> {
  if (process.env.NEXT_RUNTIME === "nodejs") {
    // Tracing only when an OTLP endpoint is configured; otherwise the SDK is never even loaded.
    // First, so that the connect below and every request are traced.
    if (process.env.OTEL_EXPORTER_OTLP_ENDPOINT || process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) {
      const { startTracing } = await import("./lib/tracing");
      startTracing();
    }
    const { startServerSide } = await import("./lib/lifecycle");
    await startServerSide();
  }
}
