/**
 * Every type that crosses the worker boundary, in one place: the public API's options and
 * results, the stable error codes, and the messages between the page and the worker (a
 * discriminated union on `type`, so both sides are checked by the compiler).
 */

/** Stable error codes: callers branch on these, never on messages. */
export type ErrorCode =
  | "model_fetch_failed" // network error, HTTP error status, or a connection cut mid-file
  | "model_hash_mismatch" // the bytes do not have the sha256 the caller gave
  | "model_corrupt" // not a GGUF file nib can read
  | "model_unsupported" // a valid file nib does not run yet
  | "out_of_memory" // wasm or GPU memory ran out: the model, or what a request needs beside it
  | "gpu_unavailable" // no WebGPU here, or no WebGPU backend in this build
  | "gpu_device_lost" // the GPU went away while running
  | "aborted" // the caller's AbortSignal fired
  | "invalid_argument" // a bad option or request
  | "busy" // a call re-entered the engine while it was running
  | "disposed" // the completer was disposed
  | "worker_lost" // the worker died (panic, out of memory) and the model could not be reloaded
  | "internal"; // a bug in nib

export type BackendChoice = "auto" | "webgpu" | "cpu";
export type Backend = "webgpu" | "cpu";

export interface Progress {
  phase: "download" | "verify" | "init";
  /** Bytes done in this phase; never decreases within a phase. */
  bytes: number;
  /** Bytes in this phase (the model's size); 0 when the server did not say. */
  total: number;
  /** The bytes came from the browser's cache, not the network. */
  fromCache?: boolean;
}

export interface CompleterOptions {
  /**
   * URL of a GGUF file, or its bytes. An ArrayBuffer moves to the worker (it is detached here
   * afterwards: no copy of a model-sized buffer); a Uint8Array is copied and stays the caller's.
   */
  model: string | URL | ArrayBuffer | Uint8Array;
  /** Lowercase hex sha256 the file must have. With a URL, it also turns caching on. */
  sha256?: string;
  backend?: BackendChoice;
  onProgress?: (p: Progress) => void;
  signal?: AbortSignal;
  /** Where the worker script lives (default: next to this module). */
  workerUrl?: string | URL;
}

export interface CompleteRequest {
  prefix: string;
  suffix?: string;
  language?: string;
  mode?: "line" | "block";
  /** Candidates to sample; 1 is greedy. */
  n?: number;
  temperature?: number;
  topP?: number;
  maxTokens?: number;
  seed?: number;
  /** Stop decoding a candidate after this long. */
  timeLimitMs?: number;
  signal?: AbortSignal;
}

export interface Candidate {
  text: string;
  meanLogprob: number;
}

export interface Timings {
  promptTokens: number;
  reusedTokens: number;
  evaluatedTokens: number;
  generatedTokens: number;
  promptMs: number;
  decodeMs: number;
  totalMs: number;
  cacheHit: boolean;
  mode: "line" | "block" | null;
  stop: string | null;
}

export interface Completion {
  candidates: Candidate[];
  timings: Timings;
}

export interface GenerateOptions {
  maxTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  ignoreEos?: boolean;
  /** Prompt tokens in the first prefill step (default 2); later steps are sized to stepBudgetMs. */
  prefillChunk?: number;
  /** Target time of one prefill step (default 40 ms): an abort waits for at most one step. */
  stepBudgetMs?: number;
}

export interface GeneratedToken {
  token: number;
  text: string;
  logprob: number;
  /** When the worker chose the token: ms since the epoch (performance.timeOrigin + now()). */
  at: number;
}

export interface LogitsResult {
  ids: number[];
  top: [number, number][];
}

export interface BenchResult {
  promptTokens: number;
  genTokens: number;
  prefillMs: number;
  decodeMs: number;
  prefillTokS: number;
  decodeTokS: number;
}

export interface MemoryReport {
  /** wasm linear memory: it never shrinks, so after a load it is the load's peak. */
  wasmBytes: number;
  /** The worker's JS heap, where the browser reports it (Chrome's performance.memory). */
  jsHeapBytes: number | null;
}

