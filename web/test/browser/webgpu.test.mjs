// The WebGPU backend in Chromium (SwiftShader, a CPU implementation of WebGPU, where there is no
// GPU): the same WGSL kernels as natively, judged against llama.cpp's fixtures with the rules of
// the CPU test. SwiftShader takes seconds per forward pass, so the logits run on the four
// shortest fixture prompts and greedy continuations are left to the native lavapipe test.
import test from "node:test";
import assert from "node:assert/strict";
import { withPage, fixture, MODEL_SHA256 } from "./harness.mjs";
import { judge } from "./llamacpp.mjs";

test("WebGPU: token ids, logits against llama.cpp, a completion; auto keeps to the CPU on a software adapter", async () => {
  await withPage(async (h) => {
    const loaded = await h.page.evaluate(async ({ url, sha256 }) => {
      window.g = await window.nib.createCompleter({ model: url, sha256, backend: "webgpu" });
      return { backend: window.g.backend, model: window.g.model };
    }, { url: h.modelUrl, sha256: MODEL_SHA256 });
    assert.equal(loaded.backend, "webgpu");
    assert.match(loaded.model.adapter, /gpu/i, JSON.stringify(loaded.model));

    const tokens = fixture("tokens_smollm2.json");
    const ids = await h.page.evaluate((cases) => Promise.all(cases.map((c) => window.g.tokenize(c.text))), tokens.cases);
    tokens.cases.forEach((c, i) => assert.deepEqual(ids[i], c.ids, c.name));

    const fx = fixture("logits_smollm2.json");
    assert.equal(fx.model_sha256, MODEL_SHA256);
    const cases = [...fx.cases].sort((a, b) => a.ids.length - b.ids.length).slice(0, 4);
    const results = await h.page.evaluate(async (cases) => {
      const out = [];
      for (const c of cases) {
        const wide = await window.g.logits(c.prompt, 400);
        out.push({ ids: wide.ids, top: wide.top.slice(0, 20), wide: wide.top });
      }
      return out;
    }, cases);
    judge(cases, results, "nib WebGPU (SwiftShader)");

    const comp = await h.page.evaluate(() => window.g.complete({ prefix: "def add(a, b):\n    return " }));
    assert.equal(comp.candidates[0].text, "a + b");
    // Greedy tokens are chosen on the GPU, with their log-probabilities (argmax + log-sum-exp).
    const lp = comp.candidates[0].meanLogprob;
    assert.ok(lp < 0 && lp > -10, `mean log-probability ${lp}`);

    // "auto" does not take a software adapter: the wasm CPU backend is faster than SwiftShader.
    const auto = await h.page.evaluate(async ({ url, sha256 }) => {
      const c = await window.nib.createCompleter({ model: url, sha256 });
      const b = c.backend;
      c.dispose();
      return b;
    }, { url: h.modelUrl, sha256: MODEL_SHA256 });
    assert.equal(auto, "cpu");
  });
});
