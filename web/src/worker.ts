/**
 * The dedicated module worker that runs the engine. It answers the page's typed messages
 * (types.ts); generation runs one wasm `step()` per event-loop turn so that an `abort`
 * message is seen between tokens. If the wasm module traps (a panic, out of memory), the
 * worker reports `fatal` and closes: the page replaces it.
 */
import { download } from "./download.js";
import { describeError, NibError } from "./errors.js";
import type { FromWorker, Progress, ToWorker, WasmEngine, WasmModule } from "./types.js";

interface WorkerScope {
  postMessage(m: FromWorker): void;
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
  close(): void;
  location: { origin: string };
  __nibPanic?: string;
}
const scope = self as unknown as WorkerScope;
const post = (m: FromWorker) => scope.postMessage(m);

let wasm: WasmModule | null = null;
let memory: WebAssembly.Memory | null = null;
let engine: WasmEngine | null = null;
let dead = false;
/** Ids of running requests, with the controller that aborts each. */
const running = new Map<number, AbortController>();

/**
 * Whether this browser runs relaxed SIMD (Chrome 114+): a tiny module that uses
 * `i16x8.relaxed_dot_i8x16_i7x16_s` validates. Then the engine is nib_wasm_bg.wasm, built with
 * relaxed-simd (faster 4-bit matmuls, identical results); otherwise nib_wasm_simd128_bg.wasm,
 * the same code with SIMD128 alone. One JS glue serves both (`cargo xtask web` checks).
 */
function hasRelaxedSimd(): boolean {
  const v128 = [0xfd, 0x0c, ...new Array<number>(16).fill(0)]; // v128.const 0
  const body = [0x00, ...v128, ...v128, 0xfd, 0x92, 0x02, 0x0b]; // no locals; dot; end
  const code = [0x01, body.length, ...body];
  // magic, version; type () -> v128; one function of that type; its code.
  const header = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, 0x03, 0x02, 0x01, 0x00];
  return WebAssembly.validate(new Uint8Array([...header, 0x0a, code.length, ...code]));
}

async function wasmModule(): Promise<WasmModule> {
  if (!wasm) {
    const m = (await import(new URL("./wasm/nib_wasm.js", import.meta.url).href)) as WasmModule;
    const file = hasRelaxedSimd() ? "./wasm/nib_wasm_bg.wasm" : "./wasm/nib_wasm_simd128_bg.wasm";
    const out = await m.default({ module_or_path: new URL(file, import.meta.url) });
    memory = out.memory;
    wasm = m;
  }
  return wasm;
}

/** Back to the event loop without setTimeout's 4 ms clamp. */
const channel = new MessageChannel();
const waiting: (() => void)[] = [];
channel.port1.onmessage = () => waiting.shift()?.();
function yieldToEvents(): Promise<void> {
  return new Promise((resolve) => {
    waiting.push(resolve);
    channel.port2.postMessage(0);
  });
}

function requireEngine(): WasmEngine {
  if (!engine) throw new NibError("invalid_argument", "no model is loaded");
  return engine;
}

/** Progress, at most every 25 ms per phase except each phase's first and last report. */
function throttled(id: number): (p: Progress) => void {
  let last = 0;
  let phase = "";
  return (p) => {
    const now = performance.now();
    if (p.phase !== phase || p.bytes === p.total || now - last >= 25) {
      phase = p.phase;
      last = now;
      post({ type: "progress", id, progress: p });
    }
  };
}

async function load(msg: Extract<ToWorker, { type: "load" }>, signal: AbortSignal): Promise<unknown> {
  const m = await wasmModule();
  const gpu = m.webgpuSupported() && "gpu" in navigator;
  if (msg.backend === "webgpu" && !gpu) {
    throw new NibError("gpu_unavailable", m.webgpuSupported() ? "this browser has no WebGPU (navigator.gpu)" : "this build of nib has no WebGPU backend");
  }
  const progress = throttled(msg.id);
  const fetchModel = () => download(m, () => memory as WebAssembly.Memory, msg.source, msg.sha256, scope.location.origin, signal, progress);
  let got = await fetchModel();
  try {
    progress({ phase: "init", bytes: 0, total: got.bytes });
    const sha256 = got.loader.sha256Hex();
    engine?.free();
    engine = null;
    let e: WasmEngine | null = null;
    if (msg.backend !== "cpu" && gpu) {
      // The device first: without one the loader keeps the bytes, and "auto" takes the CPU.
      let device = null;
      try {
        device = await m.GpuDevice.open();
      } catch (err) {
        if (msg.backend === "webgpu" || describeError(err).code !== "gpu_unavailable") throw err;
      }
      // "auto" leaves a software adapter (SwiftShader) alone: the wasm CPU backend is faster.
      if (device && msg.backend === "auto" && device.isSoftware()) {
        device.free();
        device = null;
      }
      if (device) {
        try {
          e = await m.NibEngine.loadOnGpu(got.loader, device);
        } catch (err) {
          if (msg.backend === "webgpu" || signal.aborted) throw err;
          // "auto": what the GPU cannot hold (its memory, a format it lacks, a lost device) the
          // CPU can. The upload took the loader's bytes: get them again (from the cache when a
          // sha256 was given).
          console.warn(`nib: WebGPU could not load the model (${describeError(err).message}); using the CPU`);
          got.loader.free();
          got = await fetchModel();
        } finally {
          device.free();
        }
      }
    }
    e ??= m.NibEngine.load(got.loader, "cpu");
    engine = e;
    progress({ phase: "init", bytes: got.bytes, total: got.bytes });
    return { ...e.info(), sha256, bytes: got.bytes, fromCache: got.fromCache };
  } finally {
    got.loader.free();
  }
}

