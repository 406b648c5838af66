// Memory: loading the 98 MB model must keep the worker under 2.5× the file size. Measured two
// ways: the worker's wasm linear memory after the load (it never shrinks, so it is the peak of
// wasm memory during the load) plus the peak of its JS heap (CDP Runtime.getHeapUsage on the
// worker target, sampled every 20 ms during the load: used size + array buffer backing stores),
// and the peak resident memory (VmHWM) of the renderer process that hosts the page and its
// worker, less its resident memory before the load.
import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { withPage, loadDefault, MODEL_FILE } from "./harness.mjs";
import { processes, peakGrowth, watchWorkerHeap } from "./memwatch.mjs";

test("peak worker memory while loading the model stays under 2.5x the file size", async () => {
  const size = fs.statSync(MODEL_FILE).size;
  await withPage(async (h) => {
    const before = processes("renderer");
    const watch = await watchWorkerHeap(h.context, h.page);
    const r = await loadDefault(h.page, h.modelUrl);
    const { peak: heapPeak, samples } = watch.stop();
    const mem = await h.page.evaluate(() => window.c.memory());
    // The renderer that grew the most is the one running the worker.
    const grew = peakGrowth(before, processes("renderer"));
    const pageHeap = (await watch.cdp.send("Performance.getMetrics")).metrics.find((m) => m.name === "JSHeapUsedSize")?.value ?? 0;
    const workerTotal = mem.wasmBytes + heapPeak;
    const ratio = (x) => (x / size).toFixed(2);
    console.log(`model ${size} B; wasm memory ${mem.wasmBytes} B (${ratio(mem.wasmBytes)}x); worker JS heap peak ${heapPeak} B (${samples} samples); worker total ${ratio(workerTotal)}x; page JS heap ${pageHeap} B; renderer peak RSS growth ${grew} B (${ratio(grew)}x); load ${r.ms.toFixed(0)} ms`);
    assert.ok(mem.wasmBytes >= size, "the wasm memory must hold the model (else this measures nothing)");
    assert.ok(samples >= 5, `only ${samples} samples of the worker's heap`);
    assert.ok(workerTotal < 2.5 * size, `worker memory ${ratio(workerTotal)}x the model`);
    assert.ok(grew > 0.9 * size, `the renderer grew by only ${grew} B: wrong process measured`);
    assert.ok(grew < 2.5 * size, `renderer peak grew by ${ratio(grew)}x the model`);
  });
});
