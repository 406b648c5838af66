// describeError: codes survive the worker boundary; anything else is `internal`.
import test from "node:test";
import assert from "node:assert/strict";
import { describeError, NibError } from "../../dist/errors.js";

test("errors carry their code", () => {
  const wasmErr = Object.assign(new Error("invalid GGUF: magic at byte 0"), { code: "model_corrupt" });
  assert.deepEqual(describeError(wasmErr), { code: "model_corrupt", message: "invalid GGUF: magic at byte 0" });
  assert.deepEqual(describeError(new NibError("aborted", "stop")), { code: "aborted", message: "stop" });
  const abort = new Error("The user aborted a request.");
  abort.name = "AbortError";
  assert.equal(describeError(abort).code, "aborted");
  assert.equal(describeError(Object.assign(new Error("x"), { code: "ENOENT" })).code, "internal");
  assert.deepEqual(describeError("boom"), { code: "internal", message: "boom" });
  assert.equal(describeError(null).code, "internal");
  const e = new NibError("model_hash_mismatch", "m");
  assert.ok(e instanceof Error);
  assert.equal(e.name, "NibError");
});
