// Privacy: over a whole load-and-complete run, every request the page and its worker make
// (seen by Playwright's request interception and by the server's log) is for the model URL or
// the page's own assets; the code being completed goes nowhere.
import test from "node:test";
import assert from "node:assert/strict";
import { withPage, loadDefault, MODEL_URL_PATH } from "./harness.mjs";

test("a load-and-complete run requests only the model and the page's assets", async () => {
  await withPage(async (h) => {
    const seen = [];
    await h.context.route("**/*", (route) => {
      seen.push(route.request().url());
      return route.continue();
    });
    h.context.on("request", (r) => seen.push(r.url()));
    h.srv.requests.length = 0;
    await h.goto();
    await loadDefault(h.page, h.modelUrl);
    const secret = "def transfer_funds(account_9f3c, amount):\n    return ";
    const c = await h.page.evaluate(async (prefix) => {
      const out = await window.c.complete({ prefix });
      const parts = [];
      for await (const p of window.c.stream({ prefix: prefix + "a" })) parts.push(p);
      return { out, parts };
    }, secret);
    // The run must have completed something, else it proves nothing about where code goes.
    assert.ok(c.out.candidates.length >= 1 && c.out.candidates[0].text !== "", `complete() gave ${JSON.stringify(c.out.candidates)}`);
    assert.ok(c.parts.length >= 1 && c.parts.at(-1) !== "", `stream() gave ${JSON.stringify(c.parts)}`);
    const allowed = (u) => {
      const url = new URL(u);
      if (url.protocol === "data:" || url.protocol === "blob:") return true;
      if (url.origin !== h.srv.origin) return false;
      return url.pathname === MODEL_URL_PATH || url.pathname.startsWith("/page/") || url.pathname.startsWith("/dist/");
    };
    const foreign = seen.filter((u) => !allowed(u));
    assert.deepEqual(foreign, [], "requests outside the model and the page's assets");
    assert.ok(seen.some((u) => u.endsWith(MODEL_URL_PATH)), "interception saw the model request (from the worker)");
    assert.ok(seen.some((u) => u.endsWith("/dist/wasm/nib_wasm_bg.wasm")), "interception saw the wasm request");
    const serverForeign = h.srv.requests.filter((p) => !(p === MODEL_URL_PATH || p.startsWith("/page/") || p.startsWith("/dist/")));
    assert.deepEqual(serverForeign, []);
    assert.ok(!seen.some((u) => u.includes("transfer_funds")) && !h.srv.requests.some((p) => p.includes("transfer_funds")));
    console.log(`requests: ${[...new Set(seen.map((u) => new URL(u).pathname))].join(" ")}`);
  });
});
