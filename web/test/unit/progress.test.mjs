// ProgressTracker: what the caller sees only moves forward.
import test from "node:test";
import assert from "node:assert/strict";
import { ProgressTracker } from "../../dist/progress.js";

test("progress never goes back, and repeats are dropped", () => {
  const seen = [];
  const t = new ProgressTracker((p) => seen.push(`${p.phase}:${p.bytes}/${p.total}`));
  const events = [
    ["download", 0, 100], ["download", 40, 100], ["download", 30, 100], ["download", 40, 100], ["download", 100, 100],
    ["verify", 100, 100], ["download", 100, 100], ["init", 0, 100], ["verify", 100, 100], ["init", 100, 100],
  ];
  const reported = events.map(([phase, bytes, total]) => t.report({ phase, bytes, total }));
  assert.deepEqual(seen, ["download:0/100", "download:40/100", "download:100/100", "verify:100/100", "init:0/100", "init:100/100"]);
  assert.deepEqual(reported, [true, true, false, false, true, true, false, true, false, true]);
});

test("the tracker hands out copies", () => {
  let got = null;
  const t = new ProgressTracker((p) => (got = p));
  const p = { phase: "download", bytes: 1, total: 2 };
  t.report(p);
  p.bytes = 0;
  assert.equal(got.bytes, 1);
  assert.equal(t.report({ phase: "download", bytes: 1, total: 2 }), false);
});
