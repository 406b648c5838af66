// JupyterLab end to end: the installed nib-jupyterlab labextension in a real Jupyter server
// (no token, a temporary root, the model served by the server's own files/ endpoint) and
// headless Chromium. A notebook's first cell defines add_numbers; typing `total = add_` in the
// second cell must bring JupyterLab's ghost text from nib, which JupyterLab's accept key (Tab;
// Alt+End in 4.1) accepts. Without the first cell in the prompt the model says `to_list(…)`
// (checked natively with `nib complete`), so `add_numbers(` in the accepted text shows that
// earlier cells are context. Then: Alt+\ and Escape, and a keystroke during a generation,
// which must abort it in the worker. The CPU backend runs (SwiftShader WebGPU is ~4 s a token).
// Saves docs/screenshots/jupyterlab.png.
import test from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { ARGS, CHROMIUM, MODEL_FILE, MODEL_SHA256 } from "../../test/browser/harness.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(here, "../../..");
const JUPYTER = process.env.NIB_JUPYTER ?? path.join(ROOT, "target/xtask/jupyterlab/bin/jupyter");
const SCREENSHOT = path.join(ROOT, "docs/screenshots/jupyterlab.png");
const MODEL_REL = `models/default/${path.basename(MODEL_FILE)}`;
const FIRST_CELL = 'def add_numbers(a, b):\n    """Return the sum of a and b."""\n    return a + b';
const TYPED = "total = add_";

