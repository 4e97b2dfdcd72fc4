// Which server binary the tests run (docs/servers.md): STREAMCAST_TEST_SERVER names one of the
// matrix, installed by `scripts/servers.sh install` into .servers/<name>/bin/; unset or
// "redis-7.0" is redis-server from PATH (Debian's Redis 7.0). A selected server that is not
// installed throws with the command that installs it, so a run never silently tests another.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const TEST_SERVERS = ["redis-7.0", "redis-8.2", "valkey-8.1", "valkey-9.1"] as const;

/** The selected server's name ("redis-7.0" when unset). */
export function testServerName(): string {
  return process.env.STREAMCAST_TEST_SERVER || "redis-7.0";
}

/** Path (or PATH name) of the selected server's binary. */
export function serverBinary(): string {
  const name = testServerName();
  if (name === "redis-7.0") return "redis-server";
  if (!(TEST_SERVERS as readonly string[]).includes(name)) {
    throw new Error(`STREAMCAST_TEST_SERVER=${name} is not a test server (${TEST_SERVERS.join(", ")})`);
  }
  const bin = join(ROOT, ".servers", name, "bin", name.startsWith("valkey-") ? "valkey-server" : "redis-server");
  if (!existsSync(bin)) throw new Error(`STREAMCAST_TEST_SERVER=${name}: ${bin} is missing; run \`scripts/servers.sh install ${name}\``);
  return bin;
}

// Where available, setpriv makes the kernel kill the server when this process dies in any way
// (even a SIGKILL from the test runner), so no orphaned server outlives a test file.
const SETPRIV = "/usr/bin/setpriv";

/** The command (program first) that starts `binary` (default: the selected server). */
export function serverLauncher(binary: string = serverBinary()): string[] {
  return existsSync(SETPRIV) ? [SETPRIV, "--pdeathsig", "KILL", binary] : [binary];
}
