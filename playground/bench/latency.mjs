// cargo xtask bench --playground: keystroke → first ghost text in the playground (CodeMirror 6,
// single-line mode, n = 1), in headless Chromium with the default model. The scripted edits
// walk down a real Python file (CPython's json/decoder.py), as someone writing it top to bottom:
// each puts the file up to the start of a line in the editor and lets the model answer that (the
// KV cache then holds the file, as it does for someone typing), then adds the line up to a cut
// point but its last character (dismissed before any request), then types that character. The
// clock runs from that keydown to the first drawn `nib-ghost` text, and is split at the moment
// the request leaves (the debounce) so the debounce is reported apart from the model's time.
// Answers from the engine's typed-through cache (the warm-up's completion began with what was
// typed) are reported apart from those the model computed.
// Usage: node bench/latency.mjs BACKEND EDITS DEBOUNCE_MS
import { execFileSync } from "node:child_process";
import { openPlayground } from "../test/harness.mjs";

const [backend = "cpu", editsArg = "30", debounceArg = "150"] = process.argv.slice(2);
const EDITS = Number(editsArg);
const file = execFileSync("python3", ["-c", "import inspect, json.decoder; print(inspect.getsource(json.decoder))"], { encoding: "utf8" });
// SwiftShader (WebGPU where there is no GPU) takes seconds per token: its edits stay in the
// file's first lines, whose prompts are short.
const source = backend === "webgpu" ? file.slice(0, file.indexOf("\nclass JSONDecodeError")) : file;

/** Cut points: just after "= ", "(", "return " or "if " on lines that go on past them. */
function cuts(text, n) {
  const found = [];
  const re = /(= |\(|return |if )(?=\S)/g;
  let m;
  while ((m = re.exec(text))) {
    const end = m.index + m[0].length;
    const lineEnd = text.indexOf("\n", end);
    if (lineEnd - end >= 4 && !text.slice(text.lastIndexOf("\n", m.index) + 1, m.index).trimStart().startsWith("#")) found.push(end);
  }
  // Spread over the file, in order.
  const step = found.length / n;
  return Array.from({ length: Math.min(n, found.length) }, (_, i) => found[Math.floor(i * step)]);
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : null;
};

const h = await openPlayground(`backend=${backend}&editor=codemirror&lang=python&mode=line&n=1&temperature=0&debounce=${debounceArg}`);
try {
  await h.page.evaluate(() => {
    const b = (window.__bench = { t0: 0, tReq: null, tGhost: null });
    document.addEventListener("keydown", () => Object.assign(b, { t0: performance.now(), tReq: null, tGhost: null }), true);
    window.nibPlayground.status.subscribe((s) => {
      if (s.state === "thinking" && b.tReq === null) b.tReq = performance.now();
    });
    new MutationObserver(() => {
      const g = document.querySelector(".nib-ghost");
      if (g?.textContent && b.tGhost === null && b.tReq !== null) b.tGhost = performance.now();
    }).observe(document.getElementById("host"), { subtree: true, childList: true, characterData: true });
  });
  await h.page.click("#host");
  const total = [], model = [], debounce = [], computed = [];
  let empty = 0, cacheHits = 0;
  for (const cut of cuts(source, EDITS)) {
    const prefix = source.slice(0, cut);
    const lineStart = prefix.lastIndexOf("\n") + 1;
    await h.page.keyboard.press("Control+A");
    await h.page.evaluate(() => (window.__bench.tReq = null));
    await h.page.keyboard.insertText(prefix.slice(0, lineStart));
    // The warm-up request (the file up to this line): wait until it has left and come back.
    await h.page.waitForFunction(() => window.__bench.tReq !== null, null, { timeout: 5000 }).catch(() => {});
    await h.page.waitForFunction(() => window.nibPlayground.status.value.state !== "thinking", null, { timeout: 600000 });
    await h.page.keyboard.press("Escape");
    await h.page.keyboard.insertText(prefix.slice(lineStart, -1));
    await h.page.keyboard.press("Escape");
    await h.page.keyboard.type(prefix.slice(-1));
    const r = await h.page
      .waitForFunction(() => {
        const b = window.__bench;
        const st = window.nibPlayground.status.value;
        if (b.tGhost !== null) return { ...b };
        // Answered with nothing to show: no ghost will come.
        if (b.tReq !== null && st.state !== "thinking" && window.nibPlayground.editor.controller.suggestion === null && performance.now() - b.tReq > 50) return { ...b, empty: true };
        return false;
      }, null, { timeout: backend === "webgpu" ? 600000 : 60000, polling: 5 })
      .then((x) => x.jsonValue())
      .catch(async (e) => {
        const state = await h.page.evaluate(() => ({ b: window.__bench, st: window.nibPlayground.status.value, s: window.nibPlayground.editor.controller.suggestion, r: window.nibPlayground.editor.controller.requests, tail: window.nibPlayground.editor.getValue().slice(-80) }));
        throw new Error(`${e.message}\n${JSON.stringify(state)}\n${h.logs.join("\n")}`);
      });
    if (r.empty) {
      empty++;
      continue;
    }
    const hit = await h.page.evaluate(() => window.nibPlayground.lastCompletion?.timings.cacheHit);
    if (hit) cacheHits++;
    else computed.push(r.tGhost - r.tReq);
    total.push(r.tGhost - r.t0);
    debounce.push(r.tReq - r.t0);
    model.push(r.tGhost - r.tReq);
    process.stderr.write(`${backend} edit ${total.length + empty}: ${Math.round(r.tGhost - r.t0)} ms (debounce ${Math.round(r.tReq - r.t0)}${hit ? ", engine cache" : ""})\n`);
  }
  const f = (x) => (x === null ? null : Math.round(x));
  console.log(JSON.stringify({
    backend, adapter: await h.page.textContent("#model-info"), edits: total.length + empty, with_ghost: total.length, empty, engine_cache_hits: cacheHits,
    debounce_setting_ms: Number(debounceArg),
    debounce_ms: { p50: f(pct(debounce, 50)), p95: f(pct(debounce, 95)) },
    after_debounce_ms: { p50: f(pct(model, 50)), p95: f(pct(model, 95)) },
    keystroke_to_ghost_ms: { p50: f(pct(total, 50)), p95: f(pct(total, 95)) },
    after_debounce_model_computed_ms: { n: computed.length, p50: f(pct(computed, 50)), p95: f(pct(computed, 95)) },
  }));
} finally {
  await h.close();
}