function need(file, hint) {
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: ${hint}`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const write = (file, value) => {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, typeof value === "string" ? value : JSON.stringify(value, null, 1));
};

/** A temporary Jupyter root with the notebook and the model, and user settings for the lab. */
function prepare(dir) {
  const root = path.join(dir, "root");
  // The model under the root, where the relative modelUrl finds it through files/ (which
  // refuses symlinks out of the root): a hard link, or a copy across file systems.
  const model = path.join(root, MODEL_REL);
  fs.mkdirSync(path.dirname(model), { recursive: true });
  try {
    fs.linkSync(MODEL_FILE, model);
  } catch {
    fs.copyFileSync(MODEL_FILE, model);
  }
  const cell = (id, source) => ({ cell_type: "code", id, execution_count: null, metadata: {}, outputs: [], source });
  write(path.join(root, "nib.ipynb"), {
    cells: [cell("defines", FIRST_CELL), cell("types", "")],
    metadata: { kernelspec: { display_name: "Python 3", language: "python", name: "python3" }, language_info: { name: "python" } },
    nbformat: 4,
    nbformat_minor: 5,
  });
  const settings = path.join(dir, "settings");
  write(path.join(settings, "nib-jupyterlab/plugin.jupyterlab-settings"), { modelUrl: MODEL_REL, sha256: MODEL_SHA256, backend: "cpu", mode: "line", debounceMs: 100 });
  // The inline completer with nib enabled (explicitly: JupyterLab's defaults have changed
  // between versions), its own debounce off (nib has one), a timeout that covers the load.
  write(path.join(settings, "@jupyterlab/completer-extension/inline-completer.jupyterlab-settings"), {
    providers: { nib: { enabled: true, debouncerDelay: 0, timeout: 120000 } },
  });
  // No news or update check: nothing but the model may leave the machine, and no popup.
  write(path.join(settings, "@jupyterlab/apputils-extension/notification.jupyterlab-settings"), { fetchNews: "false", checkForUpdates: false });
  return { root, settings };
}

async function waitForServer(origin, proc, log) {
  const until = Date.now() + 90000;
  while (Date.now() < until) {
    if (proc.exitCode !== null) throw new Error(`jupyter lab exited (${proc.exitCode}):\n${log.join("")}`);
    try {
      const r = await fetch(`${origin}/api/status`);
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`jupyter lab did not answer in 90 s:\n${log.join("")}`);
}

test("JupyterLab: nib's ghost text in a notebook, with the earlier cell as context, accepted with Tab", async () => {
  need(JUPYTER, "install JupyterLab and the extension (cargo xtask setup; see web/jupyterlab/README.md)");
  need(CHROMIUM, "install Chromium (cargo xtask setup)");
  need(MODEL_FILE, "fetch the default model (cargo xtask setup)");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nib-jupyterlab-"));
  const { root, settings } = prepare(dir);
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const log = [];
  const lab = spawn(
    JUPYTER,
    ["lab", "--no-browser", "--ServerApp.ip=127.0.0.1", `--ServerApp.port=${port}`, "--ServerApp.port_retries=0", "--IdentityProvider.token=", "--ServerApp.password=", `--ServerApp.root_dir=${root}`, "--LabApp.expose_app_in_browser=True", "--LabApp.extension_manager=readonly", "--allow-root"],
    {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...process.env,
        JUPYTERLAB_SETTINGS_DIR: settings,
        JUPYTERLAB_WORKSPACES_DIR: path.join(dir, "workspaces"),
        JUPYTER_CONFIG_DIR: path.join(dir, "config"),
        JUPYTER_RUNTIME_DIR: path.join(dir, "runtime"),
        IPYTHONDIR: path.join(dir, "ipython"),
      },
    },
  );
  lab.stdout.on("data", (d) => log.push(String(d)));
  lab.stderr.on("data", (d) => log.push(String(d)));
  let context = null;
  const pageLog = [];
  try {
    await waitForServer(origin, lab, log);
    context = await chromium.launchPersistentContext(path.join(dir, "profile"), { executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 1100, height: 640 } });
    const seen = [];
    context.on("request", (r) => seen.push(r.url()));
    const page = context.pages()[0] ?? (await context.newPage());
    page.on("console", (m) => pageLog.push(`[${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => pageLog.push(`[pageerror] ${e.stack ?? e}`));
    // What the page tells the nib worker: the test sees the provider's aborts there.
    await page.addInitScript(() => {
      window.nibPosted = [];
      const post = Worker.prototype.postMessage;
      Worker.prototype.postMessage = function (m, ...rest) {
        if (m && typeof m.type === "string") window.nibPosted.push({ type: m.type, id: m.id });
        return post.call(this, m, ...rest);
      };
    });
    await page.goto(`${origin}/lab/tree/nib.ipynb`);

    const cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell");
    await cells.nth(1).locator(".cm-content").waitFor({ timeout: 90000 });
    await page.locator(".nib-status").waitFor({ timeout: 30000 });
    // Whether JupyterLab ever showed ghost text still streaming (nib's stream() at work).
    await page.evaluate(() => {
      window.sawStreaming = false;
      new MutationObserver(() => {
        if (document.querySelector(".jp-GhostText-streamingIndicator")) window.sawStreaming = true;
      }).observe(document.body, { subtree: true, childList: true });
    });
    await cells.nth(1).locator(".cm-content").click();
    await page.keyboard.type(TYPED, { delay: 40 });

    // Streamed ghost text, finished: nib says ready and JupyterLab's streaming mark is gone.
    const ghost = page.locator(".jp-GhostText");
    await page.waitForFunction(() => document.querySelector(".jp-GhostText") || document.querySelector(".nib-status")?.getAttribute("data-nib-state") === "error", null, { timeout: 120000 });
    assert.notEqual(await page.locator(".nib-status").getAttribute("data-nib-state"), "error", await page.locator(".nib-status").getAttribute("title"));
    await page.waitForFunction(
      () => document.querySelector(".nib-status")?.getAttribute("data-nib-state") === "ready" && !document.querySelector(".jp-GhostText-streamingIndicator"),
      null,
      { timeout: 60000 },
    );
    const shown = await ghost.first().textContent();
    const status = await page.locator(".nib-status").textContent();
    console.log(`JupyterLab ${await page.evaluate(() => window.jupyterapp.version)}; ghost text: ${JSON.stringify(shown)}; status: ${status}`);
    assert.ok(shown && shown.length > 0, "the ghost text is not empty");
    assert.equal(await page.locator(".nib-status").getAttribute("data-nib-backend"), "cpu");
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });

    assert.ok(await page.evaluate(() => window.sawStreaming), "the ghost text was streamed");
    const source = () => window.jupyterapp.shell.currentWidget.content.widgets[1].model.sharedModel.getSource();
    assert.equal(await page.evaluate(source), TYPED, "the ghost text is not in the cell before Tab");

    // The first key JupyterLab binds to accepting: Tab (JupyterLab 4.6), Alt+End (4.1).
    const accept = await page.evaluate(() => window.jupyterapp.commands.keyBindings.find((b) => b.command === "inline-completer:accept")?.keys[0]);
    assert.ok(accept, "JupyterLab binds a key to inline-completer:accept");
    const acceptKey = accept.split(" ").join("+");

    // Typing the suggestion's first character shortens it at once (no new answer needed:
    // the next request waits for the debounce), and accepting then inserts the rest.
    await page.keyboard.type(shown[0]);
    assert.equal(await ghost.first().textContent(), shown.slice(1), "typing through the ghost text keeps it");
    await page.keyboard.press(acceptKey);
    await page.waitForFunction((typed) => window.jupyterapp.shell.currentWidget.content.widgets[1].model.sharedModel.getSource() !== typed, TYPED + shown[0], { timeout: 10000 });
    const text = await page.evaluate(source);
    assert.equal(text, TYPED + shown, `${acceptKey} inserted the ghost text as shown`);
    assert.match(text, /^total = add_numbers\(/, "the completion uses the function the first cell defines");

    // An explicit request (Alt+\): sampled candidates, shown as ghost text.
    await page.keyboard.press("End");
    await page.keyboard.press("Enter");
    await page.keyboard.type("print(tot", { delay: 40 });
    await page.keyboard.press("Alt+Backslash");
    await page.waitForFunction(() => document.querySelector(".jp-GhostText") && document.querySelector(".nib-status")?.getAttribute("data-nib-state") === "ready", null, { timeout: 60000 });
    console.log(`invoked: ${JSON.stringify(await ghost.first().textContent())}`);
    await page.keyboard.press("Escape");
    await page.waitForFunction(() => !document.querySelector(".jp-GhostText"), null, { timeout: 10000 });

    // A keystroke while the model runs aborts that request in the worker; the next one answers.
    await page.keyboard.press("End");
    await page.keyboard.press("Enter");
    await page.keyboard.type("y = add_", { delay: 40 });
    await page.waitForFunction(() => document.querySelector(".nib-status")?.getAttribute("data-nib-state") === "thinking", null, { timeout: 30000 });
    const running = await page.evaluate(() => window.nibPosted.filter((m) => m.type === "complete").at(-1).id);
    await page.keyboard.type("n");
    await page.waitForFunction((id) => window.nibPosted.some((m) => m.type === "abort" && m.id === id), running, { timeout: 5000 });
    await page.waitForFunction(
      () => document.querySelector(".jp-GhostText") && document.querySelector(".nib-status")?.getAttribute("data-nib-state") === "ready" && !document.querySelector(".jp-GhostText-streamingIndicator"),
      null,
      { timeout: 60000 },
    );
    const after = await page.evaluate(() => window.nibPosted.filter((m) => m.type === "complete").at(-1).id);
    assert.ok(after > running, "a new request followed the aborted one");
    console.log(`after an abort: ${JSON.stringify(await ghost.first().textContent())}`);

    // Privacy: the page and the worker asked only the Jupyter server, the model included.
    const foreign = seen.filter((u) => !(u.startsWith(`${origin}/`) || u.startsWith("data:") || u.startsWith("blob:")));
    assert.deepEqual(foreign, [], "requests outside the Jupyter server");
    assert.ok(seen.includes(`${origin}/files/${MODEL_REL}`), "the model came from the server's files/");
    assert.ok(seen.some((u) => u.startsWith(`${origin}/lab/extensions/nib-jupyterlab/static/nib/wasm/nib_wasm_bg.wasm`)), "the wasm came from the labextension's static files");
    // The build for browsers without relaxed SIMD (Safari) ships too; this Chromium loads the other.
    const simd128 = await page.evaluate(async (u) => (await fetch(u)).status, `${origin}/lab/extensions/nib-jupyterlab/static/nib/wasm/nib_wasm_simd128_bg.wasm`);
    assert.equal(simd128, 200, "the labextension serves nib_wasm_simd128_bg.wasm");
  } catch (e) {
    console.log(`--- page log ---\n${pageLog.join("\n")}\n--- jupyter log (tail) ---\n${log.join("").slice(-4000)}`);
    throw e;
  } finally {
    await context?.close();
    try {
      process.kill(-lab.pid, "SIGTERM");
    } catch {
      // already gone
    }
    await new Promise((r) => (lab.exitCode !== null ? r() : lab.once("exit", r)));
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
