/**
 * nib as a JupyterLab inline completion provider. `fetch` waits out the debounce, then starts
 * a streamed completion and answers with its first text, marked incomplete; JupyterLab then
 * calls `stream(token)` for the rest, which it draws as growing ghost text. Every new request
 * aborts the one before (its debounce wait or its generation): JupyterLab itself only
 * ignores stale answers, so without this the worker would finish them all.
 */
import type {
  CompletionHandler, IInlineCompletionContext, IInlineCompletionItem, IInlineCompletionList, IInlineCompletionProvider,
} from "@jupyterlab/completer";
import { InlineCompletionTriggerKind } from "@jupyterlab/completer";
import { NotebookPanel } from "@jupyterlab/notebook";
import type { ISettingRegistry } from "@jupyterlab/settingregistry";
import type { Widget } from "@lumino/widgets";
import { createCompleter, NibError, type Backend, type CompleteRequest, type Completer } from "nib-complete";
import { cellPrompt } from "./context.js";
import { modelHref, type NibSettings } from "./settings.js";
import type { Status } from "./status.js";

/** A completion whose first text went out with `fetch`; `stream` drains the rest. */
interface Running {
  partials: AsyncGenerator<string>;
  backend: Backend;
  text: string;
  started: number;
  first: number;
}

/** Candidates sampled on an explicit invoke, and their temperature (typing asks for one, greedy). */
const INVOKE_CANDIDATES = 3;
const INVOKE_TEMPERATURE = 0.8;

export interface ProviderOptions {
  /** The Jupyter server's base URL: relative model paths are files under its root. */
  baseUrl: string;
  /** nib-complete's worker.js, shipped as a static file of the labextension. */
  workerUrl: string;
  onStatus(s: Status): void;
}

export class NibProvider implements IInlineCompletionProvider {
  readonly identifier = "nib";
  readonly name = "nib";
  /**
   * JupyterLab's own per-provider settings: nib debounces itself (its `debounceMs`, abortable),
   * and the timeout covers fetch's wait for the first text, which includes loading the model
   * from the browser's cache on the first request.
   */
  readonly schema: ISettingRegistry.IProperty = { type: "object", default: { debouncerDelay: 0, timeout: 30000 } };

  private settings: NibSettings | null = null;
  private settingsError: string | null = "settings not loaded yet";
  private settled: (() => void) | null = null;
  private readonly settingsReady = new Promise<void>((r) => (this.settled = r));
  private loaded: { key: string; completer: Promise<Completer>; failed: boolean } | null = null;
  private current: AbortController | null = null;
  private readonly running = new Map<string, Running>();
  private nextToken = 1;

  constructor(private readonly options: ProviderOptions) {}

  /** New settings; a different model or backend is loaded on the next request. */
  setSettings(settings: NibSettings | null, error: string | null = null): void {
    this.settings = settings;
    this.settingsError = error;
    this.settled?.();
    if (error) this.options.onStatus({ state: "error", message: error });
    if (this.loaded && this.loaded.key !== keyOf(settings)) {
      this.loaded.completer.then((c) => c.dispose(), () => {});
      this.loaded = null;
      if (!error) this.options.onStatus({ state: "idle" });
    }
  }

  async fetch(request: CompletionHandler.IRequest, context: IInlineCompletionContext): Promise<IInlineCompletionList<IInlineCompletionItem>> {
    // The previous request's debounce wait or generation stops; an answer JupyterLab never
    // streamed (it timed out, or the user typed on) goes with it.
    this.current?.abort();
    this.running.clear();
    const ctl = new AbortController();
    this.current = ctl;
    const signal = ctl.signal;

    await this.settingsReady;
    const settings = this.settings;
    if (!settings) throw new Error(this.settingsError ?? "no settings");
    if (context.triggerKind === InlineCompletionTriggerKind.Automatic) await sleep(settings.debounceMs, signal);
    const completer = await this.completer(settings, context.triggerKind === InlineCompletionTriggerKind.Invoke);
    if (signal.aborted) throw new NibError("aborted", "a newer request replaced this one");

    const { earlier, language } = notebookContext(context.widget, request.mimeType ?? "");
    const { prefix, suffix } = cellPrompt(earlier, request.text, request.offset);
    const started = performance.now();
    this.options.onStatus({ state: "thinking", backend: completer.backend });
    const req = { prefix, suffix, language, ...(settings.mode === "auto" ? {} : { mode: settings.mode }), signal };
    if (context.triggerKind === InlineCompletionTriggerKind.Invoke) return this.candidates(completer, req, started);
    const partials = completer.stream(req);
    let first: IteratorResult<string>;
    try {
      first = await partials.next();
    } catch (e) {
      this.report(e, completer);
      throw e;
    }
    if (first.done) {
      this.options.onStatus({ state: "ready", backend: completer.backend });
      return { items: [] };
    }
    const token = `nib-${this.nextToken++}`;
    this.running.set(token, { partials, backend: completer.backend, text: first.value, started, first: performance.now() - started });
    return { items: [{ insertText: first.value, isIncomplete: true, token }] };
  }

