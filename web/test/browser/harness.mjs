// Shared set-up of the browser tests: the static server, and Debian's Chromium driven by
// playwright-core with a fresh profile (a persistent one, so the Cache API survives reloads
// inside one test). Missing pieces fail loudly: these tests never skip.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { startServer, MODEL_FILE, MODEL_SHA256, MODEL_URL_PATH, WEB } from "../server.mjs";

export { MODEL_FILE, MODEL_SHA256, MODEL_URL_PATH };

export const CHROMIUM = process.env.NIB_CHROMIUM ?? "/usr/bin/chromium";
export const ARGS = ["--no-sandbox", "--enable-unsafe-webgpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"];

function require(file, hint) {
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: ${hint}`);
}

/** Server + browser + page on the test page (`server`: startServer's options, e.g. more
 * mounts). Call `close()` at the end. */
export async function open(server = {}) {
  require(CHROMIUM, "install Chromium (cargo xtask setup does: apt-get install -y chromium)");
  require(path.join(WEB, "dist/index.js"), "build the package first (cargo xtask web)");
  require(path.join(WEB, "dist/wasm/nib_wasm_bg.wasm"), "build the wasm first (cargo xtask web)");
  require(MODEL_FILE, "fetch the default model (cargo xtask setup)");
  const srv = await startServer(server);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "nib-chromium-"));
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS });
  const page = context.pages()[0] ?? (await context.newPage());
  const logs = [];
  page.on("console", (m) => logs.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`[pageerror] ${e.stack ?? e}`));
  const goto = async () => {
    await page.goto(`${srv.origin}/page/index.html`);
    await page.waitForFunction(() => window.nibReady === true, null, { timeout: 30000 });
  };
  await goto();
  return {
    srv,
    context,
    page,
    logs,
    goto,
    modelUrl: `${srv.origin}${MODEL_URL_PATH}`,
    async close() {
      await context.close();
      await srv.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Loads the default model in the page as `window.c` and returns what the page saw. */
export async function loadDefault(page, url, extra = {}) {
  return page.evaluate(async ({ url, sha256, extra }) => {
    const progress = [];
    const t0 = performance.now();
    window.c = await window.nib.createCompleter({ model: url, sha256, backend: "cpu", onProgress: (p) => progress.push(p), ...extra });
    return { ms: performance.now() - t0, progress, backend: window.c.backend, model: window.c.model };
  }, { url, sha256: MODEL_SHA256, extra });
}

export const fixture = (name) => JSON.parse(fs.readFileSync(path.join(WEB, "..", "tests/fixtures", name), "utf8"));
