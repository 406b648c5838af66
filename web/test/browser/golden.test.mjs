// The CPU wasm backend in Chromium against llama.cpp's fixtures, with the rules of the
// native tests (engine/tests/tokenizer.rs: every id equal; engine/tests/golden.rs: top-1,
// top-5 overlap, largest |Δlogit| and greedy continuations).
import test from "node:test";
import assert from "node:assert/strict";
import { open, loadDefault, fixture, MODEL_SHA256 } from "./harness.mjs";

/** A logit gap below which two tokens are a tie at llama.cpp's own precision (golden.rs). */
const NEAR = 0.5;

test("token ids and next-token logits match llama.cpp (CPU wasm)", async () => {
  const h = await open();
  try {
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

    let worst = 0, worstSelf = 0, same = 0, sameSelf = 0;
    const failures = [];
    cases.forEach((c, ci) => {
      const r = results[ci];
      assert.deepEqual(r.ids, c.ids, `token ids of case ${ci}`);
      const reference = c.top;
      const batch1 = c.batch1.top;
      const margin = reference[0][1] - reference[1][1];
      const stable = batch1[0][0] === reference[0][0];
      const ours = r.top.slice(0, 5);
      if (((margin > 0.1 && stable) || margin >= NEAR) && ours[0][0] !== reference[0][0]) {
        failures.push(`case ${ci}: top-1 ${ours[0][0]} vs llama.cpp ${reference[0][0]} (margin ${margin.toFixed(3)})`);
      }
      const ref5 = reference.slice(0, 5).map((p) => p[0]);
      const shared = ours.filter(([id]) => ref5.includes(id)).length;
      const fifth = reference[4][1];
      const outsideNear = ours.filter(([id]) => !ref5.includes(id)).every(([id]) => {
        const l = reference.find(([t]) => t === id);
        return l !== undefined && fifth - l[1] < NEAR;
      });
      if (shared < 4 && !outsideNear) failures.push(`case ${ci}: top-5 share only ${shared}`);
      const ourLogit = new Map(r.wide.map(([id, l]) => [id, l]));
      for (const [id, l] of reference) {
        const o = ourLogit.get(id);
        if (o === undefined) failures.push(`case ${ci}: llama.cpp's top-20 token ${id} is not in our top 400`);
        else worst = Math.max(worst, Math.abs(o - l));
      }
      for (const [id, l] of reference) {
        const b = batch1.find(([t]) => t === id);
        if (b) worstSelf = Math.max(worstSelf, Math.abs(b[1] - l));
      }
      if (JSON.stringify(c.batch1.greedy) === JSON.stringify(c.greedy)) sameSelf++;
      const step = c.greedy.findIndex((w, i) => r.greedy[i] !== w);
      if (step === -1) same++;
      else if (c.greedy_margins[step] >= NEAR) failures.push(`case ${ci}: greedy diverges at step ${step} where llama.cpp's margin is ${c.greedy_margins[step].toFixed(3)}`);
    });
    console.log(`largest |Δlogit| over llama.cpp's top-20: nib wasm ${worst.toFixed(3)}; llama.cpp batch 1 vs 512: ${worstSelf.toFixed(3)}`);
    console.log(`greedy continuations identical: nib wasm ${same}/${cases.length}; llama.cpp batch 1 vs 512: ${sameSelf}/${cases.length}`);
    if (same < sameSelf) failures.push(`greedy identical on ${same} prompts, fewer than llama.cpp's own ${sameSelf}`);
    assert.deepEqual(failures, []);
    assert.ok(worst < 2 * Math.max(worstSelf, NEAR), `largest |Δlogit| ${worst}`);
  } finally {
    await h.close();
  }
});
