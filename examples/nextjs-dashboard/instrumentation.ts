// Next.js calls register() once when a server process starts (`next start`, `next dev`, or a
// custom server's app.prepare()). It also runs for the Edge runtime, where a native addon cannot
// load: the NEXT_RUNTIME guard and the dynamic import keep streamcast out of the Edge bundle.
// register() has been seen to run twice in one process, so startServerSide() is idempotent.
export async function register(): Promise<void> {
  if (process.env.NEXT_RUNTIME === "nodejs") {
    const { startServerSide } = await import("./lib/lifecycle");
    await startServerSide();
  }
}
