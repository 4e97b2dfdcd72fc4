// Which binary the generated loader (index.js) picks, on systems this machine is not: musl (Alpine)
// and arm64. The loader's source runs with stubs for what it reads (process.platform/arch/report,
// /usr/bin/ldd through fs.readFileSync, `ldd --version` through child_process.execSync) and a
// `require` that records every module it asks for, so the test sees the order of candidates and
// which one it settles on. No binary is loaded.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const source = readFileSync(join(root, "index.js"), "utf8");
const version: string = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version;

const GLIBC_LDD = "#! /bin/bash\n# ldd from the GNU C Library\nTEXTDOMAIN=libc\n";
const MUSL_LDD = "#!/bin/sh\nexec /lib/ld-musl-x86_64.so.1 --list \"$@\"\n";

interface System {
  platform?: string;
  arch: string;
  /** Contents of /usr/bin/ldd, or null when it cannot be read. */
  ldd: string | null;
  /** What process.report.getReport() returns, or null for no process.report at all. */
  report?: { header?: { glibcVersionRuntime?: string }; sharedObjects?: string[] } | null;
  /** Output of `ldd --version`, or null when it fails. */
  lddVersion?: string | null;
  /** Modules that load, with what they export; everything else throws MODULE_NOT_FOUND. */
  available?: Record<string, unknown>;
  env?: Record<string, string>;
}

/** Runs index.js against `sys`; returns the modules it asked for, in order, and the result. */
function load(sys: System): { requested: string[]; exports?: Record<string, unknown>; error?: Error } {
  const requested: string[] = [];
  const available = sys.available ?? {};
  const fakeRequire = (id: string): unknown => {
    if (id === "fs") {
      return {
        readFileSync: (path: string) => {
          if (path !== "/usr/bin/ldd") throw new Error(`unexpected read of ${path}`);
          if (sys.ldd === null) throw Object.assign(new Error("ENOENT"), { code: "ENOENT" });
          return sys.ldd;
        },
      };
    }
    if (id === "child_process") {
      return {
        execSync: (cmd: string) => {
          requested.push(`exec:${cmd}`);
          if (sys.lddVersion == null) throw new Error("ldd: not found");
          return sys.lddVersion;
        },
      };
    }
    requested.push(id);
    if (id in available) return available[id];
    throw Object.assign(new Error(`Cannot find module '${id}'`), { code: "MODULE_NOT_FOUND" });
  };
  // The WASI fallback probes with require.resolve; nothing WASI is ever available here.
  fakeRequire.resolve = (id: string): string => {
    if (id in available) return id;
    throw Object.assign(new Error(`Cannot find module '${id}'`), { code: "MODULE_NOT_FOUND" });
  };
  const report = sys.report === undefined ? { header: { glibcVersionRuntime: "2.36" }, sharedObjects: [] } : sys.report;
  const fakeProcess = {
    platform: sys.platform ?? "linux",
    arch: sys.arch,
    env: sys.env ?? {},
    report: report === null ? undefined : { getReport: () => report },
  };
  const module = { exports: {} as Record<string, unknown> };
  try {
    new Function("require", "module", "exports", "process", "__filename", "__dirname", source)(
      fakeRequire,
      module,
      module.exports,
      fakeProcess,
      join(root, "index.js"),
      root,
    );
    return { requested, exports: module.exports };
  } catch (error) {
    return { requested, error: error as Error };
  }
}

const binding = (name: string) => ({ StreamsClient: class {}, getStreamsClient: () => name, setLogger: () => {} });
const pkgJson = (v = version) => ({ version: v });

