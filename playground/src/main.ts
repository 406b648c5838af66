/**
 * The playground page: an editor with nib attached, the model and backend pickers, the
 * completion settings, the candidates of the last answer, live stats and the download bar.
 *
 * Address parameters: backend=auto|cpu|webgpu, model=URL&sha256=HEX, editor=codemirror|monaco|
 * textarea, lang, mode, n, temperature, debounce, maxTokens. The status element carries
 * data-nib-state (loading|ready|error) and data-nib-backend (webgpu|cpu), per the DOM contract.
 * The runtime (nib/index.js, its worker and wasm) is loaded from this page's own folder; the
 * only other request is the model.
 */
import registry from "../../models/registry.json";
import type { Completer, CompleteRequest, Completion, Progress } from "nib-complete";
import { DEFAULT_SETTINGS, type ControllerSettings, type Suggestion } from "nib-complete/controller";
import { StatusModel, describeStatus } from "nib-complete/status";
import { EDITORS, mountEditor, type EditorKind, type MountedEditor } from "./editors.js";
import { LANGUAGES, SNIPPETS } from "./snippets.js";

type Nib = typeof import("nib-complete");

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
const num = (key: string, fallback: number) => {
  const v = Number(params.get(key));
  return params.has(key) && Number.isFinite(v) ? v : fallback;
};

const settings: ControllerSettings = {
  ...DEFAULT_SETTINGS,
  mode: (["line", "block"].includes(params.get("mode") ?? "") ? params.get("mode") : "auto") as ControllerSettings["mode"],
  n: num("n", 1),
  temperature: num("temperature", DEFAULT_SETTINGS.temperature),
  debounceMs: num("debounce", DEFAULT_SETTINGS.debounceMs),
  maxTokens: params.has("maxTokens") ? num("maxTokens", 0) : undefined,
};
let language = LANGUAGES.includes(params.get("lang") ?? "") ? (params.get("lang") as string) : "python";
let editorKind: EditorKind = EDITORS.includes(params.get("editor") as EditorKind) ? (params.get("editor") as EditorKind) : "codemirror";

const status = new StatusModel();
const statusEl = $<HTMLDivElement>("status");
status.subscribe((s) => {
  statusEl.textContent = describeStatus(s);
  statusEl.dataset.nibState = s.state === "error" && current ? "ready" : s.state === "thinking" ? "ready" : s.state;
  if (s.backend) statusEl.dataset.nibBackend = s.backend;
  statusEl.dataset.nibThinking = String(s.state === "thinking");
});

// ---- the model --------------------------------------------------------------------------

let nib: Nib | null = null;
let current: Completer | null = null;
let loading: Promise<Completer> | null = null;
let lastCompletion: Completion | null = null;

/** What the editors call: waits for a model that is still loading, records the timings. */
const completer = {
  get backend() {
    return current?.backend;
  },
  async complete(req: CompleteRequest): Promise<Completion> {
    const out = await (await model()).complete(req);
    lastCompletion = out;
    renderStats();
    return out;
  },
  async *stream(req: CompleteRequest): AsyncGenerator<string, Completion> {
    const out = yield* (await model()).stream(req);
    lastCompletion = out;
    renderStats();
    return out;
  },
};

async function model(): Promise<Completer> {
  const c = current ?? (loading ? await loading : null);
  if (!c) throw Object.assign(new Error("no model loaded"), { code: "invalid_argument" });
  return c;
}

const runtimeUrl = new URL("nib/index.js", document.baseURI).href;

/** The load in progress: a newer one (Load clicked again) aborts it. */
let loadAbort: AbortController | null = null;

async function load(url: string, sha256: string | undefined, backend: "auto" | "cpu" | "webgpu"): Promise<void> {
  loadAbort?.abort();
  const abort = (loadAbort = new AbortController());
  current?.dispose();
  current = null;
  const bar = $<HTMLProgressElement>("progress");
  bar.value = 0;
  status.set({ state: "loading", progress: null, error: null, backend: null });
  delete statusEl.dataset.nibBackend;
  const onProgress = (p: Progress) => {
    const frac = p.total > 0 ? p.bytes / p.total : null;
    // Download is most of the wait; verify and init share the last tenth.
    const overall = frac === null ? null : p.phase === "download" ? 0.9 * frac : p.phase === "verify" ? 0.9 + 0.05 * frac : 0.95 + 0.05 * frac;
    if (overall !== null) bar.value = overall;
    status.set({ progress: overall });
  };
  try {
    nib ??= (await import(/* @vite-ignore */ runtimeUrl)) as Nib;
    loading = nib.createCompleter({ model: url, sha256, backend, onProgress, signal: abort.signal, workerUrl: new URL("nib/worker.js", document.baseURI) });
    current = await loading;
    bar.value = 1;
    const m = current.model;
    $("model-info").textContent = `${m.backend} · ${m.adapter} · ${m.nLayers} layers · ${(m.bytes / 1e6).toFixed(1)} MB${m.fromCache ? " (cache)" : ""} · sha256 ${m.sha256.slice(0, 12)}…`;
    status.set({ state: "ready", backend: current.backend, progress: 1 });
  } catch (e) {
    // Superseded: the newer load reports.
    if (abort.signal.aborted) return;
    const err = e as { code?: string; message?: string };
    status.set({ state: "error", error: `${err.code ?? "error"}: ${err.message ?? String(e)}` });
    statusEl.dataset.nibState = "error";
  } finally {
    if (loadAbort === abort) loading = null;
  }
}

// ---- the editor ---------------------------------------------------------------------------

let editor: MountedEditor | null = null;

