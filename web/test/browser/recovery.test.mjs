// The completer copes with what breaks under it or around it: a lost WebGPU device (a GPU
// reset, the GPU process gone) is one typed error, then the model runs on the CPU; a damaged
// entry in the model cache is dropped and the model fetched again; a model another origin sends
// gzip-encoded, its Content-Length the compressed size, loads.
import test from "node:test";
import assert from "node:assert/strict";
import { withPage, MODEL_SHA256 } from "./harness.mjs";
import { startServer } from "../server.mjs";

test("a lost WebGPU device is one gpu_device_lost error, then the completer runs on the CPU", async () => {
  await withPage(async (h) => {
    const r = await h.page.evaluate(async ({ url, sha256 }) => {
      const c = await window.nib.createCompleter({ model: url, sha256, backend: "webgpu" });
      // No completion before the loss: SwiftShader takes a minute for one, and the completer
      // would answer the same request again from its cache, without the device.
      const req = { prefix: "def add(a, b):\n    return " };
      const before = c.backend;
      await c.__testLoseDevice();
      let lost = null;
      try {
        await c.complete(req);
      } catch (e) {
        lost = { code: e.code, message: e.message };
      }
      const text = (await c.complete(req)).candidates[0].text;
      const after = { backend: c.backend, text };
      c.dispose();
      return { before, lost, after };
    }, { url: h.modelUrl, sha256: MODEL_SHA256 });
    assert.equal(r.before, "webgpu");
    assert.equal(r.lost?.code, "gpu_device_lost", JSON.stringify(r.lost));
    assert.deepEqual(r.after, { backend: "cpu", text: "a + b" });
    assert.ok(h.logs.some((l) => l.includes("reloading the model on the CPU")), "the fall back is logged");
  });
});

test("a damaged cache entry is dropped and the model fetched again", async () => {
  await withPage(async (h) => {
    const r = await h.page.evaluate(async ({ url, sha256 }) => {
      // The entry nib would have stored, cut short (the key is cache.ts's cacheKey).
      const key = `${location.origin}/__nib_model_cache__/${sha256}/${encodeURIComponent(url)}`;
      const cache = await caches.open("nib-models-v1");
      await cache.put(key, new Response(new Uint8Array(4096).fill(7), { headers: { "content-length": "9999999" } }));
      const load = async () => {
        const c = await window.nib.createCompleter({ model: url, sha256, backend: "cpu" });
        const out = { fromCache: c.model.fromCache, text: (await c.complete({ prefix: "def add(a, b):\n    return " })).candidates[0].text };
        c.dispose();
        return out;
      };
      return { first: await load(), second: await load() };
    }, { url: h.modelUrl, sha256: MODEL_SHA256 });
    assert.deepEqual(r.first, { fromCache: false, text: "a + b" });
    assert.deepEqual(r.second, { fromCache: true, text: "a + b" }, "the model fetched again was cached");
    assert.ok(h.logs.some((l) => l.includes("the cached model is unreadable")), "the damaged entry is logged");
  });
});

test("a gzip-encoded model from another origin loads: its Content-Length is only a hint", async () => {
  const other = await startServer();
  try {
    await withPage(async (h) => {
      const r = await h.page.evaluate(async ({ url, sha256 }) => {
        const c = await window.nib.createCompleter({ model: url, sha256, backend: "cpu" });
        const out = { bytes: c.model.bytes, text: (await c.complete({ prefix: "def add(a, b):\n    return " })).candidates[0].text };
        c.dispose();
        return out;
      }, { url: `${other.origin}/gzip/model.gguf`, sha256: MODEL_SHA256 });
      assert.equal(r.text, "a + b");
      assert.ok(r.bytes > 50e6, JSON.stringify(r));
    });
  } finally {
    await other.close();
  }
});
