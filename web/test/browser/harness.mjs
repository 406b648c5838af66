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

/**
 * `e` with the last lines of the page's and its worker's console appended (a worker's panic
 * message is only there). A new Error, `e` its cause: Node's spec reporter prints the stack,
 * which an Error fixes when it is made, so appending to `e.message` would not show.
 */
export function withLogs(e, logs, lines = 300) {
  const tail = logs.slice(-lines);
  const head = `--- browser console${logs.length > lines ? ` (last ${lines} of ${logs.length} lines)` : ""} ---`;
  return new Error(`${e?.message ?? e}\n${head}\n${tail.join("\n") || "(empty)"}`, { cause: e });
}

/** Server + browser + page on the test page (`server`: startServer's options, e.g. more
 * mounts). Call `close()` at the end; if the page does not come up, all is closed and the
 * error carries the console. */
export async function open(server = {}) {
  require(CHROMIUM, "install Chromium (cargo xtask setup does: apt-get install -y chromium)");
  require(path.join(WEB, "dist/index.js"), "build the package first (cargo xtask web)");
  require(path.join(WEB, "dist/wasm/nib_wasm_bg.wasm"), "build the wasm first (cargo xtask web)");
  require(MODEL_FILE, "fetch the default model (cargo xtask setup)");
  const srv = await startServer(server);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "nib-chromium-"));
  let context = null;
  let page = null;
  const logs = [];
  // Also on a failed start: a browser or server left open keeps Node's test process alive.
  const close = async () => {
    await context?.close();
    await srv.close();
    fs.rmSync(profile, { recursive: true, force: true });
  };
  const goto = async () => {
    await page.goto(`${srv.origin}/page/index.html`);
    await page.waitForFunction(() => window.nibReady === true, null, { timeout: 30000 });
  };
  try {
    context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS });
    page = context.pages()[0] ?? (await context.newPage());
    page.on("console", (m) => logs.push(`[${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => logs.push(`[pageerror] ${e.stack ?? e}`));
    await goto();
  } catch (e) {
    await close();
    throw withLogs(e, logs);
  }
  return { srv, context, page, logs, goto, modelUrl: `${srv.origin}${MODEL_URL_PATH}`, close };
}

/** Runs `body(h)` on an opened harness `h` (`{logs, close}`) and closes it; a failure carries
 * the console. */
export async function using(h, body) {
  try {
    return await body(h);
  } catch (e) {
    throw withLogs(e, h.logs);
  } finally {
    await h.close();
  }
}

/** Runs `body(h)` on a fresh `open(server)`, as `using` does. */
export async function withPage(body, server = {}) {
  return using(await open(server), body);
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
