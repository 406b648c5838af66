// Memory (issue #7): a model with Qwen2.5-Coder-0.5B's shapes in Q4_0 (random weights, the real
// Qwen2.5 vocabulary: target/xtask/qwen2/qwen2-0.5b-shape-q4_0.gguf, written by `cargo xtask
// setup` with tests/fixtures/make_qwen2_05b.py) loads on WebGPU (SwiftShader) through
// `createCompleter` and generates tokens.
//
// Reports the limits nib's device asks for (the same `Gpu::new_async` the worker runs, opened
// in the page through the wasm module's `GpuDevice.describe()`) next to the adapter's and
// WebGPU's defaults (a device requested with no limits), and the parts per weight: a weight is
// split only when it exceeds the device's binding, and the largest here (the 151,936 × 896
// embedding, 76.6 MB) is under the 128 MiB default, so every weight is one part
// (engine/tests/gpu_limits.rs checks the split itself). Memory is measured as the 98 MB
// model's check does (memwatch.mjs): the worker's wasm memory after the load (its peak) plus
// its peak JS heap must stay under 2.5× the file; the renderer's and the GPU process's peak
// resident growth are printed (SwiftShader keeps the GPU buffers in the GPU process).
import test from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { withPage } from "./harness.mjs";
import { ROOT } from "../server.mjs";
import { processes, peakGrowth, watchWorkerHeap } from "./memwatch.mjs";

const DIR = path.join(ROOT, "target/xtask/qwen2");
const FILE = "qwen2-0.5b-shape-q4_0.gguf";
const LARGEST_WEIGHT = 151_936 / 32 * 18 * 896; // token_embd in Q4_0, bytes
const WEBGPU_DEFAULT_BINDING = 128 * 2 ** 20;

test("a 0.5B-shaped Q4_0 model on WebGPU: limits, parts per weight, peak worker memory, tokens", { timeout: 170_000 }, async () => {
  const model = path.join(DIR, FILE);
  if (!fs.existsSync(model)) throw new Error(`${model} is missing: run cargo xtask setup`);
  const size = fs.statSync(model).size;
  const sha256 = crypto.createHash("sha256").update(fs.readFileSync(model)).digest("hex");
  await withPage(async (h) => {
    const limits = await h.page.evaluate(async () => {
      const pick = (l) => ({ binding: l.maxStorageBufferBindingSize, buffer: l.maxBufferSize });
      const adapter = await navigator.gpu.requestAdapter();
      const plain = await adapter.requestDevice();
      const defaults = pick(plain.limits);
      plain.destroy();
      const m = await import("/dist/wasm/nib_wasm.js");
      await m.default({ module_or_path: "/dist/wasm/nib_wasm_bg.wasm" });
      const dev = await m.GpuDevice.open();
      const nib = dev.describe();
      dev.free();
      return { adapter: pick(adapter.limits), defaults, nib };
    });
    const got = limits.nib.match(/max storage binding (\d+) MiB, max buffer (\d+) MiB/);
    assert.ok(got, limits.nib);
    const nibBinding = Number(got[1]) * 2 ** 20;
    console.log(`WebGPU defaults: binding ${limits.defaults.binding} B, buffer ${limits.defaults.buffer} B; adapter: binding ${limits.adapter.binding} B, buffer ${limits.adapter.buffer} B; nib's device: ${limits.nib}`);
    assert.equal(limits.defaults.binding, WEBGPU_DEFAULT_BINDING);
    // nib asks for what the adapter allows (explicitly, past the defaults where it allows more).
    assert.equal(nibBinding, Math.floor(limits.adapter.binding / 2 ** 20) * 2 ** 20);
    assert.equal(Number(got[2]), Math.floor(limits.adapter.buffer / 2 ** 20));
    // Parts per weight: rows per part = (binding - 8) / row bytes, so one part when it fits.
    const parts = Math.ceil(LARGEST_WEIGHT / (Math.min(nibBinding, Number(got[2]) * 2 ** 20) - 8));
    console.log(`largest weight ${LARGEST_WEIGHT} B: ${parts} part(s) on this device, ${Math.ceil(LARGEST_WEIGHT / (WEBGPU_DEFAULT_BINDING - 8))} under WebGPU's default binding`);
    assert.equal(parts, 1);

    const renderers = processes("renderer"), gpus = processes("gpu-process");
    const watch = await watchWorkerHeap(h.context, h.page);
    const loaded = await h.page.evaluate(async ({ url, sha256 }) => {
      const t0 = performance.now();
      window.g = await window.nib.createCompleter({ model: url, sha256, backend: "webgpu" });
      return { ms: performance.now() - t0, backend: window.g.backend, model: window.g.model };
    }, { url: `${h.srv.origin}/models/qwen2/${FILE}`, sha256 });
    const { peak: heapPeak, samples } = watch.stop();
    const mem = await h.page.evaluate(() => window.g.memory());
    const grewRenderer = peakGrowth(renderers, processes("renderer"));
    const grewGpu = peakGrowth(gpus, processes("gpu-process"));
    assert.equal(loaded.backend, "webgpu");
    assert.equal(loaded.model.nLayers, 24);
    assert.equal(loaded.model.vocab, 151_936);
    const ratio = (x) => (x / size).toFixed(2);
    const workerTotal = mem.wasmBytes + heapPeak;
    console.log(`model ${size} B loaded in ${loaded.ms.toFixed(0)} ms on ${loaded.model.adapter}; wasm memory ${mem.wasmBytes} B (${ratio(mem.wasmBytes)}x); worker JS heap peak ${heapPeak} B (${samples} samples); worker total ${ratio(workerTotal)}x; renderer peak RSS growth ${grewRenderer} B (${ratio(grewRenderer)}x); GPU process peak RSS growth ${grewGpu} B (${ratio(grewGpu)}x)`);
    assert.ok(mem.wasmBytes >= size, "the wasm memory must hold the model (else this measures nothing)");
    assert.ok(samples >= 5, `only ${samples} samples of the worker's heap`);
    assert.ok(workerTotal < 2.5 * size, `worker memory ${ratio(workerTotal)}x the model`);

    // SwiftShader takes ~10 s per forward pass of this model: a one-token prompt, two tokens.
    const t0 = Date.now();
    const tokens = await h.page.evaluate(async () => {
      const out = [];
      for await (const t of window.g.generate("def", { maxTokens: 2, ignoreEos: true })) out.push(t);
      return out;
    });
    console.log(`generated ${tokens.length} tokens in ${Date.now() - t0} ms: ${JSON.stringify(tokens.map((t) => t.text).join(""))}`);
    assert.equal(tokens.length, 2);
    assert.ok(tokens.every((t) => Number.isFinite(t.logprob) && t.logprob <= 0), JSON.stringify(tokens));
    assert.ok(grewRenderer < 3.5 * size, `renderer peak grew by ${ratio(grewRenderer)}x the model`);
  }, { mounts: [["/models/qwen2/", DIR]] });
});
