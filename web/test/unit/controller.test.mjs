// The editor-agnostic suggestion controller, against a fake completer whose answers the test
// holds and releases: debounce, abort on change, typed-through shortening without a request,
// cycling, accept / accept word, dismiss, the mid-line gate, the status model.
import test from "node:test";
import assert from "node:assert/strict";
import { SuggestionController, firstWord, shouldTrigger } from "../../dist/editors/controller.js";
import { describeStatus } from "../../dist/editors/status.js";
import { completion, fakeCompleter } from "./fake_completer.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function setup(settings = {}) {
  const fake = fakeCompleter();
  const shown = [];
  const c = new SuggestionController(fake, (s) => shown.push(s && s.text), { debounceMs: 20, ...settings });
  return { fake, shown, c };
}

const P = "def add(a, b):\n    return ";

test("rapid changes make one request, after the debounce", async () => {
  const { fake, c } = setup();
  c.update({ prefix: "def add(a, b):\n    ret", suffix: "" }, true);
  c.update({ prefix: "def add(a, b):\n    retu", suffix: "" }, true);
  c.update({ prefix: P, suffix: "" }, true);
  assert.equal(fake.calls.length, 0, "nothing before the debounce");
  await sleep(80);
  assert.equal(fake.calls.length, 1);
  assert.equal(fake.calls[0].req.prefix, P);
  assert.equal(c.requests, 1);
});

test("a change aborts the request in flight and its answer is never shown", async () => {
  const { fake, c, shown } = setup();
  c.update({ prefix: P, suffix: "" }, true);
  await sleep(50);
  assert.equal(fake.calls.length, 1);
  assert.equal(c.status.value.state, "thinking");
  c.update({ prefix: P + "x", suffix: "" }, true);
  assert.equal(fake.calls[0].aborted, true, "signal fired");
  assert.equal(c.status.value.state, "ready");
  fake.calls[0].resolve(completion(["a + b"]));
  await sleep(50);
  assert.equal(fake.calls.length, 2);
  assert.ok(!shown.includes("a + b"));
  assert.equal(c.suggestion, null);
});

test("typing the suggestion's head shortens it with no request; a mismatch asks again", async () => {
  const { fake, c } = setup();
  c.update({ prefix: P, suffix: "" }, true);
  await sleep(50);
  fake.calls[0].resolve(completion(["a + b", "a - b"]));
  await sleep(0);
  assert.equal(c.suggestion.text, "a + b");
  c.update({ prefix: P + "a", suffix: "" }, true);
  assert.equal(c.suggestion.text, " + b");
  c.update({ prefix: P + "a +", suffix: "" }, true);
  assert.deepEqual(c.suggestion.candidates.map((x) => x.text), [" b"], "the candidate that disagreed is gone");
  await sleep(60);
  assert.equal(c.requests, 1, "no request while typing through");
  c.update({ prefix: P + "a +-", suffix: "" }, true);
  assert.equal(c.suggestion, null);
  await sleep(60);
  assert.equal(c.requests, 2);
});

test("typing the whole suggestion ends it; a cursor move clears without asking", async () => {
  const { fake, c } = setup();
  c.update({ prefix: P, suffix: "" }, true);
  await sleep(50);
  fake.calls[0].resolve(completion(["a"]));
  await sleep(0);
  c.update({ prefix: P + "a", suffix: "" }, true);
  assert.equal(c.suggestion, null, "nothing left to suggest");
  await sleep(50);
  fake.calls[1].resolve(completion(["\n"]));
  await sleep(0);
  assert.equal(c.suggestion.text, "\n");
  c.update({ prefix: P, suffix: "a" }, false);
  assert.equal(c.suggestion, null);
  await sleep(60);
  assert.equal(c.requests, 2);
});

test("cycling goes both ways and wraps; accept returns the text shown and clears", async () => {
  const { fake, c } = setup({ n: 3, temperature: 0.8 });
  c.update({ prefix: P, suffix: "" }, true);
  await sleep(50);
  assert.equal(fake.calls[0].req.n, 3);
  assert.equal(fake.calls[0].req.temperature, 0.8);
  fake.calls[0].resolve(completion(["a + b", "b + a", "", "sum((a, b))"]));
  await sleep(0);
  assert.equal(c.suggestion.count, 3, "empty candidates dropped");
  assert.equal(c.cycle(1), true);
  assert.equal(c.suggestion.text, "b + a");
  c.cycle(1);
  c.cycle(1);
  assert.equal(c.suggestion.text, "a + b");
  c.cycle(-1);
  assert.equal(c.suggestion.text, "sum((a, b))");
  assert.equal(c.accept(), "sum((a, b))");
  assert.equal(c.suggestion, null);
  assert.equal(c.accept(), null, "Tab falls through");
  assert.equal(c.cycle(1), false);
});