  async *stream(token: string): AsyncGenerator<{ response: IInlineCompletionItem }> {
    const run = this.running.get(token);
    if (!run) return;
    const { backend } = run;
    try {
      for await (const text of run.partials) {
        run.text = text;
        yield { response: { insertText: text } };
      }
      this.options.onStatus({ state: "ready", backend, firstMs: run.first, totalMs: performance.now() - run.started });
    } catch (e) {
      if (!isAbort(e)) yield { response: { insertText: run.text, error: { message: String((e as Error).message ?? e) } } };
      this.report(e, null, backend);
    } finally {
      this.running.delete(token);
    }
  }

  /**
   * An explicit request (Alt+\): several sampled candidates at once, ranked by mean
   * log-probability, for JupyterLab's Alt+] / Alt+[ to cycle through.
   */
  private async candidates(completer: Completer, req: CompleteRequest, started: number): Promise<IInlineCompletionList<IInlineCompletionItem>> {
    try {
      const out = await completer.complete({ ...req, n: INVOKE_CANDIDATES, temperature: INVOKE_TEMPERATURE });
      const now = performance.now() - started;
      this.options.onStatus({ state: "ready", backend: completer.backend, firstMs: now, totalMs: now });
      return { items: out.candidates.filter((c) => c.text.length > 0).map((c) => ({ insertText: c.text })) };
    } catch (e) {
      this.report(e, completer);
      throw e;
    }
  }

  /** The loaded completer for these settings; a failed load is retried on an explicit invoke. */
  private completer(s: NibSettings, retry: boolean): Promise<Completer> {
    const key = keyOf(s);
    if (!this.loaded || this.loaded.key !== key || (this.loaded.failed && retry)) {
      const loading = createCompleter({
        model: modelHref(s.modelUrl, this.options.baseUrl),
        sha256: s.sha256 || undefined,
        backend: s.backend,
        workerUrl: this.options.workerUrl,
        onProgress: (progress) => this.options.onStatus({ state: "loading", progress }),
      });
      const entry = { key, completer: loading, failed: false };
      this.loaded = entry;
      this.options.onStatus({ state: "loading", progress: null });
      loading.then(
        (c) => this.options.onStatus({ state: "ready", backend: c.backend }),
        (e) => {
          entry.failed = true;
          this.report(e, null);
        },
      );
    }
    return this.loaded.completer;
  }

  private report(e: unknown, completer: Completer | null, backend = completer?.backend): void {
    if (isAbort(e)) {
      if (backend) this.options.onStatus({ state: "ready", backend });
      return;
    }
    const code = e instanceof NibError ? `${e.code}: ` : "";
    this.options.onStatus({ state: "error", message: `${code}${(e as Error)?.message ?? String(e)}` });
  }
}

function keyOf(s: NibSettings | null): string {
  return s ? JSON.stringify([s.modelUrl, s.sha256, s.backend]) : "";
}

function isAbort(e: unknown): boolean {
  return e instanceof NibError && e.code === "aborted";
}

/** Resolves after `ms`, or rejects with `aborted` as soon as the signal fires. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new NibError("aborted", "a newer request replaced this one"));
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new NibError("aborted", "a newer request replaced this one"));
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** The code of the notebook's cells above the active one, and the kernel's language. */
function notebookContext(widget: Widget, mimeType: string): { earlier: string[]; language?: string } {
  const fromMime = /python/i.test(mimeType) ? "python" : undefined;
  if (!(widget instanceof NotebookPanel)) return { earlier: [], language: fromMime };
  const notebook = widget.content;
  const earlier = notebook.widgets
    .slice(0, Math.max(0, notebook.activeCellIndex))
    .filter((cell) => cell.model.type === "code")
    .map((cell) => cell.model.sharedModel.getSource());
  const info = notebook.model?.getMetadata("language_info") as { name?: unknown } | undefined;
  return { earlier, language: typeof info?.name === "string" ? info.name : fromMime };
}
