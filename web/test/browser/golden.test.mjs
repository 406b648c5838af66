// The CPU wasm backend in Chromium against llama.cpp's fixtures, with the rules of the
// native tests (engine/tests/tokenizer.rs: every id equal; engine/tests/golden.rs: top-1,
// top-5 overlap, largest |Δlogit| and greedy continuations).
import test from "node:test";
import assert from "node:assert/strict";
import { withPage, loadDefault, fixture, MODEL_SHA256 } from "./harness.mjs";
import { judge } from "./llamacpp.mjs";

test("token ids and next-token logits match llama.cpp (CPU wasm)", async () => {
  await withPage(async (h) => {
    const loaded = await loadDefault(h.page, h.modelUrl);
    assert.equal(loaded.backend, "cpu");
    assert.match(loaded.model.adapter, /simd128/, "the wasm kernels must be the simd128 ones");

    const tokens = fixture("tokens_smollm2.json");
    assert.equal(tokens.model_sha256, MODEL_SHA256);
    assert.ok(tokens.cases.length >= 60);
    const got = await h.page.evaluate(async ({ cases, special }) => ({
      plain: await Promise.all(cases.map((c) => window.c.tokenize(c.text))),
      special: await Promise.all(special.map((c) => window.c.tokenize(c.text, { special: true }))),
    }), { cases: tokens.cases, special: tokens.special_cases });
    const bad = [];
    tokens.cases.forEach((c, i) => JSON.stringify(got.plain[i]) !== JSON.stringify(c.ids) && bad.push(`${c.name}: ${JSON.stringify(got.plain[i])} vs ${JSON.stringify(c.ids)}`));
    tokens.special_cases.forEach((c, i) => JSON.stringify(got.special[i]) !== JSON.stringify(c.ids) && bad.push(`special ${c.name}: ${JSON.stringify(got.special[i])} vs ${JSON.stringify(c.ids)}`));
    assert.deepEqual(bad, [], `token ids differ from llama.cpp on ${bad.length} strings`);

    const fx = fixture("logits_smollm2.json");
    assert.equal(fx.model_sha256, MODEL_SHA256);
    const cases = fx.cases;
    assert.ok(cases.length >= 12);
    const results = await h.page.evaluate(async (cases) => {
      const out = [];
      for (const c of cases) {
        const l = await window.c.logits(c.prompt, 20);
        // Greedy continuation through the stepwise generator (ignoring end tokens, as the fixture does).
        const greedy = [];
        for await (const t of window.c.generate(c.prompt, { maxTokens: c.greedy.length, ignoreEos: true })) greedy.push(t.token);
        // The logits of the fixture's top-20 ids come from a wider top-k.
        const wide = await window.c.logits(c.prompt, 400);
        out.push({ ids: l.ids, top: l.top, wide: wide.top, greedy });
      }
      return out;
    }, cases);

    judge(cases, results, "nib wasm");
  });
});
