// models/registry.json: every entry is complete, and the default model is the one setup fetches.
import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const registry = JSON.parse(fs.readFileSync(path.join(root, "models/registry.json"), "utf8"));

test("registry entries are complete", () => {
  assert.ok(registry.models.length >= 1);
  const ids = new Set();
  for (const m of registry.models) {
    for (const k of ["id", "name", "url", "sha256", "size", "architecture", "license", "source", "format"]) assert.ok(m[k] !== undefined && m[k] !== "", `${m.id}: no ${k}`);
    assert.ok("fim" in m, `${m.id}: fim must be given (null for prefix-only)`);
    assert.match(m.sha256, /^[0-9a-f]{64}$/);
    assert.ok(Number.isSafeInteger(m.size) && m.size > 0);
    assert.ok(!ids.has(m.id), `duplicate id ${m.id}`);
    ids.add(m.id);
  }
  assert.ok(ids.has(registry.default), "the default model is listed");
});

test("the default model is the file setup fetches", () => {
  const m = registry.models.find((x) => x.id === registry.default);
  const setup = fs.readFileSync(path.join(root, "xtask/src/setup.rs"), "utf8");
  assert.ok(setup.includes(`GGUF_SHA256: &str = "${m.sha256}"`), "sha256 differs from xtask/src/setup.rs");
  assert.ok(setup.includes(`WHEEL_SHA256: &str = "${m.source.wheel_sha256}"`));
  assert.ok(setup.includes(`MODEL_PACKAGE: &str = "${m.source.package}"`));
  const file = path.join(root, "models/default", path.basename(m.url));
  assert.ok(fs.existsSync(file), `${file} is missing: run cargo xtask setup`);
  assert.equal(fs.statSync(file).size, m.size);
});

test("the Gemma 3 entry is the file setup assembles", () => {
  const m = registry.models.find((x) => x.architecture === "gemma3");
  assert.ok(m, "no gemma3 entry");
  const setup = fs.readFileSync(path.join(root, "xtask/src/setup.rs"), "utf8");
  assert.ok(setup.includes(`GEMMA3_SHA256: &str = "${m.sha256}"`), "sha256 differs from xtask/src/setup.rs");
  for (const part of m.source.parts) assert.ok(setup.includes(`"${part}"`), `${part} is not what setup fetches`);
  const file = path.join(root, "models/gemma3", path.basename(m.url));
  assert.ok(fs.existsSync(file), `${file} is missing: run cargo xtask setup`);
  assert.equal(fs.statSync(file).size, m.size);
});
