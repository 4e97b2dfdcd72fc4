// Loaded into every test process by vitest.config.mts during `pnpm coverage` only.
//
// The instrumented addon writes its coverage profile from an atexit handler, but vitest stops
// each test process with SIGTERM and SIGKILLs it 500 ms later: killed by a signal (or slow to
// exit on a busy machine), a process writes no profile, and everything its file ran would not
// count. So the profile is written once the file's tests and hooks are done (this afterAll runs
// last), and on SIGTERM if that never happened (compiler-rt writes it only once).
import { createRequire } from "node:module";
import { afterAll } from "vitest";

const addon = process.env.NAPI_RS_NATIVE_LIBRARY_PATH;

function writeProfile(): void {
  if (!addon) return;
  const binding = createRequire(import.meta.url)(addon) as { writeCoverageProfile?: () => number };
  binding.writeCoverageProfile?.();
}

afterAll(writeProfile);
process.once("SIGTERM", () => {
  writeProfile();
  process.exit(143);
});
