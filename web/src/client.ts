/**
 * The page side: `createCompleter` starts the worker, loads the model and returns a
 * `Completer` whose calls become typed messages. Each call has an id; the worker's answers
 * carry it back. An AbortSignal sends `abort` and the call rejects with `aborted` once the
 * worker has stopped (for `complete`, which wasm runs to its end, at once). A worker that dies
 * is replaced and the model reloaded from the cache (URL sources) before the next call; a lost
 * WebGPU device likewise, with the model reloaded on the CPU.
 */
import { describeError, NibError } from "./errors.js";
import { ProgressTracker } from "./progress.js";
import type {
  Backend, BenchResult, CompleteRequest, Completion, CompleterOptions, FromWorker, GenerateOptions,
  GeneratedToken, LogitsResult, MemoryReport, ModelInfo, ModelSource, Progress, ToWorker,
} from "./types.js";

type Request = ToWorker extends infer T ? (T extends { id: number } ? Omit<T, "id"> : never) : never;

interface Pending {
  resolve(v: unknown): void;
  reject(e: NibError): void;
  onEvent?(m: FromWorker): void;
}

const HEX64 = /^[0-9a-fA-F]{64}$/;

const REQUEST_KEYS = ["prefix", "suffix", "language", "mode", "n", "temperature", "topP", "maxTokens", "seed", "timeLimitMs", "signal"];
const GENERATE_KEYS = ["maxTokens", "temperature", "topK", "topP", "seed", "ignoreEos", "prefillChunk", "stepBudgetMs", "signal"];

/** A misspelt option would otherwise be ignored without a word. */
function checkKeys(what: string, obj: object, allowed: string[]): void {
  const unknown = Object.keys(obj).filter((k) => !allowed.includes(k));
  if (unknown.length) throw new NibError("invalid_argument", `${what}: unknown option${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")}`);
}

/** A worker and the calls waiting on it. */
class WorkerLink {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  dead = false;
  /** The WebGPU device went away: the model is to be reloaded on the CPU. */
  gpuLost = false;

  constructor(url: string | URL, private readonly onFatal: (e: NibError) => void) {
    this.worker = new Worker(url, { type: "module", name: "nib-complete" });
    this.worker.onmessage = (e: MessageEvent<FromWorker>) => this.receive(e.data);
    this.worker.onerror = (e) => {
      e.preventDefault();
      this.die(new NibError("internal", `the nib worker failed: ${e.message || "script error"}`));
    };
  }

  private receive(m: FromWorker): void {
    if (m.type === "ready") return;
    if (m.type === "fatal") {
      this.die(new NibError(m.code, m.message));
      return;
    }
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.type === "result") {
      this.pending.delete(m.id);
      p.resolve(m.value);
    } else if (m.type === "error") {
      this.pending.delete(m.id);
      const e = new NibError(m.code, m.message);
      p.reject(e);
      if (m.code === "gpu_device_lost") {
        // Every later call on this worker would fail the same way.
        this.gpuLost = true;
        this.die(e);
      }
    } else {
      p.onEvent?.(m);
    }
  }

  private die(e: NibError): void {
    if (this.dead) return;
    this.dead = true;
    this.worker.terminate();
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
    this.onFatal(e);
  }

  call<T>(req: Request, opts: { signal?: AbortSignal; onEvent?: (m: FromWorker) => void; abortAtOnce?: boolean } = {}): Promise<T> {
    if (this.dead) return Promise.reject(new NibError("worker_lost", "the nib worker is gone"));
    const id = this.nextId++;
    const { signal } = opts;
    if (signal?.aborted) return Promise.reject(new NibError("aborted", "aborted before it started"));
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        this.worker.postMessage({ type: "abort", id } satisfies ToWorker);
        if (opts.abortAtOnce) {
          this.pending.delete(id);
          reject(new NibError("aborted", "aborted"));
        }
      };
      const done = () => signal?.removeEventListener("abort", onAbort);
      this.pending.set(id, {
        resolve: (v) => (done(), resolve(v as T)),
        reject: (e) => (done(), reject(e)),
        onEvent: opts.onEvent,
      });
      signal?.addEventListener("abort", onAbort, { once: true });
      const msg = { ...req, id } as ToWorker;
      const transfer = msg.type === "load" && "bytes" in msg.source ? [msg.source.bytes] : [];
      this.worker.postMessage(msg, transfer);
    });
  }

  terminate(): void {
    this.die(new NibError("disposed", "the completer was disposed"));
  }
}

export class Completer {
  private link: WorkerLink;
  private info: ModelInfo;
  private reloading: Promise<void> | null = null;
  /** Why the last reload failed: later calls fail with it rather than fetch the model again. */
  private lost: NibError | null = null;
  private disposed = false;

