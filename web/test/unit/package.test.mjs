// What package.json promises an embedder: every export's files are built, and each entry point
// resolves by the package's own name (the way `import ... from "nib-complete/status"` does).
import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const pkg = JSON.parse(fs.readFileSync(path.join(WEB, "package.json"), "utf8"));

test("every export of package.json is built and resolves by the package's name", async () => {
  for (const [sub, target] of Object.entries(pkg.exports)) {
    for (const file of [target.types, target.import]) assert.ok(fs.existsSync(path.join(WEB, file)), `${sub}: ${file} is missing`);
    const m = await import(path.posix.join(pkg.name, sub));
    assert.ok(Object.keys(m).length > 0, `${sub} exports nothing`);
  }
  // The adapters take a StatusModel; an embedder builds it from this entry point.
  const { StatusModel, describeStatus } = await import("nib-complete/status");
  assert.equal(typeof describeStatus(new StatusModel().value), "string");
});
