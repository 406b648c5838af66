// The extension's pure parts in Node: the settings' defaults against the model registry, the
// model URL resolution, and the notebook context (whole cells dropped from the top, so the
// prompt's start stays put while the current cell grows).
import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { cellPrompt, earlierContext } from "../lib/context.js";
import { modelHref, readSettings } from "../lib/settings.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const json = (rel) => JSON.parse(fs.readFileSync(path.join(here, rel), "utf8"));

test("the settings' default model is the registry's default", () => {
  const registry = json("../../../models/registry.json");
  const model = registry.models.find((m) => m.id === registry.default);
  const props = json("../schema/plugin.json").properties;
  assert.equal(props.modelUrl.default, model.url);
  assert.equal(props.sha256.default, model.sha256);
  const defaults = Object.fromEntries(Object.entries(props).map(([k, v]) => [k, v.default]));
  assert.deepEqual(readSettings(defaults), { modelUrl: model.url, sha256: model.sha256, backend: "auto", mode: "auto", debounceMs: 120 });
});

test("settings: bad values are refused or fall back, never passed on", () => {
  const base = { modelUrl: "m.gguf", sha256: "", backend: "cpu", mode: "line", debounceMs: 50 };
  assert.throws(() => readSettings({ ...base, sha256: "abc" }), /64 hex/);
  assert.throws(() => readSettings({ ...base, modelUrl: "  " }), /modelUrl/);
  assert.equal(readSettings({ ...base, sha256: "AB".repeat(32) }).sha256, "ab".repeat(32));
  assert.equal(readSettings({ ...base, backend: "tpu" }).backend, "auto");
  assert.equal(readSettings({ ...base, mode: 3 }).mode, "auto");
  assert.equal(readSettings({ ...base, debounceMs: -5 }).debounceMs, 0);
});

test("model URL: relative paths are files under the Jupyter root, absolute URLs stay", () => {
  assert.equal(modelHref("models/default/a b.gguf", "http://127.0.0.1:8888/"), "http://127.0.0.1:8888/files/models/default/a%20b.gguf");
  assert.equal(modelHref("/m.gguf", "http://h/user/x"), "http://h/user/x/files/m.gguf");
  assert.equal(modelHref("https://example.org/m.gguf?x=1", "http://h/"), "https://example.org/m.gguf?x=1");
});

test("notebook context: earlier cells first, cut by whole cells from the top", () => {
  assert.equal(earlierContext([]), "");
  assert.equal(earlierContext(["a = 1\n", "  \n", "b = 2"]), "a = 1\n\nb = 2\n\n");
  // Over the budget: the oldest cell goes whole.
  assert.equal(earlierContext(["x".repeat(10), "y = 1", "z = 2"], 16), "y = 1\n\nz = 2\n\n");
  // One cell over the budget keeps its tail from a line start.
  const long = ["first line", "second", "third"].join("\n");
  assert.equal(earlierContext([long], 16), "second\nthird\n\n");
  const out = earlierContext(["q".repeat(50), "w".repeat(50)], 80);
  assert.ok(out.length <= 80);
  // Typing in the current cell only appends to the prefix: the cache keeps the whole prompt.
  const cells = ["def f(x):\n    return x"];
  const a = cellPrompt(cells, "y = f", 5);
  const b = cellPrompt(cells, "y = f(", 6);
  assert.ok(b.prefix.startsWith(a.prefix));
  assert.equal(a.prefix, "def f(x):\n    return x\n\ny = f");
  assert.deepEqual(cellPrompt([], "ab|cd".replace("|", ""), 2), { prefix: "ab", suffix: "cd" });
});
