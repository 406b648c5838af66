// The playground in headless Chromium: its build served at "/" with the default model beside
// it, by the browser tests' server and browser set-up (web/test/). Missing pieces fail loudly.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { startServer, MODEL_FILE, WEB } from "../../web/test/server.mjs";
import { ARGS, CHROMIUM, using, withLogs } from "../../web/test/browser/harness.mjs";

// playwright-core is web/'s (the playground does not install a second copy).
const { chromium } = createRequire(path.join(WEB, "package.json"))("playwright-core");

export const PLAYGROUND = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const SCREENSHOTS = path.resolve(PLAYGROUND, "../docs/screenshots");

/** Server + browser + the playground page at `?query`, its model loaded (`state`: or failed).
 * If it does not get there, all is closed and the error carries the console. */
export async function openPlayground(query, state = "ready") {
  for (const [file, hint] of [
    [CHROMIUM, "install Chromium (cargo xtask setup)"],
    [path.join(PLAYGROUND, "dist/index.html"), "build the playground (cargo xtask playground --build-only)"],
    [path.join(PLAYGROUND, "dist/nib/wasm/nib_wasm_bg.wasm"), "build the playground (cargo xtask playground --build-only)"],
    [MODEL_FILE, "fetch the default model (cargo xtask setup)"],
  ]) {
    if (!fs.existsSync(file)) throw new Error(`${file} is missing: ${hint}`);
  }
  const srv = await startServer({ mounts: [["/", path.join(PLAYGROUND, "dist")]] });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "nib-playground-"));
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 1200, height: 720 } });
  // Every request the page and its workers make, from the first (the privacy check reads it).
  const seen = [];
  context.on("request", (r) => seen.push(r.url()));
  const page = context.pages()[0] ?? (await context.newPage());
  const logs = [];
  page.on("console", (m) => logs.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`[pageerror] ${e.stack ?? e}`));
  const close = async () => {
    await context.close();
    await srv.close();
    fs.rmSync(profile, { recursive: true, force: true });
  };
  try {
    await page.goto(`${srv.origin}/?${query}`);
    await page.waitForSelector("#status[data-nib-state=ready], #status[data-nib-state=error]", { timeout: 120000 });
    const got = await page.getAttribute("#status", "data-nib-state");
    if (got !== state) throw new Error(`the playground is ${got}, not ${state}: ${await page.textContent("#status")}`);
  } catch (e) {
    await close();
    throw withLogs(e, logs);
  }
  return { srv, context, page, logs, seen, close };
}

/** Runs `body(h)` on a fresh `openPlayground(query, state)` and closes it; a failure carries
 * the console. */
export async function withPlayground(query, body, state = "ready") {
  return using(await openPlayground(query, state), body);
}

/** Requests the controller of the page's editor has sent. */
export const requests = (page) => page.evaluate(() => window.nibPlayground.editor.controller.requests);

export function saveScreenshot(buf, name) {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  fs.writeFileSync(path.join(SCREENSHOTS, name), buf);
}
