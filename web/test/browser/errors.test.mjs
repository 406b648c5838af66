// Bad models and bad options reject with their code, and the same page then loads the good
// model; a worker whose engine dies (a panic, wasm memory run out) is replaced and the model
// comes back from the cache.
import test from "node:test";
import assert from "node:assert/strict";
import { withPage, loadDefault, MODEL_SHA256, MODEL_URL_PATH } from "./harness.mjs";

/** createCompleter's rejection as {code, message}, or null if it loaded. */
async function loadError(page, options) {
  return page.evaluate(async (o) => {
    try {
      const c = await window.nib.createCompleter({ backend: "cpu", ...o });
      c.dispose();
      return null;
    } catch (e) {
      return { code: e.code, message: e.message, isNibError: e instanceof window.nib.NibError };
    }
  }, options);
}

test("bad models reject with their code, then the good model loads on the same page", async () => {
  await withPage(async (h) => {
    const o = h.srv.origin;
    const cases = [
      [{ model: `${o}/bad/404.gguf`, sha256: MODEL_SHA256 }, "model_fetch_failed", /404/],
      [{ model: `${o}/bad/truncated.gguf`, sha256: MODEL_SHA256 }, "model_fetch_failed", /./],
      [{ model: `${o}/bad/wronghash.gguf`, sha256: MODEL_SHA256 }, "model_hash_mismatch", /sha256/],
      [{ model: `${o}/bad/corrupt.gguf` }, "model_corrupt", /GGUF/],
      [{ model: "http://127.0.0.1:9/unreachable.gguf" }, "model_fetch_failed", /./],
      [{ model: h.modelUrl, sha256: "abc" }, "invalid_argument", /sha256/],
      [{ model: h.modelUrl, backend: "quantum" }, "invalid_argument", /backend/],
      [{ model: 42 }, "invalid_argument", /model/],
    ];
    for (const [options, code, message] of cases) {
      const err = await loadError(h.page, options);
      assert.ok(err, `${JSON.stringify(options)} loaded`);
      assert.equal(err.code, code, `${JSON.stringify(options)}: ${err.code}: ${err.message}`);
      assert.match(err.message, message);
      assert.ok(err.isNibError);
    }
    // Nothing broken was cached: the good model still downloads (and then loads).
    const before = h.srv.requests.filter((p) => p === MODEL_URL_PATH).length;
    const r = await loadDefault(h.page, h.modelUrl);
    assert.equal(r.backend, "cpu");
    assert.equal(r.model.fromCache, false);
    assert.equal(h.srv.requests.filter((p) => p === MODEL_URL_PATH).length, before + 1);
    const comp = await h.page.evaluate(() => window.c.complete({ prefix: "def add(a, b):\n    return " }));
    assert.equal(comp.candidates[0].text, "a + b");

    // Bad requests on a loaded model are typed too.
    const bad = await h.page.evaluate(async () => {
      const codes = [];
      for (const f of [
        () => window.c.complete({ prefix: "x", mode: "paragraph" }),
        () => window.c.complete({ prefix: "x", n: 0 }),
        () => window.c.complete({ prefix: 5 }),
        () => window.c.complete({ prefix: "x", bogus: 1 }),
        async () => { for await (const _ of window.c.generate("", {})) { /* nothing */ } },
        async () => { for await (const _ of window.c.generate("x", { temperature: -1 })) { /* nothing */ } },
        () => window.c.bench("short", 512, 8),
      ]) {
        try { await f(); codes.push("resolved"); } catch (e) { codes.push(e.code); }
      }
      return codes;
    });
    assert.deepEqual(bad, Array(7).fill("invalid_argument"));
  });
});

test("a worker whose engine panics is reported and replaced", async () => {
  await withPage(async (h) => {
    await loadDefault(h.page, h.modelUrl);
    const r = await h.page.evaluate(async () => {
      let err = null;
      try { await window.c.__testPanic(); } catch (e) { err = { code: e.code, message: e.message }; }
      // The next call waits for a new worker with the model (from the cache) and succeeds.
      const comp = await window.c.complete({ prefix: "def add(a, b):\n    return " });
      return { err, text: comp.candidates[0]?.text, fromCache: window.c.model.fromCache };
    });
    assert.equal(r.err?.code, "internal");
    assert.match(r.err.message, /panicked/);
    assert.equal(r.text, "a + b");
    assert.equal(r.fromCache, true);
    assert.ok(h.logs.some((l) => l.includes("deliberate panic")), "the panic hook logs the panic");
  });
});

test("a worker whose wasm memory runs out reports out_of_memory and is replaced", async () => {
  await withPage(async (h) => {
    await loadDefault(h.page, h.modelUrl);
    const r = await h.page.evaluate(async () => {
      let err = null;
      try { await window.c.__testExhaustMemory(); } catch (e) { err = { code: e.code, message: e.message }; }
      const comp = await window.c.complete({ prefix: "def add(a, b):\n    return " });
      return { err, text: comp.candidates[0]?.text };
    });
    assert.equal(r.err?.code, "out_of_memory", JSON.stringify(r.err));
    assert.match(r.err.message, /allocation of 1073741824 bytes failed/);
    assert.equal(r.text, "a + b");
  });
});
