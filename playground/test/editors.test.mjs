// End to end, in headless Chromium, on the playground page with the real model: for each
// editor (CodeMirror 6, textarea, Monaco) on the CPU backend, typing code makes ghost text
// appear, Alt+] / Alt+[ cycle candidates, typing the suggestion's first characters keeps it
// with no new request, Tab inserts it, Esc dismisses, and Tab with nothing shown indents. In
// each editor one short line completion also runs on WebGPU (SwiftShader). Screenshots of the
// ghost text go to docs/screenshots/. The CodeMirror run also checks that the page requests only its own
// assets and the model; the textarea run loads the model through ?model=&sha256=; a model that
// cannot be fetched puts the status in the error state.
import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { withPlayground, requests, saveScreenshot, PLAYGROUND } from "./harness.mjs";
import { MODEL_SHA256, MODEL_URL_PATH } from "../../web/test/server.mjs";

/** Where each editor draws ghost text: nib's own span, or Monaco's decoration. */
const GHOST = { codemirror: ".nib-ghost", textarea: ".nib-ghost", monaco: ".ghost-text-decoration, .ghost-text-decoration-preview" };
const SETTINGS = "backend=cpu&lang=python&mode=line&n=3&temperature=1&debounce=60&maxTokens=12";

const suggestion = (page) => page.evaluate(() => window.nibPlayground.editor.controller.suggestion);
const text = (page) => page.evaluate(() => window.nibPlayground.editor.getValue());

/** The ghost text the editor draws. */
const drawn = (page, editor) => page.evaluate((sel) => [...document.querySelectorAll(sel)].map((e) => e.textContent).join(""), GHOST[editor]);

/**
 * Waits until the editor draws a suggestion of the model (`want`: that text; else the
 * controller's current one) and returns what is drawn. Whitespace is left out of the
 * comparison: Monaco draws a multi-line ghost as one element per line.
 */
async function waitGhost(page, editor, want = null, timeout = 90000) {
  await page.waitForFunction(
    ({ sel, want }) => {
      const s = window.nibPlayground.editor.controller.suggestion;
      const shown = [...document.querySelectorAll(sel)].map((e) => e.textContent).join("").replace(/\s+/g, "");
      return s !== null && shown !== "" && shown === (want ?? s.text).replace(/\s+/g, "");
    },
    { sel: GHOST[editor], want },
    { timeout },
  );
  return drawn(page, editor);
}

async function ghostGone(page, editor) {
  await page.waitForFunction((sel) => [...document.querySelectorAll(sel)].every((e) => e.textContent === "" || e.offsetParent === null), GHOST[editor], { timeout: 5000 });
}

/** The cursor to the end of the document and "return " typed after the function's docstring. */
async function typeReturn(page) {
  await page.keyboard.press("Control+End");
  for (let i = 0; i < "return ".length; i++) await page.keyboard.press("Backspace");
  await page.keyboard.type("return ", { delay: 20 });
}

