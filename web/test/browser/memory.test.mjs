// Memory: loading the 98 MB model must keep the worker under 2.5× the file size. Measured two
// ways: the worker's wasm linear memory after the load (it never shrinks, so it is the peak of
// wasm memory during the load) plus the peak of its JS heap (CDP Runtime.getHeapUsage on the
// worker target, sampled every 20 ms during the load: used size + array buffer backing stores),
// and the peak resident memory (VmHWM) of the renderer process that hosts the page and its
// worker, less its resident memory before the load.
import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { open, loadDefault, MODEL_FILE } from "./harness.mjs";

/** Renderer processes of this browser profile: pid → {rss, hwm} in bytes. */
function renderers(profile) {
  const out = new Map();
  for (const pid of fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    let cmd;
    try { cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8"); } catch { continue; }
    if (!cmd.includes("--type=renderer") || (profile && !cmd.includes(profile) && !cmd.includes("chromium"))) continue;
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k) => Number(status.match(new RegExp(`${k}:\\s+(\\d+) kB`))?.[1] ?? 0) * 1024;
    out.set(pid, { rss: kb("VmRSS"), hwm: kb("VmHWM") });
  }
  return out;
}

test("peak worker memory while loading the model stays under 2.5x the file size", async () => {
  const size = fs.statSync(MODEL_FILE).size;
  const h = await open();
  try {
    const before = renderers();
    const cdp = await h.context.newCDPSession(h.page);
    await cdp.send("Performance.enable");
    // The worker's own CDP session, through the page's (non-flat auto-attach).
    const workers = new Set();
    const answers = new Map();
    let nextId = 1;
    cdp.on("Target.attachedToTarget", (e) => e.targetInfo.type === "worker" && workers.add(e.sessionId));
    cdp.on("Target.receivedMessageFromTarget", (e) => {
      const m = JSON.parse(e.message);
      answers.get(m.id)?.(m);
      answers.delete(m.id);
    });
    await cdp.send("Target.setAutoAttach", { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });
    const heapUsage = (sessionId) => new Promise((resolve) => {
      const id = nextId++;
      answers.set(id, resolve);
      cdp.send("Target.sendMessageToTarget", { sessionId, message: JSON.stringify({ id, method: "Runtime.getHeapUsage" }) }).catch(() => resolve({}));
    });
    let heapPeak = 0, samples = 0;
    const poll = setInterval(async () => {
      for (const sid of workers) {
        const u = (await heapUsage(sid)).result;
        if (u) {
          samples++;
          heapPeak = Math.max(heapPeak, u.usedSize + (u.backingStorageSize ?? 0));
        }
      }
    }, 20);
    const r = await loadDefault(h.page, h.modelUrl);
    clearInterval(poll);
    const mem = await h.page.evaluate(() => window.c.memory());
    const after = renderers();
    // The renderer that grew the most is the one running the worker.
    let grew = 0;
    for (const [pid, a] of after) grew = Math.max(grew, a.hwm - (before.get(pid)?.rss ?? 0));
    const pageHeap = (await cdp.send("Performance.getMetrics")).metrics.find((m) => m.name === "JSHeapUsedSize")?.value ?? 0;
    const workerTotal = mem.wasmBytes + heapPeak;
    const ratio = (x) => (x / size).toFixed(2);
    console.log(`model ${size} B; wasm memory ${mem.wasmBytes} B (${ratio(mem.wasmBytes)}x); worker JS heap peak ${heapPeak} B (${samples} samples); worker total ${ratio(workerTotal)}x; page JS heap ${pageHeap} B; renderer peak RSS growth ${grew} B (${ratio(grew)}x); load ${r.ms.toFixed(0)} ms`);
    assert.ok(mem.wasmBytes >= size, "the wasm memory must hold the model (else this measures nothing)");
    assert.ok(samples >= 5, `only ${samples} samples of the worker's heap`);
    assert.ok(workerTotal < 2.5 * size, `worker memory ${ratio(workerTotal)}x the model`);
    assert.ok(grew > 0.9 * size, `the renderer grew by only ${grew} B: wrong process measured`);
    assert.ok(grew < 2.5 * size, `renderer peak grew by ${ratio(grew)}x the model`);
  } finally {
    await h.close();
  }
});
