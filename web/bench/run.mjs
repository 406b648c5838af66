// cargo xtask bench --browser: nib's CPU wasm and WebGPU beside wllama (llama.cpp in wasm, 1 and
// 2 threads: the page is cross-origin isolated) in one headless Chromium, same GGUF, same prompts:
// load, time to first token of a short prompt, prefill of 512 tokens, decode of 128. Medians of `--runs` (default 3) repetitions, each engine from a cold
// cache. Usage: node bench/run.mjs WLLAMA_DIR NATIVE_DECODE_TOK_S [RUNS]
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { chromium } from "playwright-core";
import { startServer, MODEL_SHA256, MODEL_URL_PATH, ROOT } from "../test/server.mjs";
import { ARGS, CHROMIUM } from "../test/browser/harness.mjs";

const [wllamaDir, nativeDecode, runsArg] = process.argv.slice(2);
const RUNS = Number(runsArg ?? 3);
const GPU_PROMPT = 32, GPU_GEN = 4;
// The peer benchmark's prompts (../shared/tools/wllama-bench): a 28-token request and the
// source of CPython's json/decoder.py, cut here to 512 tokens of nib's tokenizer.
const SHORT = "You are a helpful assistant. Write a short Python function that returns the sum of two integers, then explain in one sentence how it works.";
const decoder = execFileSync("python3", ["-c", "import inspect, json.decoder; print(inspect.getsource(json.decoder))"], { encoding: "utf8" });

const srv = await startServer({
  headers: { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp", "Cross-Origin-Resource-Policy": "same-origin" },
  mounts: [["/bench/", path.join(ROOT, "web/bench")], ["/wllama/", path.resolve(wllamaDir)]],
});
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "nib-bench-"));
const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS });
const page = context.pages()[0] ?? (await context.newPage());
page.on("pageerror", (e) => console.error(`[pageerror] ${e}`));
const median = (xs) => { const s = xs.filter((x) => x != null).sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)] : null; };
try {
  await page.goto(`${srv.origin}/bench/index.html`);
  await page.waitForFunction(() => window.benchReady === true, null, { timeout: 60000 });
  const url = `${srv.origin}${MODEL_URL_PATH}`;
  const longText = await page.evaluate((a) => window.promptText(a), { url, sha256: MODEL_SHA256, text: decoder, promptTokens: 512 });
  // WebGPU here is SwiftShader (a CPU rasterizer, seconds per token): the row shows that the
  // path runs end to end in the same page, on a shorter prompt and generation; its speed means
  // nothing for a real GPU (bench/gpu/ has those figures).
  const gpuText = await page.evaluate((a) => window.promptText(a), { url, sha256: MODEL_SHA256, text: decoder, promptTokens: GPU_PROMPT });
  const rows = { nib: [], nibgpu: [], wllama1: [], wllama2: [] };
  for (let r = 0; r < RUNS; r++) {
    rows.nib.push(await page.evaluate((a) => window.runNib(a), { url, sha256: MODEL_SHA256, shortPrompt: SHORT, longText, promptTokens: 512, genTokens: 128 }));
    rows.nibgpu.push(await page.evaluate((a) => window.runNib(a), { url, sha256: MODEL_SHA256, shortPrompt: SHORT, longText: gpuText, promptTokens: GPU_PROMPT, genTokens: GPU_GEN, backend: "webgpu", ttftTokens: 1 }));
    for (const threads of [1, 2]) rows[`wllama${threads}`].push(await page.evaluate((a) => window.runWllama(a), { url, shortPrompt: SHORT, longText, genTokens: 128, threads }));
    console.error(`run ${r + 1}/${RUNS}: ${JSON.stringify(Object.fromEntries(Object.entries(rows).map(([k, v]) => [k, v.at(-1)])))}`);
  }
  const m = (rs, k) => median(rs.map((x) => x[k]));
  const table = Object.fromEntries(Object.entries(rows).map(([k, rs]) => [k, Object.fromEntries(["load_ms", "ttft_ms", "ttft_stepped_ms", "prefill_tok_s", "decode_tok_s", "short_tokens", "prompt_tokens"].map((f) => [f, m(rs, f)]))]));
  const { nib: n, nibgpu: g, wllama1: w, wllama2: w2 } = table;
  const f = (x, d = 1) => (x == null ? "—" : x.toFixed(d));
  const gpuBackend = rows.nibgpu.map((x) => x.backend).join(",");
  console.log(`Chromium ${context.browser()?.version() ?? ""}, ${os.cpus()[0]?.model}, medians of ${RUNS}`);
  console.log("| engine | load ms | first token ms (short prompt) | prefill tok/s (512) | decode tok/s (128) |");
  console.log("|---|---|---|---|---|");
  console.log(`| nib CPU wasm, 1 thread | ${f(n.load_ms, 0)} | ${f(n.ttft_ms, 0)} (${n.short_tokens} tok) | ${f(n.prefill_tok_s)} | ${f(n.decode_tok_s)} |`);
  for (const [name, x] of [["wllama 1 thread", w], ["wllama 2 threads", w2]]) {
    console.log(`| ${name} | ${f(x.load_ms, 0)} | ${f(x.ttft_ms, 0)} (${x.short_tokens} tok) | ${f(x.prefill_tok_s)} (${x.prompt_tokens} tok) | ${f(x.decode_tok_s)} |`);
  }
  console.log(`| nib WebGPU (${gpuBackend}; SwiftShader: correctness, not speed) | ${f(g.load_ms, 0)} | ${f(g.ttft_ms, 0)} (1 token) | ${f(g.prefill_tok_s, 2)} (${GPU_PROMPT} tok) | ${f(g.decode_tok_s, 2)} (${GPU_GEN} tok) |`);
  for (const [name, x] of [["nib / wllama 1 thread", w], ["nib / wllama 2 threads", w2]]) {
    console.log(`| ${name} | ${f(x.load_ms / n.load_ms, 2)}x faster | ${f(x.ttft_ms / n.ttft_ms, 2)}x faster | ${f(n.prefill_tok_s / x.prefill_tok_s, 2)}x | ${f(n.decode_tok_s / x.decode_tok_s, 2)}x |`);
  }
  console.log(`nib first token with the default abortable prefill (~40 ms steps): ${f(n.ttft_stepped_ms, 0)} ms`);
  if (nativeDecode) console.log(`nib wasm decode / nib native 1-thread decode (${Number(nativeDecode).toFixed(1)} tok/s): ${(100 * n.decode_tok_s / Number(nativeDecode)).toFixed(0)}%`);
  console.log(JSON.stringify({ medians: table, runs: rows }));
} finally {
  await context.close();
  await srv.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
