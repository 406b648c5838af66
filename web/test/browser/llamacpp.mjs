// llama.cpp's fixtures and the rules the native tests judge against them
// (engine/tests/golden.rs): top-1 where llama.cpp's margin is clear, top-5 overlap, largest
// |Δlogit| over its top-20, greedy continuations. Used by the CPU wasm and WebGPU tests.
import assert from "node:assert/strict";

/** A logit gap below which two tokens are a tie at llama.cpp's own precision (golden.rs). */
export const NEAR = 0.5;

/**
 * Judges `results[i]` ({ids, top, wide, greedy?}) against `cases[i]` of logits_smollm2.json;
 * `label` names the backend in the printed figures. Greedy continuations are judged when the
 * results carry them.
 */
export function judge(cases, results, label) {
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
    if (!r.greedy) return;
    if (JSON.stringify(c.batch1.greedy) === JSON.stringify(c.greedy)) sameSelf++;
    const step = c.greedy.findIndex((w, i) => r.greedy[i] !== w);
    if (step === -1) same++;
    else if (c.greedy_margins[step] >= NEAR) failures.push(`case ${ci}: greedy diverges at step ${step} where llama.cpp's margin is ${c.greedy_margins[step].toFixed(3)}`);
  });
  console.log(`largest |Δlogit| over llama.cpp's top-20 on ${cases.length} prompts: ${label} ${worst.toFixed(3)}; llama.cpp batch 1 vs 512: ${worstSelf.toFixed(3)}`);
  if (results.every((r) => r.greedy)) {
    console.log(`greedy continuations identical: ${label} ${same}/${cases.length}; llama.cpp batch 1 vs 512: ${sameSelf}/${cases.length}`);
    if (same < sameSelf) failures.push(`greedy identical on ${same} prompts, fewer than llama.cpp's own ${sameSelf}`);
  }
  assert.deepEqual(failures, []);
  assert.ok(worst < 2 * Math.max(worstSelf, NEAR), `largest |Δlogit| ${worst}`);
}
