// The editor adapters without a browser: CodeMirror's plugin and keymap driven through a stand-in
// view (the state is real), the textarea adapter on a stand-in element, Monaco's provider called
// as Monaco calls it. What is checked: Esc falls through when nothing is shown, nothing is asked
// or drawn during an IME composition or after blur, and Monaco never waits for an answer that
// will not come.
import test from "node:test";
import assert from "node:assert/strict";
import { EditorState } from "@codemirror/state";
import { keymap } from "@codemirror/view";
import { nibCompletion } from "../../dist/editors/codemirror.js";
import { attachTextarea } from "../../dist/editors/textarea.js";
import { registerMonaco } from "../../dist/editors/monaco.js";
import { completion, fakeCompleter } from "./fake_completer.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const P = "def add(a, b):\n    return ";

// ---- CodeMirror ----

/**
 * The extension in a real EditorState, and a stand-in for the EditorView with what the adapter
 * reads of it (state, hasFocus, composing, dispatch); each dispatch runs the plugin's update.
 */
function codemirror(doc = "") {
  const fake = fakeCompleter();
  const nib = nibCompletion(fake, { debounceMs: 20, stream: false });
  const [ghostField, , plugin] = nib.extension;
  const view = {
    state: EditorState.create({ doc, selection: { anchor: doc.length }, extensions: nib.extension }),
    hasFocus: true,
    composing: false,
    dispatch(spec) {
      const tr = this.state.update(spec);
      this.state = tr.state;
      this.plugin.update({ view: this, state: tr.state, docChanged: tr.docChanged, selectionSet: tr.selection !== undefined });
    },
  };
  view.plugin = plugin.create(view);
  const type = (text) => {
    const at = view.state.selection.main.head;
    view.dispatch({ changes: { from: at, insert: text }, selection: { anchor: at + text.length } });
  };
  const key = (name) => view.state.facet(keymap).flat().find((b) => b.key === name).run(view);
  const ghost = () => view.state.field(ghostField);
  return { fake, nib, view, type, key, ghost };
}

/** `codemirror(P)` after typing "a", with the answer " + b" drawn. */
async function codemirrorShowing() {
  const cm = codemirror(P);
  cm.type("a");
  await sleep(60);
  cm.fake.calls[0].resolve(completion([" + b"]));
  await sleep(0);
  assert.equal(cm.ghost().text, " + b");
  return cm;
}

test("codemirror: Esc with nothing drawn goes on to the editor (vim) but still stops the pending request", async () => {
  const { fake, type, key, ghost } = codemirror("def add(a, b):\n    ");
  type("return ");
  assert.equal(key("Escape"), false, "a debounce the user never saw does not take Esc");
  await sleep(60);
  assert.equal(fake.calls.length, 0, "the debounce was stopped");
  type("a");
  await sleep(60);
  assert.equal(key("Escape"), false, "a request in flight does not take Esc either");
  assert.equal(fake.calls[0].aborted, true);
  type(" ");
  await sleep(60);
  fake.calls[1].resolve(completion(["+ b"]));
  await sleep(0);
  assert.deepEqual(ghost(), { text: "+ b", pos: P.length + 2 });
  assert.equal(key("Escape"), true, "a suggestion on screen: Esc is taken");
  await sleep(0);
  assert.equal(ghost(), null);
});

test("codemirror: nothing is asked or drawn during an IME composition; the update runs when it ends", async () => {
  const { fake, nib, view, type, ghost } = await codemirrorShowing();
  // The composition's changes: the ghost goes, nothing is asked.
  view.composing = true;
  type("ｂ");
  await sleep(0);
  assert.equal(ghost(), null);
  assert.equal(nib.controller.suggestion, null);
  await sleep(60);
  assert.equal(fake.calls.length, 1, "no request during the composition");
  // It ends with no change after it: the compositionend observer reports the composed text.
  view.composing = false;
  view.plugin.compositionEnd();
  await sleep(60);
  assert.equal(fake.calls.length, 2);
  assert.equal(fake.calls[1].req.prefix, P + "aｂ");
  // It ends with a change (CodeMirror flushed the DOM): that update reports it.
  view.composing = true;
  type("c");
  await sleep(60);
  assert.equal(fake.calls[1].aborted, true, "the composition stopped the request in flight");
  view.composing = false;
  view.dispatch({});
  await sleep(60);
  assert.equal(fake.calls.length, 3);
  assert.equal(fake.calls[2].req.prefix, P + "aｂc");
  view.plugin.compositionEnd();
  await sleep(60);
  assert.equal(fake.calls.length, 3, "reported once");
});

