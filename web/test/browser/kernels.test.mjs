// Every GPU kernel against its CPU reference in Chromium's WebGPU (SwiftShader where there is no
// GPU): the checks of engine/tests/common/kernel_checks.rs (the grid engine/tests/gpu_kernels.rs
// runs natively on lavapipe) built as kernel-check/ for the browser. Fresh random inputs, outputs
// poisoned with NaN, every weight format; the page reports each check's worst relative error.
import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { startServer, ROOT, WEB } from "../server.mjs";
import { CHROMIUM, ARGS, withLogs } from "./harness.mjs";

const PKG = path.join(ROOT, "target/kernel-check/pkg");
const FORMATS = ["F32", "F16", "Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"];

test("WebGPU kernels: every op's GPU result against the CPU reference, every weight format", async () => {
  for (const [file, hint] of [[CHROMIUM, "install Chromium (cargo xtask setup)"], [path.join(PKG, "nib_kernel_check_bg.wasm"), "build kernel-check for the browser (cargo xtask test does)"]]) {
    if (!fs.existsSync(file)) throw new Error(`${file} is missing: ${hint}`);
  }
  const srv = await startServer({ mounts: [["/kernels/pkg/", PKG], ["/kernels/", path.join(WEB, "test/kernels")]] });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "nib-chromium-"));
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS });
  const logs = [];
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.on("console", (m) => logs.push(`[${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => logs.push(`[pageerror] ${e.stack ?? e}`));
    await page.goto(`${srv.origin}/kernels/index.html`);
    await page.waitForFunction(() => window.kernelsReady === true, null, { timeout: 30000 });
    const t0 = Date.now();
    const out = await page.evaluate(async () => {
      try {
        return { ok: JSON.parse(await window.kernelChecks()) };
      } catch (e) {
        return { error: String(e?.message ?? e) };
      }
    });
    assert.equal(out.error, undefined, `a kernel check failed: ${out.error}`);
    const { adapter, tolerance, worst } = out.ok;
    assert.match(adapter, /BrowserWebGpu/, "the checks ran on the page's WebGPU");
    console.log(`kernel checks on ${adapter} in ${((Date.now() - t0) / 1000).toFixed(1)} s:`);
    for (const [name, e] of worst) console.log(`  ${name}: worst rel err ${e.toExponential(2)}`);
    const checked = new Map(worst);
    for (const f of FORMATS) {
      assert.ok(checked.has(`matmul ${f}`), `no matmul check of ${f}`);
      assert.ok(checked.has(`embed ${f}`), `no embedding check of ${f}`);
    }
    for (const op of ["rms_norm", "rope", "swiglu", "add", "attention", "argmax", "top_k", "top_k sampled"]) assert.ok(checked.has(op), `no ${op} check`);
    // Attention against the CPU backend, which rounds q and the probabilities to f16: 2e-3 (its
    // f16 variant runs where the adapter has shader-f16; SwiftShader has not).
    const bound = (name) => (/^attention( f16)?( blocked)? vs cpu$/.test(name) ? 2e-3 : tolerance);
    for (const [name, e] of worst) assert.ok(e <= bound(name), `${name}: ${e}`);
  } catch (e) {
    throw withLogs(e, logs);
  } finally {
    await context.close();
    await srv.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
});