  /** @internal Use `createCompleter`. */
  constructor(
    link: WorkerLink,
    info: ModelInfo,
    private readonly source: ModelSource,
    private options: CompleterOptions,
  ) {
    this.link = link;
    this.info = info;
  }

  /** What runs the model: "webgpu" or "cpu". */
  get backend(): Backend {
    return this.info.backend;
  }

  /** The loaded model: sizes, adapter, sha256, whether it came from the cache. */
  get model(): ModelInfo {
    return { ...this.info };
  }

  /** Completion candidates for the cursor between `prefix` and `suffix`, best first. */
  async complete(req: CompleteRequest): Promise<Completion> {
    checkKeys("complete", req, REQUEST_KEYS);
    const { signal, ...request } = req;
    const link = await this.ready();
    return link.call<Completion>({ type: "complete", request, stream: false }, { signal, abortAtOnce: true });
  }

  /**
   * The best candidate's text as it grows; ends with the final (post-processed) text. The
   * generator's return value is the whole `Completion` (timings included).
   */
  async *stream(req: CompleteRequest): AsyncGenerator<string, Completion> {
    checkKeys("stream", req, REQUEST_KEYS);
    const { signal, ...request } = req;
    const link = await this.ready();
    const partials = eventsOf<string, Completion>(
      signal,
      (onEvent, signal) => link.call<Completion>({ type: "complete", request, stream: true }, { signal, abortAtOnce: true, onEvent }),
      (m) => (m.type === "partial" ? m.text : undefined),
    );
    try {
      let last: string | null = null;
      let next = await partials.next();
      while (!next.done) {
        if (next.value !== last) yield (last = next.value);
        next = await partials.next();
      }
      const final = next.value.candidates[0]?.text ?? "";
      if (final !== last) yield final;
      return next.value;
    } finally {
      // A caller that stops reading stops the request.
      await partials.return(undefined as never);
    }
  }

  /** Token ids of `text` (`special`: parse control-token spellings). */
  async tokenize(text: string, options: { special?: boolean } = {}): Promise<number[]> {
    return (await this.ready()).call<number[]>({ type: "tokenize", text, special: options.special ?? false });
  }

  async detokenize(ids: number[]): Promise<string> {
    return (await this.ready()).call<string>({ type: "detokenize", ids });
  }

  /** The prompt's ids and its `top` highest next-token logits, highest first. */
  async logits(prompt: string, top = 5): Promise<LogitsResult> {
    return (await this.ready()).call<LogitsResult>({ type: "logits", prompt, top });
  }

  /** Tokens as they are generated; the AbortSignal stops the worker between two tokens. */
  async *generate(prompt: string, options: GenerateOptions & { signal?: AbortSignal } = {}): AsyncGenerator<GeneratedToken> {
    checkKeys("generate", options, GENERATE_KEYS);
    const { signal, ...opts } = options;
    const link = await this.ready();
    yield* eventsOf<GeneratedToken, unknown>(
      signal,
      (onEvent, signal) => link.call({ type: "generate", prompt, options: opts }, { signal, onEvent }),
      (m) => (m.type === "token" ? m.token : undefined),
    );
  }

  /** One prefill of `promptTokens` tokens of `text`, then `genTokens` greedy tokens. */
  async bench(text: string, promptTokens = 512, genTokens = 128): Promise<BenchResult> {
    return (await this.ready()).call<BenchResult>({ type: "bench", text, promptTokens, genTokens });
  }

  /** The worker's memory: wasm linear memory (its peak, since it never shrinks) and JS heap. */
  async memory(): Promise<MemoryReport> {
    return (await this.ready()).call<MemoryReport>({ type: "memory" });
  }

  /** @internal Test hook: makes the engine panic, to check that a dead worker is replaced. */
  async __testPanic(): Promise<void> {
    await (await this.ready()).call({ type: "testPanic" });
  }

  /** @internal Test hook: allocates until wasm memory runs out, to check the worker says so. */
  async __testExhaustMemory(): Promise<void> {
    await (await this.ready()).call({ type: "testExhaustMemory" });
  }

  /** @internal Test hook: destroys the WebGPU device, to check the fall back to the CPU. */
  async __testLoseDevice(): Promise<void> {
    await (await this.ready()).call({ type: "testLoseDevice" });
  }

  /** Stops the worker, which frees its wasm memory. The completer cannot be used afterwards. */
  dispose(): void {
    this.disposed = true;
    this.link.terminate();
  }

  private async ready(): Promise<WorkerLink> {
    if (this.disposed) throw new NibError("disposed", "the completer was disposed");
    if (this.lost) throw this.lost;
    if (this.link.dead && !this.reloading) this.reloading = this.reload();
    if (this.reloading) await this.reloading;
    return this.link;
  }

