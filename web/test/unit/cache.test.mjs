// The cache key: one entry per URL and sha256, on the page's own origin.
import test from "node:test";
import assert from "node:assert/strict";
import { cacheKey } from "../../dist/cache.js";

const A = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

test("cache keys depend on the URL and the sha256", () => {
  const k = cacheKey("http://127.0.0.1:8080", "http://x/m.gguf?v=1", A);
  assert.equal(k, cacheKey("http://127.0.0.1:8080", "http://x/m.gguf?v=1", A.toUpperCase()));
  assert.notEqual(k, cacheKey("http://127.0.0.1:8080", "http://x/m.gguf?v=2", A));
  assert.notEqual(k, cacheKey("http://127.0.0.1:8080", "http://x/m.gguf?v=1", A.replace("b", "c")));
  assert.ok(k.startsWith("http://127.0.0.1:8080/__nib_model_cache__/"));
  assert.ok(!k.slice("http://127.0.0.1:8080/".length).includes("?"), "the URL is encoded into the path");
});