async function scenario(editor) {
  // The textarea run loads the model as a user-given URL + sha256 (?model=&sha256=).
  const custom = editor === "textarea" ? `&model=${encodeURIComponent(MODEL_URL_PATH)}&sha256=${MODEL_SHA256}` : "";
  await withPlayground(`${SETTINGS}&editor=${editor}${custom}`, async (h) => {
    assert.equal(await h.page.getAttribute("#status", "data-nib-backend"), "cpu");
    assert.equal(await h.page.inputValue("#model"), custom ? "custom" : "smollm2-135m-instruct-q4_1");
    await h.page.waitForFunction(() => window.nibPlayground.editor !== null);
    await h.page.waitForTimeout(editor === "monaco" ? 500 : 100);
    await h.page.click("#host");

    // Type code: ghost text appears.
    await typeReturn(h.page);
    const before = await text(h.page);
    assert.ok(before.endsWith("    return "), JSON.stringify(before.slice(-40)));
    await waitGhost(h.page, editor);
    const s = await suggestion(h.page);
    const first = s.text;
    saveScreenshot(await h.page.locator("#host").screenshot(), `${editor}.png`);
    if (editor === "codemirror") saveScreenshot(await h.page.screenshot(), "playground.png");

    // Alt+] shows another candidate, Alt+[ goes back.
    const texts = s.candidates.map((c) => c.text);
    assert.ok(s.count >= 2, `n=3 at temperature 1 gave ${s.count} distinct candidate(s): ${JSON.stringify(texts)}`);
    await h.page.keyboard.press("Alt+BracketRight");
    await waitGhost(h.page, editor, texts[1]);
    await h.page.keyboard.press("Alt+BracketLeft");
    await waitGhost(h.page, editor, first);

    // Typing the suggestion's first characters keeps it, shortened, with no new request.
    const sent = await requests(h.page);
    const head = first.slice(0, Math.min(2, first.length - 1));
    await h.page.keyboard.type(head, { delay: 30 });
    await h.page.waitForTimeout(400);
    await waitGhost(h.page, editor, first.slice(head.length), 5000);
    assert.equal(await requests(h.page), sent, "typing through the suggestion sent a request");

    // Tab inserts it.
    await h.page.keyboard.press("Tab");
    await h.page.waitForFunction((t) => window.nibPlayground.editor.getValue() === t, before + first, { timeout: 5000 }).catch(async () => {
      assert.equal(await text(h.page), before + first, "Tab did not insert the suggestion");
    });
    await ghostGone(h.page, editor);

    // Esc dismisses: a new suggestion after an edit, then Esc leaves the text as it was.
    await h.page.keyboard.press("Backspace");
    const edited = await text(h.page);
    await waitGhost(h.page, editor);
    await h.page.keyboard.press("Escape");
    await ghostGone(h.page, editor);
    assert.equal(await suggestion(h.page), null);
    assert.equal(await text(h.page), edited);

    // Tab with nothing shown indents.
    await h.page.keyboard.press("Tab");
    await h.page.waitForFunction((t) => window.nibPlayground.editor.getValue() !== t, edited, { timeout: 5000 });
    const indented = await text(h.page);
    assert.ok(indented.length > edited.length && indented.replace(/[ \t]/g, "") === edited.replace(/[ \t]/g, ""), `Tab did not indent: ${JSON.stringify(indented.slice(-60))}`);

    if (editor === "codemirror") {
      // No ghost while the autocomplete popup is open: typed text, then Ctrl+Space before the
      // debounce ends, then time for an answer to have come back.
      await h.page.keyboard.type(" ma");
      await h.page.keyboard.press("Control+Space");
      await h.page.waitForSelector(".cm-tooltip-autocomplete", { timeout: 5000 });
      await h.page.waitForTimeout(2500);
      assert.equal(await drawn(h.page, editor), "", "ghost text under the autocomplete popup");
      assert.equal(await suggestion(h.page), null);
      await h.page.keyboard.press("Escape");

      // Privacy: the page's own files and the model, nothing else.
      const dist = path.join(PLAYGROUND, "dist");
      const foreign = h.seen.filter((u) => {
        const url = new URL(u);
        if (url.protocol === "data:" || url.protocol === "blob:") return false;
        if (url.origin !== h.srv.origin) return true;
        return !(url.pathname === MODEL_URL_PATH || url.pathname === "/" || fs.existsSync(path.join(dist, decodeURIComponent(url.pathname))));
      });
      assert.deepEqual(foreign, [], "requests outside the playground's files and the model");
      assert.ok(h.seen.some((u) => u.endsWith(MODEL_URL_PATH)), "the model request was seen");
    }
    console.log(`${editor}: first suggestion ${JSON.stringify(first)}, ${await requests(h.page)} requests`);
  });
}

for (const editor of ["codemirror", "textarea", "monaco"]) {
  test(`${editor} on the CPU: ghost text, cycling, typed-through, Tab, Esc, Tab indents`, () => scenario(editor));
}

for (const editor of ["codemirror", "textarea", "monaco"]) {
  test(`${editor} on WebGPU (SwiftShader): a short line completion appears and Tab inserts it`, async () => {
    await withPlayground(`backend=webgpu&editor=${editor}&lang=python&mode=line&n=1&debounce=60&maxTokens=2`, async (h) => {
      assert.equal(await h.page.getAttribute("#status", "data-nib-backend"), "webgpu");
      await h.page.click("#host");
      // A one-line document: SwiftShader takes seconds per token, prefill included.
      await h.page.keyboard.press("Control+A");
      await h.page.keyboard.type("def add(a, b): return ", { delay: 20 });
      const before = await text(h.page);
      // The first token is drawn while the rest streams; Tab takes the finished line.
      await waitGhost(h.page, editor, null, 240000);
      await h.page.waitForFunction(() => window.nibPlayground.status.value.state === "ready", null, { timeout: 240000 });
      await waitGhost(h.page, editor, null, 5000);
      // The suggestion as text (Monaco draws spaces as no-break spaces).
      const shown = await h.page.evaluate(() => window.nibPlayground.editor.controller.suggestion.text);
      await h.page.keyboard.press("Tab");
      await h.page.waitForFunction((t) => window.nibPlayground.editor.getValue() === t, before + shown, { timeout: 5000 }).catch(async (e) => {
        throw new Error(`${e.message}: the editor holds ${JSON.stringify(await text(h.page))}, not ${JSON.stringify(before + shown)}`);
      });
      console.log(`${editor} on webgpu: ${JSON.stringify(shown)}, ${await h.page.textContent("#status")}`);
    });
  });
}

test("a model that cannot be fetched: data-nib-state is error and the status says why", async () => {
  await withPlayground(`backend=cpu&model=${encodeURIComponent("/bad/404.gguf")}`, async (h) => {
    assert.match(await h.page.textContent("#status"), /model_fetch_failed/);
    assert.equal(await h.page.getAttribute("#status", "data-nib-backend"), null);
  }, "error");
});