  /** A new worker with the same model, after the old one died (on the CPU if the GPU was lost). */
  private async reload(): Promise<void> {
    try {
      if (!("url" in this.source)) throw new NibError("worker_lost", "the nib worker died and a model given as bytes cannot be reloaded");
      if (this.link.gpuLost) {
        console.warn("nib: the WebGPU device was lost; reloading the model on the CPU");
        this.options = { ...this.options, backend: "cpu" };
      }
      const { link, info } = await start(this.source, { ...this.options, onProgress: undefined, signal: undefined });
      if (this.disposed) {
        link.terminate();
        throw new NibError("disposed", "the completer was disposed");
      }
      this.link = link;
      this.info = info;
    } catch (e) {
      const why = e instanceof NibError ? e : new NibError("internal", String(e));
      if (why.code !== "disposed") this.lost = new NibError("worker_lost", `the nib worker died and the model could not be reloaded: ${why.message}`);
      throw this.lost ?? why;
    } finally {
      this.reloading = null;
    }
  }
}

async function start(source: ModelSource, options: CompleterOptions): Promise<{ link: WorkerLink; info: ModelInfo }> {
  const url = options.workerUrl ?? new URL("./worker.js", import.meta.url);
  const link = new WorkerLink(url, () => {});
  const tracker = new ProgressTracker((p: Progress) => options.onProgress?.(p));
  try {
    const info = await link.call<ModelInfo>(
      { type: "load", source, sha256: options.sha256?.toLowerCase(), backend: options.backend ?? "auto" },
      { signal: options.signal, onEvent: (m) => m.type === "progress" && tracker.report(m.progress) },
    );
    // Aborted after the worker's last await: the caller has given this model up.
    if (options.signal?.aborted) throw new NibError("aborted", "model load aborted");
    return { link, info };
  } catch (e) {
    // A failed load leaves nothing behind: the next load gets a fresh worker.
    link.terminate();
    throw e instanceof NibError ? e : new NibError(describeError(e).code, describeError(e).message);
  }
}

/** Loads a model in a new worker and returns a completer for it. */
export async function createCompleter(options: CompleterOptions): Promise<Completer> {
  const { model, sha256, backend = "auto" } = options;
  if (sha256 !== undefined && !HEX64.test(sha256)) throw new NibError("invalid_argument", "sha256 must be 64 hex digits");
  if (!["auto", "webgpu", "cpu"].includes(backend)) throw new NibError("invalid_argument", `backend ${String(backend)} is not auto, webgpu or cpu`);
  let source: ModelSource;
  if (typeof model === "string" || model instanceof URL) {
    source = { url: new URL(String(model), globalThis.location?.href).href };
  } else if (model instanceof ArrayBuffer) {
    // Detached, it reads as empty: a buffer already handed to another completer.
    if (model.byteLength === 0) throw new NibError("invalid_argument", "model is an empty ArrayBuffer (one already given to a completer is detached)");
    source = { bytes: model };
  } else if (model instanceof Uint8Array) {
    // Copied once so the caller's buffer stays theirs; the copy moves to the worker.
    source = { bytes: model.slice().buffer as ArrayBuffer };
  } else {
    throw new NibError("invalid_argument", "model must be a URL or the file's bytes");
  }
  const { link, info } = await start(source, options);
  // Kept for reloading a dead worker: not the model bytes, the progress callback or the signal.
  return new Completer(link, info, source, { model: "", sha256, backend, workerUrl: options.workerUrl });
}

/**
 * What a streaming call reports, as it arrives: `pick` turns a worker message into an event
 * (or `undefined` for the others). Returns the call's result once the events are drained, or
 * throws its error after them. The call gets the caller's `signal`, which also fires when the
 * caller leaves the loop early (`break`), so the worker stops instead of running on unread.
 */
async function* eventsOf<T, R>(
  signal: AbortSignal | undefined,
  call: (onEvent: (m: FromWorker) => void, signal: AbortSignal) => Promise<R>,
  pick: (m: FromWorker) => T | undefined,
): AsyncGenerator<T, R> {
  const stop = new AbortController();
  const forward = () => stop.abort();
  if (signal?.aborted) stop.abort();
  else signal?.addEventListener("abort", forward, { once: true });
  const queue: T[] = [];
  let wake: (() => void) | null = null;
  let finished = false;
  let failure: unknown = null;
  let result: R | undefined;
  call((m) => {
    const e = pick(m);
    if (e !== undefined) queue.push(e);
    wake?.();
  }, stop.signal)
    .then((r) => (result = r), (e: unknown) => (failure = e))
    .finally(() => {
      finished = true;
      wake?.();
    });
  try {
    for (;;) {
      while (queue.length) yield queue.shift() as T;
      if (finished) break;
      await new Promise<void>((r) => (wake = r));
      wake = null;
    }
  } finally {
    signal?.removeEventListener("abort", forward);
    if (!finished) stop.abort();
  }
  if (failure) throw failure;
  return result as R;
}