async function generate(msg: Extract<ToWorker, { type: "generate" }>, signal: AbortSignal): Promise<unknown> {
  const gen = requireEngine().generate(msg.prompt, msg.options);
  try {
    let n = 0;
    for (;;) {
      if (signal.aborted) throw new NibError("aborted", `generation aborted after ${n} tokens`);
      const s = await gen.step();
      if (s.token != null) {
        n++;
        post({ type: "token", id: msg.id, token: { token: s.token, text: s.text, logprob: s.logprob ?? 0, at: performance.timeOrigin + performance.now() } });
      }
      if (s.done) return { tokens: n };
      await yieldToEvents();
    }
  } finally {
    gen.free();
  }
}

async function handle(msg: ToWorker, signal: AbortSignal): Promise<unknown> {
  switch (msg.type) {
    case "load":
      return load(msg, signal);
    case "tokenize":
      return Array.from(requireEngine().tokenize(msg.text, msg.special));
    case "detokenize":
      return requireEngine().detokenize(Uint32Array.from(msg.ids));
    case "logits":
      return await requireEngine().logits(msg.prompt, msg.top);
    case "generate":
      return generate(msg, signal);
    case "complete": {
      const onPartial = msg.stream ? (text: string) => post({ type: "partial", id: msg.id, text }) : null;
      // The pipeline yields before every token, so an abort stops it within one.
      const { cancelled, ...out } = await requireEngine().complete(msg.request, onPartial, signal, yieldToEvents);
      if (cancelled) throw new NibError("aborted", "completion aborted");
      return out;
    }
    case "bench":
      return await requireEngine().bench(msg.text, msg.promptTokens, msg.genTokens);
    case "memory":
      return {
        wasmBytes: memory?.buffer.byteLength ?? 0,
        jsHeapBytes: (performance as unknown as { memory?: { usedJSHeapSize: number } }).memory?.usedJSHeapSize ?? null,
      };
    case "testPanic":
      (await wasmModule()).__testPanic();
      return null;
    case "testExhaustMemory":
      (await wasmModule()).__testExhaustMemory();
      return null;
    case "testLoseDevice":
      requireEngine().__testLoseDevice();
      return null;
    case "abort":
      return null;
  }
}

/**
 * Calls that use the engine go one after another. An aborted `complete` answers its caller at
 * once but finishes its current token here; an editor's next request arrives in that window
 * and would otherwise get `busy`.
 */
const EVALUATING = new Set<ToWorker["type"]>(["complete", "generate", "logits", "bench", "tokenize", "detokenize", "testLoseDevice"]);
let evaluating: Promise<unknown> = Promise.resolve();

scope.onmessage = (e) => {
  const msg = e.data;
  if (dead) return;
  if (msg.type === "abort") {
    running.get(msg.id)?.abort();
    return;
  }
  const ctl = new AbortController();
  running.set(msg.id, ctl);
  // A request aborted while it waited behind another is not started: its prefill alone could
  // hold up the editor's next request for seconds on the CPU.
  const run = () => (ctl.signal.aborted ? Promise.reject(new NibError("aborted", "aborted before it started")) : handle(msg, ctl.signal));
  const done = EVALUATING.has(msg.type) ? (evaluating = evaluating.then(run, run)) : run();
  done.then(
    (value) => post({ type: "result", id: msg.id, value }),
    (err) => {
      if (err instanceof WebAssembly.RuntimeError) {
        // The module trapped: its memory and Rust's invariants cannot be trusted any more.
        dead = true;
        // A failed allocation aborts without a panic: the allocator remembers its size.
        const failed = scope.__nibPanic ? 0 : (wasm?.__nibAllocFailure() ?? 0);
        const code = failed > 0 ? "out_of_memory" : "internal";
        const message = scope.__nibPanic ?? (failed > 0 ? `the engine ran out of memory (an allocation of ${failed} bytes failed; wasm memory is ${memory?.buffer.byteLength ?? 0} bytes)` : `the engine stopped: ${err.message}`);
        // One message: the page rejects every pending call, this one included, with it.
        post({ type: "fatal", code, message });
        scope.close();
        return;
      }
      const { code, message } = describeError(err);
      post({ type: "error", id: msg.id, code, message });
    },
  ).finally(() => running.delete(msg.id));
};

post({ type: "ready" });
