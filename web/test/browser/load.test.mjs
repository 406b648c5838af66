// Loading: progress events grow monotonically to the total, and the second load (a new
// completer, and again after a page reload) is served from the cache with no request for the
// model; the server's log is the witness.
import test from "node:test";
import assert from "node:assert/strict";
import { withPage, loadDefault, MODEL_URL_PATH, MODEL_SHA256 } from "./harness.mjs";
import fs from "node:fs";
import { MODEL_FILE } from "./harness.mjs";

/** Phases in order, bytes never decreasing within a phase, each phase ending at the total. */
function checkProgress(events, size, fromCache) {
  assert.ok(events.length >= 3, `only ${events.length} progress events`);
  const order = { download: 0, verify: 1, init: 2 };
  for (let i = 1; i < events.length; i++) {
    const [a, b] = [events[i - 1], events[i]];
    assert.ok(order[b.phase] >= order[a.phase], `phase went back: ${a.phase} → ${b.phase}`);
    if (a.phase === b.phase) assert.ok(b.bytes >= a.bytes, `bytes went back in ${b.phase}: ${a.bytes} → ${b.bytes}`);
  }
  for (const phase of ["download", "verify", "init"]) {
    const ev = events.filter((e) => e.phase === phase);
    assert.ok(ev.length > 0, `no ${phase} event`);
    const last = ev[ev.length - 1];
    assert.equal(last.bytes, size, `${phase} ends at ${last.bytes}, not ${size}`);
    assert.equal(last.total, size);
    assert.equal(Boolean(last.fromCache), phase === "init" ? false : fromCache);
  }
  assert.ok(events.filter((e) => e.phase === "download").length >= 3, "the download reports as it goes");
}

test("progress grows monotonically; the second load makes no request for the model", async () => {
  await withPage(async (h) => {
    const size = fs.statSync(MODEL_FILE).size;
    const modelRequests = () => h.srv.requests.filter((p) => p === MODEL_URL_PATH).length;
    const first = await loadDefault(h.page, h.modelUrl);
    checkProgress(first.progress, size, false);
    assert.equal(first.model.fromCache, false);
    assert.equal(first.model.sha256, MODEL_SHA256);
    assert.equal(first.model.bytes, size);
    assert.equal(modelRequests(), 1);
    console.log(`first load (network, verify, cache write, init): ${first.ms.toFixed(0)} ms`);

    await h.page.evaluate(() => window.c.dispose());
    const second = await loadDefault(h.page, h.modelUrl);
    checkProgress(second.progress, size, true);
    assert.equal(second.model.fromCache, true);
    assert.equal(modelRequests(), 1, "the second load asked the server for the model");
    console.log(`second load (cache): ${second.ms.toFixed(0)} ms`);

    // A new page in the same profile: still from the cache.
    await h.goto();
    const third = await loadDefault(h.page, h.modelUrl);
    assert.equal(third.model.fromCache, true);
    assert.equal(modelRequests(), 1, "a reloaded page asked the server for the model");
    const ids = await h.page.evaluate(() => window.c.tokenize("def f(x):"));
    assert.deepEqual(ids, [1604, 275, 24, 104, 727]); // nib tokenize, natively
    console.log(`third load (new page, cache): ${third.ms.toFixed(0)} ms`);

    // Without a sha256 nothing is cached: the model is fetched again.
    await h.page.evaluate(() => window.c.dispose());
    await loadDefault(h.page, h.modelUrl, { sha256: undefined });
    assert.equal(modelRequests(), 2);
  });
});

test("a model given as bytes loads (a Uint8Array copied, an ArrayBuffer moved), and a disposed completer refuses calls", async () => {
  await withPage(async (h) => {
    const r = await h.page.evaluate(async (url) => {
      const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
      const progress = [];
      const c = await window.nib.createCompleter({ model: bytes, backend: "cpu", onProgress: (p) => progress.push(p) });
      const ids = await c.tokenize("hello world");
      c.dispose();
      let code = null;
      try { await c.tokenize("x"); } catch (e) { code = e.code; }
      // An ArrayBuffer moves to the worker; handed over again, detached, it is refused by name.
      const moved = bytes.slice().buffer;
      const m = await window.nib.createCompleter({ model: moved, backend: "cpu" });
      const movedIds = await m.tokenize("hello world");
      m.dispose();
      let again = null;
      try { await window.nib.createCompleter({ model: moved, backend: "cpu" }); } catch (e) { again = { code: e.code, message: e.message }; }
      return { ids, code, phases: [...new Set(progress.map((p) => p.phase))], callerKept: bytes.byteLength, sha256: c.model.sha256, movedIds, movedLeft: moved.byteLength, again };
    }, h.modelUrl);
    assert.deepEqual(r.ids, [28120, 905]);
    assert.equal(r.code, "disposed");
    assert.deepEqual(r.phases, ["download", "verify", "init"]);
    assert.equal(r.sha256, MODEL_SHA256);
    assert.ok(r.callerKept > 0, "the caller's Uint8Array must stay usable");
    assert.deepEqual(r.movedIds, [28120, 905]);
    assert.equal(r.movedLeft, 0, "the ArrayBuffer was moved, not copied");
    assert.equal(r.again?.code, "invalid_argument", JSON.stringify(r.again));
    assert.match(r.again.message, /detached/);
  });
});
