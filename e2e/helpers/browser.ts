// Headless Chromium from Debian's `chromium` package, driven by playwright-core. Never a browser
// download: .ci/run installs the package with apt when /usr/bin/chromium is missing.
import { chromium, type Browser } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

/** Launches Chromium. playwright-core gives every launch a fresh temporary profile (--user-data-dir). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox", // we run as root in CI
      "--headless",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}