export interface ModelInfo {
  backend: Backend;
  adapter: string;
  nLayers: number;
  vocab: number;
  ctxLen: number;
  promptFormat: string;
  sha256: string;
  bytes: number;
  fromCache: boolean;
}

/** The model source as the worker receives it. */
export type ModelSource = { url: string } | { bytes: ArrayBuffer };

/** Page → worker. Every request carries an `id` that its answers repeat. */
export type ToWorker =
  | { type: "load"; id: number; source: ModelSource; sha256?: string; backend: BackendChoice }
  | { type: "tokenize"; id: number; text: string; special: boolean }
  | { type: "detokenize"; id: number; ids: number[] }
  | { type: "logits"; id: number; prompt: string; top: number }
  | { type: "generate"; id: number; prompt: string; options: GenerateOptions }
  | { type: "complete"; id: number; request: Omit<CompleteRequest, "signal">; stream: boolean }
  | { type: "bench"; id: number; text: string; promptTokens: number; genTokens: number }
  | { type: "memory"; id: number }
  | { type: "abort"; id: number }
  | { type: "testPanic"; id: number }
  | { type: "testLoseDevice"; id: number }
  | { type: "testExhaustMemory"; id: number };

/** Worker → page. */
export type FromWorker =
  | { type: "ready" }
  | { type: "progress"; id: number; progress: Progress }
  | { type: "token"; id: number; token: GeneratedToken }
  | { type: "partial"; id: number; text: string }
  | { type: "result"; id: number; value: unknown }
  | { type: "error"; id: number; code: ErrorCode; message: string }
  /** The wasm module trapped (a panic, out of memory): this worker is finished. */
  | { type: "fatal"; code: ErrorCode; message: string };

/** The part of the wasm-bindgen module the worker uses (web/dist/wasm/nib_wasm.js). */
export interface WasmModule {
  default(init: { module_or_path: URL | string }): Promise<{ memory: WebAssembly.Memory }>;
  webgpuSupported(): boolean;
  ModelLoader: new (size?: number | null, sha256?: string | null) => WasmLoader;
  GpuDevice: { open(): Promise<WasmGpuDevice> };
  NibEngine: {
    load(loader: WasmLoader, backend: "cpu"): WasmEngine;
    loadOnGpu(loader: WasmLoader, device: WasmGpuDevice): Promise<WasmEngine>;
  };
  __testPanic(): void;
  __testExhaustMemory(): void;
  /** Bytes of the last allocation that failed (0: none): why a trap happened. */
  __nibAllocFailure(): number;
}

export interface WasmLoader {
  push(chunk: Uint8Array): void;
  received(): number;
  sha256Hex(): string;
  verify(): void;
  slice(offset: number, len: number): Uint8Array;
  bytesPtr(): number;
  free(): void;
}

export interface WasmGpuDevice {
  describe(): string;
  isSoftware(): boolean;
  free(): void;
}

/** The calls that evaluate the model return Promises: WebGPU results can only be awaited. */
export interface WasmEngine {
  backend(): string;
  info(): Omit<ModelInfo, "sha256" | "bytes" | "fromCache">;
  tokenize(text: string, special: boolean): Uint32Array;
  detokenize(ids: Uint32Array): string;
  logits(prompt: string, top: number): Promise<LogitsResult>;
  generate(prompt: string, options: GenerateOptions): WasmGeneration;
  complete(
    request: object,
    onPartial: ((text: string) => void) | null,
    signal: AbortSignal,
    pause: () => Promise<void>,
  ): Promise<Completion & { cancelled: boolean }>;
  bench(text: string, promptTokens: number, genTokens: number): Promise<BenchResult>;
  __testLoseDevice(): void;
  free(): void;
}

export interface WasmGeneration {
  step(): Promise<{ token: number | null; text: string; logprob: number | null; prefilled: number; done: boolean }>;
  free(): void;
}
