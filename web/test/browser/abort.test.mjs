// Aborting: a long generation stops within 100 ms of abort() (the time until the worker says
// it stopped, measured in the page), in decode and in prefill; the completer then works again.
import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { withPage, loadDefault, MODEL_SHA256 } from "./harness.mjs";
import { ROOT } from "../server.mjs";

const LIMIT_MS = 100;

test("aborting a long generation stops it within 100 ms", async () => {
  await withPage(async (h) => {
    await loadDefault(h.page, h.modelUrl);
    const longPrompt = fs.readFileSync(path.join(ROOT, "engine/src/gguf.rs"), "utf8").slice(0, 6000);
    const r = await h.page.evaluate(async ({ longPrompt }) => {
      /** Runs a generation, aborts it after `afterTokens` tokens (or `afterMs`), and measures. */
      async function run(prompt, { afterTokens, afterMs }) {
        const ctl = new AbortController();
        let n = 0, tAbort = null, abortEpoch = null, code = null, late = 0;
        const abort = () => { tAbort = performance.now(); abortEpoch = performance.timeOrigin + tAbort; ctl.abort(); };
        // The abort lands at an arbitrary point of a step, not just after a token arrives.
        const later = () => setTimeout(abort, afterMs);
        if (afterTokens === undefined) later();
        try {
          for await (const t of window.c.generate(prompt, { maxTokens: 4000, ignoreEos: true, signal: ctl.signal })) {
            n++;
            if (abortEpoch !== null && t.at > abortEpoch) late++;
            if (n === afterTokens) later();
          }
        } catch (e) {
          code = e.code;
        }
        return { n, code, latency: performance.now() - tAbort, late };
      }
      const decode = [];
      for (let i = 0; i < 6; i++) decode.push(await run("def fibonacci(n):\n", { afterTokens: 10, afterMs: 3 + 11 * i }));
      // Aborted while the ~1,500-token prompt is still being evaluated.
      const prefill = [];
      for (let i = 0; i < 3; i++) prefill.push(await run(longPrompt, { afterMs: 300 + 250 * i }));
      // The completer still works.
      const after = await window.c.complete({ prefix: "def add(a, b):\n    return " });
      // A completion aborted mid-way rejects (the pipeline stops within a token).
      const ctl = new AbortController();
      const p = window.c.complete({ prefix: "class Stack:\n    def __init__(self):\n", mode: "block", signal: ctl.signal });
      setTimeout(() => ctl.abort(), 20);
      let completeCode = null;
      try { await p; } catch (e) { completeCode = e.code; }
      // Aborted before it starts.
      const pre = new AbortController();
      pre.abort();
      let preCode = null;
      try { await window.c.complete({ prefix: "x", signal: pre.signal }); } catch (e) { preCode = e.code; }
      return { decode, prefill, after: after.candidates[0]?.text, completeCode, preCode };
    }, { longPrompt });
    console.log(`abort latency (ms), decode: ${r.decode.map((x) => x.latency.toFixed(1)).join(", ")}; prefill: ${r.prefill.map((x) => x.latency.toFixed(1)).join(", ")}`);
    for (const x of r.decode) {
      assert.equal(x.code, "aborted");
      assert.ok(x.latency < LIMIT_MS, `decode abort took ${x.latency.toFixed(1)} ms`);
      // The step running when the abort lands still reports its token; one more may follow,
      // since the abort message and the worker's own yield arrive on different ports, whose
      // relative order the browser does not promise.
      assert.ok(x.late <= 2, `${x.late} tokens were chosen after the abort`);
    }
    for (const x of r.prefill) {
      assert.equal(x.code, "aborted");
      assert.equal(x.n, 0, "the abort should land during prefill");
      assert.ok(x.latency < LIMIT_MS, `prefill abort took ${x.latency.toFixed(1)} ms`);
    }
    assert.equal(r.after, "a + b");
    assert.equal(r.completeCode, "aborted");
    assert.equal(r.preCode, "aborted");
  });
});

test("aborting a load rejects with aborted", async () => {
  await withPage(async (h) => {
    const code = await h.page.evaluate(async ({ url, sha256 }) => {
      const ctl = new AbortController();
      const p = window.nib.createCompleter({ model: url, sha256, backend: "cpu", signal: ctl.signal, onProgress: (e) => e.bytes > 1e6 && ctl.abort() });
      try { await p; return "loaded"; } catch (e) { return e.code; }
    }, { url: h.modelUrl, sha256: MODEL_SHA256 });
    assert.equal(code, "aborted");
  });
});

test("stream() yields the growing best candidate and ends with complete()'s text", async () => {
  await withPage(async (h) => {
    await loadDefault(h.page, h.modelUrl);
    const r = await h.page.evaluate(async () => {
      const req = { prefix: "def fibonacci(n):\n    ", mode: "block", n: 1 };
      const parts = [];
      for await (const p of window.c.stream(req)) parts.push(p);
      window.c.dispose();
      return { parts };
    });
    // A fresh completer for the reference (the first one's typed-through cache would answer).
    await loadDefault(h.page, h.modelUrl);
    const ref = await h.page.evaluate(() => window.c.complete({ prefix: "def fibonacci(n):\n    ", mode: "block", n: 1 }));
    assert.ok(r.parts.length >= 3, `only ${r.parts.length} partial texts`);
    for (let i = 1; i < r.parts.length - 1; i++) assert.ok(r.parts[i].length >= 1);
    assert.equal(r.parts[r.parts.length - 1], ref.candidates[0].text);
    console.log(`stream: ${r.parts.length} updates, final ${JSON.stringify(r.parts[r.parts.length - 1])}`);
  });
});
