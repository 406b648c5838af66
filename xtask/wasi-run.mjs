// Cargo runner for wasm32-wasip1 test binaries: runs one under Node's WASI with the whole file
// system visible (tests read the model and fixtures by absolute path).
// Usage: CARGO_TARGET_WASM32_WASIP1_RUNNER="node xtask/wasi-run.mjs" cargo test --target wasm32-wasip1
import { WASI } from "node:wasi";
import fs from "node:fs";
import v8 from "node:v8";

process.removeAllListeners("warning"); // WASI's "experimental" notice is noise in test output
// The relaxed-simd test build (`cargo xtask test`): Node 20's V8 has relaxed SIMD behind a flag.
v8.setFlagsFromString("--experimental-wasm-relaxed-simd");
const [, , file, ...args] = process.argv;
const wasi = new WASI({ version: "preview1", args: [file, ...args], env: process.env, preopens: { "/": "/" }, returnOnExit: false });
const module = await WebAssembly.compile(fs.readFileSync(file));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
// Without returnOnExit, WASI's proc_exit ends the process with the test's status directly
// (returning to JS first made Node 20 crash while tearing down the instance's large memory).
wasi.start(instance);