describe("the generated loader picks the binary for the system it runs on", () => {
  it("x64 with musl's ldd: the linux-x64-musl package, never a glibc binary", () => {
    const r = load({
      arch: "x64",
      ldd: MUSL_LDD,
      available: {
        "streamcast-linux-x64-musl": binding("x64-musl"),
        "streamcast-linux-x64-musl/package.json": pkgJson(),
        "streamcast-linux-x64-gnu": binding("x64-gnu"),
      },
    });
    expect(r.error).toBeUndefined();
    expect(r.requested.slice(0, 3)).toEqual([
      "./streamcast.linux-x64-musl.node",
      "streamcast-linux-x64-musl",
      "streamcast-linux-x64-musl/package.json",
    ]);
    expect(r.requested.some((id) => id.includes("gnu"))).toBe(false);
    expect((r.exports!.getStreamsClient as () => string)()).toBe("x64-musl");
  });

  it("arm64 with musl's ldd: the linux-arm64-musl package", () => {
    const r = load({
      arch: "arm64",
      ldd: MUSL_LDD.replace("x86_64", "aarch64"),
      available: { "streamcast-linux-arm64-musl": binding("arm64-musl"), "streamcast-linux-arm64-musl/package.json": pkgJson() },
    });
    expect(r.error).toBeUndefined();
    expect(r.requested[0]).toBe("./streamcast.linux-arm64-musl.node");
    expect((r.exports!.getStreamsClient as () => string)()).toBe("arm64-musl");
  });

  it("glibc's ldd: the gnu packages, on x64 and on arm64", () => {
    for (const arch of ["x64", "arm64"]) {
      const r = load({
        arch,
        ldd: GLIBC_LDD,
        available: { [`streamcast-linux-${arch}-gnu`]: binding(`${arch}-gnu`), [`streamcast-linux-${arch}-gnu/package.json`]: pkgJson() },
      });
      expect(r.error).toBeUndefined();
      expect(r.requested.slice(0, 2)).toEqual([`./streamcast.linux-${arch}-gnu.node`, `streamcast-linux-${arch}-gnu`]);
      expect(r.requested.some((id) => id.includes("musl"))).toBe(false);
    }
  });

  it("no readable /usr/bin/ldd: the process report decides (no glibc version, musl's loader among the shared objects)", () => {
    const musl = load({
      arch: "x64",
      ldd: null,
      report: { header: {}, sharedObjects: ["/usr/bin/node", "/lib/ld-musl-x86_64.so.1"] },
      available: { "streamcast-linux-x64-musl": binding("x64-musl"), "streamcast-linux-x64-musl/package.json": pkgJson() },
    });
    expect(musl.error).toBeUndefined();
    expect(musl.requested[0]).toBe("./streamcast.linux-x64-musl.node");

    const gnu = load({
      arch: "x64",
      ldd: null,
      report: { header: { glibcVersionRuntime: "2.17" }, sharedObjects: ["/lib/ld-musl-x86_64.so.1"] },
      available: { "streamcast-linux-x64-gnu": binding("x64-gnu"), "streamcast-linux-x64-gnu/package.json": pkgJson() },
    });
    expect(gnu.error).toBeUndefined();
    expect(gnu.requested[0]).toBe("./streamcast.linux-x64-gnu.node");
  });

  it("neither ldd nor a report: `ldd --version` decides", () => {
    const musl = load({
      arch: "x64",
      ldd: null,
      report: null,
      lddVersion: "musl libc (x86_64)\nVersion 1.2.5\n",
      available: { "streamcast-linux-x64-musl": binding("x64-musl"), "streamcast-linux-x64-musl/package.json": pkgJson() },
    });
    expect(musl.error).toBeUndefined();
    expect(musl.requested).toContain("exec:ldd --version");
    expect(musl.requested).toContain("streamcast-linux-x64-musl");

    // Nothing tells: glibc is assumed.
    const unknown = load({
      arch: "x64",
      ldd: null,
      report: null,
      lddVersion: null,
      available: { "streamcast-linux-x64-gnu": binding("x64-gnu"), "streamcast-linux-x64-gnu/package.json": pkgJson() },
    });
    expect(unknown.error).toBeUndefined();
    expect(unknown.requested).toContain("streamcast-linux-x64-gnu");
  });

  it("macOS and Windows: the darwin and win32-msvc packages", () => {
    for (const [platform, arch, pkg] of [
      ["darwin", "arm64", "streamcast-darwin-arm64"],
      ["darwin", "x64", "streamcast-darwin-x64"],
      ["win32", "x64", "streamcast-win32-x64-msvc"],
    ]) {
      const r = load({ platform, arch, ldd: null, available: { [pkg]: binding(pkg), [`${pkg}/package.json`]: pkgJson() } });
      expect(r.error, `${platform}-${arch}`).toBeUndefined();
      expect(r.requested).toContain(pkg);
      expect((r.exports!.getStreamsClient as () => string)()).toBe(pkg);
    }
  });

  it("the musl package missing on a musl system: a load error that names it, not a glibc binary", () => {
    const r = load({ arch: "x64", ldd: MUSL_LDD, available: { "streamcast-linux-x64-gnu": binding("x64-gnu") } });
    expect(r.error?.message).toMatch(/Cannot find native binding/);
    const causes: string[] = [];
    for (let e: unknown = r.error?.cause; e instanceof Error; e = e.cause) causes.push(e.message);
    expect(causes.join("\n")).toContain("streamcast-linux-x64-musl");
    expect(r.requested).not.toContain("streamcast-linux-x64-gnu");
  });

  it("a platform package of another version is refused when NAPI_RS_ENFORCE_VERSION_CHECK is set", () => {
    const available = { "streamcast-linux-x64-musl": binding("x64-musl"), "streamcast-linux-x64-musl/package.json": pkgJson("0.0.9") };
    const strict = load({ arch: "x64", ldd: MUSL_LDD, available, env: { NAPI_RS_ENFORCE_VERSION_CHECK: "1" } });
    expect(strict.error?.message).toMatch(/Cannot find native binding/);
    let chain = "";
    for (let e: unknown = strict.error?.cause; e instanceof Error; e = e.cause) chain += e.message + "\n";
    expect(chain).toContain(`expected ${version} but got 0.0.9`);
    // Without the variable the loader takes it (the versions are kept equal by pack-all).
    expect(load({ arch: "x64", ldd: MUSL_LDD, available }).error).toBeUndefined();
  });
});