function renderCandidates(s: Suggestion | null): void {
  const list = $<HTMLOListElement>("candidates");
  list.replaceChildren(
    ...(s?.candidates ?? []).map((c, i) => {
      const li = document.createElement("li");
      li.className = i === s?.index ? "current" : "";
      const lp = document.createElement("span");
      lp.className = "lp";
      lp.textContent = ` (${c.meanLogprob.toFixed(3)})`;
      li.append(document.createTextNode(c.text), lp);
      return li;
    }),
  );
}

function renderStats(): void {
  const t = lastCompletion?.timings;
  const s = status.value;
  const rows: [string, string][] = t
    ? [
        ["latency", s.lastLatencyMs === null ? "–" : `${Math.round(s.lastLatencyMs)} ms`],
        ["prompt", `${t.promptTokens} tokens (${t.reusedTokens} reused), ${t.promptMs.toFixed(0)} ms`],
        ["generated", `${t.generatedTokens} tokens, ${t.decodeMs.toFixed(0)} ms`],
        ["speed", s.tokPerS === null ? "–" : `${s.tokPerS.toFixed(1)} tok/s`],
        ["mode / stop", `${t.mode ?? "–"} / ${t.stop ?? "–"}`],
        ["cache hit", String(t.cacheHit)],
        ["requests", String(editor?.controller.requests ?? 0)],
      ]
    : [["requests", String(editor?.controller.requests ?? 0)]];
  $("stats").replaceChildren(
    ...rows.flatMap(([k, v]) => {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      return [dt, dd];
    }),
  );
}

/** Counts remounts: an editor that finishes mounting after a newer remount began is dropped. */
let mounts = 0;

async function remount(text: string): Promise<void> {
  const ticket = ++mounts;
  editor?.destroy();
  editor = null;
  const mounted = await mountEditor(editorKind, { host: $("host"), text, language, completer, settings: { ...settings, language }, status });
  if (ticket !== mounts) {
    mounted.destroy();
    return;
  }
  editor = mounted;
  // The candidates panel follows the controller's suggestion.
  const c = mounted.controller;
  const poll = () => editor === mounted && (renderCandidates(c.suggestion), requestAnimationFrame(poll));
  requestAnimationFrame(poll);
  mounted.focus();
}

// ---- the controls ------------------------------------------------------------------------

function options(select: HTMLSelectElement, values: [string, string][], selected: string): void {
  select.replaceChildren(...values.map(([v, label]) => new Option(label, v, false, v === selected)));
}

function initControls(): void {
  options($("editor"), EDITORS.map((e) => [e, e === "codemirror" ? "CodeMirror 6" : e === "monaco" ? "Monaco" : "textarea"]), editorKind);
  options($("language"), LANGUAGES.map((l) => [l, l]), language);
  const custom = params.get("model");
  const models: [string, string][] = registry.models.map((m) => [m.id, m.name]);
  options($("model"), [...models, ["custom", "Other (URL + sha256)"]], custom ? "custom" : registry.default);
  $<HTMLInputElement>("model-url").value = custom ?? "";
  $<HTMLInputElement>("model-sha").value = params.get("sha256") ?? "";
  $("custom").hidden = !custom;
  $<HTMLSelectElement>("backend").value = ["cpu", "webgpu"].includes(params.get("backend") ?? "") ? (params.get("backend") as string) : "auto";
  $<HTMLSelectElement>("mode").value = settings.mode;
  $<HTMLInputElement>("n").value = String(settings.n);
  $<HTMLInputElement>("temperature").value = String(settings.temperature);
  $<HTMLInputElement>("debounce").value = String(settings.debounceMs);

  $("editor").addEventListener("change", (e) => {
    editorKind = (e.target as HTMLSelectElement).value as EditorKind;
    void remount(editor?.getValue() ?? SNIPPETS[language]);
  });
  $("language").addEventListener("change", (e) => {
    language = (e.target as HTMLSelectElement).value;
    void remount(SNIPPETS[language]);
  });
  $("model").addEventListener("change", (e) => ($("custom").hidden = (e.target as HTMLSelectElement).value !== "custom"));
  $("load").addEventListener("click", () => loadSelected());
  const setting = (id: string, apply: (v: string) => void) =>
    $(id).addEventListener("change", (e) => {
      apply((e.target as HTMLInputElement).value);
      if (editor) Object.assign(editor.controller.settings, settings, { language });
    });
  setting("mode", (v) => (settings.mode = v as ControllerSettings["mode"]));
  setting("n", (v) => (settings.n = Math.min(8, Math.max(1, Number(v) || 1))));
  setting("temperature", (v) => (settings.temperature = Math.max(0, Number(v) || 0)));
  setting("debounce", (v) => (settings.debounceMs = Math.max(0, Number(v) || 0)));
}

function loadSelected(): Promise<void> {
  const backend = $<HTMLSelectElement>("backend").value as "auto" | "cpu" | "webgpu";
  const id = $<HTMLSelectElement>("model").value;
  if (id === "custom") {
    const url = $<HTMLInputElement>("model-url").value.trim();
    const sha = $<HTMLInputElement>("model-sha").value.trim();
    return load(url, sha || undefined, backend);
  }
  const m = registry.models.find((x) => x.id === id) ?? registry.models[0];
  return load(new URL(m.url, document.baseURI).href, m.sha256, backend);
}

initControls();
status.subscribe(() => renderStats());
// The test and benchmark hooks: the current editor's controller and the status model.
Object.assign(window, { nibPlayground: { status, get editor() { return editor; }, get completer() { return current; }, get lastCompletion() { return lastCompletion; } } });
void remount(SNIPPETS[language]);
void loadSelected();