test("codemirror: blur takes the ghost away and stops what is pending; edits without focus ask nothing", async () => {
  const { fake, nib, view, type, ghost } = await codemirrorShowing();
  view.hasFocus = false;
  view.dispatch({});
  await sleep(0);
  assert.equal(ghost(), null);
  assert.equal(nib.controller.suggestion, null);
  // Focus back, a request goes out, focus lost while it runs: its late answer is not drawn.
  view.hasFocus = true;
  type(" ");
  await sleep(60);
  assert.equal(fake.calls.length, 2);
  view.hasFocus = false;
  view.dispatch({});
  assert.equal(fake.calls[1].aborted, true);
  fake.calls[1].resolve(completion(["+ b"]));
  await sleep(0);
  assert.equal(ghost(), null);
  // The page edits the unfocused editor: no request.
  type("x");
  await sleep(60);
  assert.equal(fake.calls.length, 2);
});

// ---- textarea ----

/** A stand-in `<textarea>` with the events the adapter listens to, in a stand-in document. */
function textarea(value = "") {
  globalThis.getComputedStyle ??= () => ({});
  const listeners = {};
  const element = () => ({ style: {}, className: "", textContent: "", setAttribute() {}, append() {}, remove() {} });
  const ta = {
    value,
    selectionStart: value.length,
    selectionEnd: value.length,
    offsetLeft: 0,
    offsetTop: 0,
    scrollTop: 0,
    scrollLeft: 0,
    insertAdjacentElement() {},
    focus() {},
    addEventListener: (type, f) => (listeners[type] ??= []).push(f),
    removeEventListener: (type, f) => (listeners[type] = (listeners[type] ?? []).filter((g) => g !== f)),
    /** Fires an event; true when a listener prevented its default. */
    fire(type, init = {}) {
      const e = { type, defaultPrevented: false, preventDefault() { this.defaultPrevented = true; }, ...init };
      for (const f of listeners[type] ?? []) f(e);
      return e.defaultPrevented;
    },
    /** Text typed at the caret, as the browser does it: the value, then `input`. */
    type(text, init = {}) {
      ta.value = ta.value.slice(0, ta.selectionStart) + text + ta.value.slice(ta.selectionEnd);
      ta.selectionStart = ta.selectionEnd = ta.selectionStart + text.length;
      ta.fire("input", { inputType: "insertText", data: text, ...init });
    },
    ownerDocument: {
      createElement: element,
      createTextNode: (data) => ({ data }),
      execCommand(_cmd, _ui, text) {
        ta.type(text);
        return true;
      },
    },
  };
  return ta;
}

test("textarea: during an IME composition keys go to the IME and input asks nothing; compositionend asks", async () => {
  const fake = fakeCompleter();
  const ta = textarea(P);
  const nib = attachTextarea(ta, fake, { debounceMs: 20 });
  ta.type("a");
  await sleep(60);
  fake.calls[0].resolve(completion([" + b"]));
  await sleep(0);
  assert.equal(nib.controller.suggestion.text, " + b");
  ta.fire("compositionstart");
  assert.equal(nib.controller.suggestion, null, "no ghost next to the composition");
  ta.type("ｂ", { isComposing: true });
  ta.fire("keyup");
  await sleep(60);
  assert.equal(fake.calls.length, 1, "no request while composing");
  assert.equal(ta.fire("keydown", { key: "Tab", isComposing: true }), false, "Tab belongs to the IME");
  assert.equal(ta.fire("keydown", { key: "Escape", isComposing: true }), false, "Esc belongs to the IME");
  assert.equal(ta.value, P + "aｂ", "nothing inserted");
  ta.fire("compositionend");
  // Safari's key that ended the composition comes after it, as keyCode 229.
  assert.equal(ta.fire("keydown", { key: "Tab", keyCode: 229 }), false);
  await sleep(60);
  assert.equal(fake.calls.length, 2, "the composed text is asked about");
  assert.equal(fake.calls[1].req.prefix, P + "aｂ");
  nib.detach();
});

