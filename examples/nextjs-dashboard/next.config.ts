import type { NextConfig } from "next";

const nextConfig: NextConfig = {
  // streamcast is a native addon (a .node file). Bundlers cannot put it into a chunk, so Next.js
  // must leave it to Node's own require() at run time. Without this line `next build` fails:
  //   Turbopack: "... .node (node addon) is not placeable in ESM chunks"
  //   webpack:   "Module parse failed: Unexpected character"
  serverExternalPackages: ["streamcast"],
};

export default nextConfig;