test("accept word, then the insert comes back as typed-through text", async () => {
  const { fake, c } = setup();
  c.update({ prefix: "x = ", suffix: "" }, true);
  await sleep(50);
  fake.calls[0].resolve(completion(["compute_total(items, tax)"]));
  await sleep(0);
  const w = c.acceptWord();
  assert.equal(w, "compute_total");
  c.update({ prefix: "x = " + w, suffix: "" }, true);
  assert.equal(c.suggestion.text, "(items, tax)");
  assert.equal(c.acceptWord(), "(");
  assert.equal(c.requests, 1);
  assert.equal(firstWord("  foo bar"), "  foo");
  assert.equal(firstWord(").x"), ").");
});

test("Esc dismisses what is shown and what is pending", async () => {
  const { fake, c } = setup();
  assert.equal(c.dismiss(), false, "nothing to dismiss: Esc goes on");
  c.update({ prefix: P, suffix: "" }, true);
  assert.equal(c.dismiss(), true, "a pending debounce");
  await sleep(50);
  assert.equal(fake.calls.length, 0);
  c.update({ prefix: P, suffix: "" }, true);
  await sleep(50);
  fake.calls[0].resolve(completion(["a + b"]));
  await sleep(0);
  assert.equal(c.dismiss(), true);
  assert.equal(c.suggestion, null);
});

test("mid-line: asks only before closing brackets and punctuation", async () => {
  assert.equal(shouldTrigger({ prefix: "print(", suffix: ")\n" }), true);
  assert.equal(shouldTrigger({ prefix: "x = f(", suffix: "):\n  y" }), true);
  assert.equal(shouldTrigger({ prefix: "x = ", suffix: "foo\n" }), false);
  assert.equal(shouldTrigger({ prefix: "   ", suffix: "" }), false, "whitespace only");
  const { fake, c } = setup();
  c.update({ prefix: "x = ", suffix: "foo" }, true);
  await sleep(50);
  assert.equal(fake.calls.length, 0);
  c.trigger({ prefix: "x = ", suffix: "foo" });
  await sleep(10);
  assert.equal(fake.calls.length, 1, "an explicit trigger asks anyway");
});

test("status: thinking, then latency, tok/s and mode; errors are shown", async () => {
  const { fake, c } = setup();
  const states = [];
  c.status.subscribe((s) => states.push(s.state));
  c.update({ prefix: P, suffix: "" }, true);
  await sleep(50);
  fake.calls[0].resolve(completion(["a + b"], { generatedTokens: 5, decodeMs: 50 }));
  await sleep(0);
  const s = c.status.value;
  assert.equal(s.backend, "cpu");
  assert.equal(s.tokPerS, 100);
  assert.ok(s.lastLatencyMs >= 0);
  assert.equal(s.mode, "line");
  assert.match(describeStatus(s), /^cpu · \d+ ms · 100 tok\/s · line$/);
  c.update({ prefix: P + "z", suffix: "" }, true);
  await sleep(50);
  fake.calls[1].reject(Object.assign(new Error("engine busy"), { code: "busy" }));
  await sleep(0);
  assert.equal(c.status.value.state, "error");
  assert.equal(describeStatus(c.status.value), "error: busy: engine busy");
  assert.deepEqual(states.slice(0, 3), ["ready", "thinking", "ready"]);
});

test("adaptive debounce: about 1.5 typing intervals within [base/2, 2 base], halved after a word ends", () => {
  let t = 0;
  const c = new SuggestionController(fakeCompleter(), () => {}, { debounceMs: 200 }, undefined, () => t);
  assert.equal(c.debounceFor({ prefix: "abc", suffix: "" }), 200, "no rhythm yet: the base");
  for (let i = 0; i < 6; i++) {
    t += 40;
    c.update({ prefix: "x".repeat(i + 1) + "$", suffix: "" }, true);
  }
  c.dismiss();
  assert.equal(c.debounceFor({ prefix: "abc", suffix: "" }), 100, "fast typing: 1.5 x 40 ms, clamped to base/2");
  assert.equal(c.debounceFor({ prefix: "abc(", suffix: "" }), 50);
  for (let i = 0; i < 10; i++) {
    t += 600;
    c.update({ prefix: "y".repeat(i + 1), suffix: "" }, true);
  }
  c.dismiss();
  assert.equal(c.debounceFor({ prefix: "abc", suffix: "" }), 400, "slow typing: clamped to 2 x base");
  const zero = new SuggestionController(fakeCompleter(), () => {}, { debounceMs: 0 });
  assert.equal(zero.debounceFor({ prefix: "a", suffix: "" }), 0);
});