test("textarea: Esc with nothing shown goes on to the page and stops the pending request; Tab indents by default", async () => {
  const fake = fakeCompleter();
  const ta = textarea(P);
  const nib = attachTextarea(ta, fake, { debounceMs: 20 });
  ta.type("a");
  assert.equal(ta.fire("keydown", { key: "Escape" }), false);
  await sleep(60);
  assert.equal(fake.calls.length, 0, "the debounce was stopped");
  ta.type(" ");
  await sleep(60);
  fake.calls[0].resolve(completion(["+ b"]));
  await sleep(0);
  assert.equal(ta.fire("keydown", { key: "Escape" }), true, "a suggestion on screen: Esc is taken");
  assert.equal(nib.controller.suggestion, null);
  // The playground's "Tab indents" relies on this default (`indent: null` lets Tab go on).
  const before = ta.value;
  assert.equal(ta.fire("keydown", { key: "Tab" }), true);
  assert.equal(ta.value, before + "    ");
  nib.detach();
  const plain = textarea(P);
  attachTextarea(plain, fakeCompleter(), { debounceMs: 20 }, { indent: null });
  assert.equal(plain.fire("keydown", { key: "Tab" }), false, "indent: null, Tab goes on");
});

// ---- Monaco ----

function monaco() {
  const fake = fakeCompleter();
  let provider = null;
  const model = { value: "", getValue: () => model.value, getOffsetAt: (p) => p.offset };
  const ns = { languages: { registerInlineCompletionsProvider: (_sel, p) => ((provider = p), { dispose() {} }) } };
  const nib = registerMonaco(ns, { getModel: () => model, updateOptions() {} }, fake, { debounceMs: 20 });
  const token = () => {
    const ls = new Set();
    return {
      isCancellationRequested: false,
      onCancellationRequested: (l) => (ls.add(l), { dispose: () => ls.delete(l) }),
      cancel() {
        this.isCancellationRequested = true;
        for (const l of [...ls]) l();
      },
    };
  };
  /** One provider call with the cursor at `at`; `settled` is "late" while it still waits after 100 ms. */
  const ask = (text, triggerKind = 0, tok = token(), at = text.length) => {
    model.value = text;
    const p = provider.provideInlineCompletions(model, { lineNumber: 1, column: at + 1, offset: at }, { triggerKind }, tok);
    return { p, tok, settled: Promise.race([p, sleep(100).then(() => "late")]) };
  };
  return { fake, nib, ask, provider };
}

test("monaco: the mid-line gate and the same text after Esc do not leave Monaco waiting; an explicit trigger asks at once", async () => {
  const { fake, nib, ask, provider } = monaco();
  assert.deepEqual(await ask("x = foo", 0, undefined, 4).settled, { items: [] }, "mid-line: nothing asked");
  assert.equal(fake.calls.length, 0);
  const first = ask(P);
  await sleep(60);
  fake.calls[0].resolve(completion(["a + b", "a - b"]));
  assert.equal((await first.settled).items.length, 2);
  provider.handleEndOfLifetime(null, null, { kind: 1 });
  assert.equal(nib.controller.suggestion, null);
  assert.deepEqual(await ask(P).settled, { items: [] }, "the same text, nothing on its way");
  // Explicit (Alt+\): asks now, mid-line too, with no debounce.
  const explicit = ask("x = foo", 1, undefined, 4);
  await sleep(0);
  assert.equal(fake.calls.length, 2);
  assert.equal(fake.calls[1].req.suffix, "foo");
  fake.calls[1].resolve(completion(["bar("]));
  assert.equal((await explicit.settled).items[0].insertText, "bar(");
  // Explicit again with the suggestion shown (Monaco's cycling): the items, no new request.
  assert.equal((await ask("x = foo", 1, undefined, 4).settled).items[0].insertText, "bar(");
  assert.equal(fake.calls.length, 2);
});
