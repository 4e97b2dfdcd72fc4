// Loaded into every test process by vitest.config.mts during `pnpm coverage` only.
//
// vitest stops a test process with SIGTERM, then SIGKILL 500 ms later. Killed by a signal, a
// process never reaches exit(), and the instrumented addon would write no coverage profile for
// everything the file ran; even exiting normally may take longer than 500 ms on a busy machine.
// So the profile is written at once (the instrumented build exports writeCoverageProfile), then
// the process exits normally.
import { createRequire } from "node:module";

const addon = process.env.NAPI_RS_NATIVE_LIBRARY_PATH;
process.once("SIGTERM", () => {
  if (addon) {
    const binding = createRequire(import.meta.url)(addon) as { writeCoverageProfile?: () => number };
    binding.writeCoverageProfile?.();
  }
  process.exit(143);
});