test("n = 1 streams: partials drawn as they come, the final text with its log-probability; a change drops a partial", async () => {
  const gate = [];
  const next = () => new Promise((r) => gate.push(r));
  const streams = [];
  const fake = {
    backend: "cpu",
    complete() {
      throw new Error("complete() called: n = 1 should stream");
    },
    async *stream(req) {
      streams.push(req);
      for (const t of ["a", "a +", "a + b"]) {
        await next();
        if (req.signal.aborted) throw Object.assign(new Error("aborted"), { code: "aborted" });
        yield t;
      }
      await next();
      return completion(["a + b"]);
    },
  };
  const shown = [];
  const c = new SuggestionController(fake, (s) => shown.push(s && s.text), { debounceMs: 10 });
  c.update({ prefix: P, suffix: "" }, true);
  await sleep(30);
  assert.equal(streams.length, 1);
  gate.shift()();
  await sleep(0);
  assert.equal(c.suggestion.text, "a");
  assert.ok(Number.isNaN(c.suggestion.candidates[0].meanLogprob));
  gate.shift()();
  await sleep(0);
  assert.equal(c.suggestion.text, "a +");
  gate.shift()();
  await sleep(0);
  gate.shift()();
  await sleep(0);
  assert.equal(c.suggestion.text, "a + b");
  assert.equal(c.suggestion.candidates[0].meanLogprob, -0.1);
  assert.equal(c.status.value.state, "ready");
  assert.deepEqual(shown.filter((x) => x !== null), ["a", "a +", "a + b", "a + b"]);
  // A change while a partial is shown: it goes, and the next request starts.
  c.update({ prefix: P + "x", suffix: "" }, true);
  await sleep(30);
  gate.shift()();
  await sleep(0);
  assert.equal(c.suggestion.text, "a");
  c.update({ prefix: P + "xa", suffix: "" }, true);
  assert.equal(c.suggestion, null, "a partial is not trimmed: its request was cut short");
  assert.equal(streams[1].signal.aborted, true);
  // Without streaming the same completer is asked with complete().
  const plain = new SuggestionController({ complete: async () => completion(["z"]), stream: fake.stream }, () => {}, { debounceMs: 0, stream: false });
  plain.update({ prefix: P, suffix: "" }, true);
  await sleep(10);
  assert.equal(plain.suggestion.text, "z");
});

test("a stream that fails part-way takes its partial text off the screen: Tab no longer accepts it", async () => {
  let fail;
  const fake = {
    backend: "cpu",
    complete() {
      throw new Error("complete() called: n = 1 should stream");
    },
    async *stream() {
      yield "a +";
      await new Promise((_, reject) => (fail = reject));
    },
  };
  const shown = [];
  const c = new SuggestionController(fake, (s) => shown.push(s && s.text), { debounceMs: 0 });
  c.update({ prefix: P, suffix: "" }, true);
  await sleep(10);
  assert.equal(c.suggestion.text, "a +");
  fail(Object.assign(new Error("the worker died"), { code: "worker_crashed" }));
  await sleep(0);
  assert.equal(c.status.value.state, "error");
  assert.equal(c.suggestion, null);
  assert.equal(shown.at(-1), null, "the adapter heard that nothing is shown");
  assert.equal(c.accept(), null, "Tab falls through");
});

test("pending says what is on its way: a debounce, a request, or nothing", async () => {
  const { fake, c } = setup();
  assert.equal(c.pending, null);
  c.update({ prefix: P, suffix: "" }, true);
  assert.equal(c.pending, "debounce");
  await sleep(50);
  assert.equal(c.pending, "request");
  fake.calls[0].resolve(completion(["a + b"]));
  await sleep(0);
  assert.equal(c.pending, null);
  c.update({ prefix: "x = ", suffix: "foo" }, true);
  assert.equal(c.pending, null, "the mid-line gate: nothing asked");
  c.trigger({ prefix: "x = ", suffix: "foo" });
  assert.equal(c.pending, "debounce");
  c.destroy();
  c.trigger({ prefix: "x = ", suffix: "foo" });
  assert.equal(c.pending, null, "a destroyed controller asks nothing");
});
