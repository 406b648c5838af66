/**
 * The editor-agnostic half of every adapter: when to ask, what is shown, what the keys do.
 * An adapter reports the cursor's context after each change (`update`) and draws whatever
 * `onChange` hands it; this class owns the debounce, the one in-flight request (aborted on every
 * change), the candidates and the cycling, typed-through shortening, accept / accept-word, and
 * the status model. Nothing here ever waits on the model while the user types.
 */
import { StatusModel } from "./status.js";
import type { CompleteRequest, Completion } from "../types.js";

/** What the controller needs of a `Completer` (a fake one in the unit tests). */
export interface CompleterLike {
  complete(req: CompleteRequest): Promise<Completion>;
  /** The best candidate as it grows, returning the whole completion (`Completer.stream`). */
  stream?(req: CompleteRequest): AsyncGenerator<string, Completion>;
  readonly backend?: string;
}

/** The text around the cursor, as the editor has it now. */
export interface CursorContext {
  prefix: string;
  suffix: string;
}

export interface Suggestion {
  /** The candidate shown, minus what the user has typed of it since. */
  text: string;
  /** Which candidate, of `count`. */
  index: number;
  count: number;
  /** Every candidate (typed-through part removed), with its mean log-probability. */
  candidates: { text: string; meanLogprob: number }[];
}

export interface ControllerSettings {
  /** Base debounce; the adaptive one moves around it (see `debounceFor`). */
  debounceMs: number;
  /** "auto": the engine chooses line or block from the cursor. */
  mode: "auto" | "line" | "block";
  n: number;
  temperature: number;
  maxTokens?: number;
  language?: string;
  /**
   * With n = 1, draw the suggestion as it is generated (the first token shows in tens of ms,
   * the line in hundreds). Off for editors that take one answer per request (Monaco).
   */
  stream: boolean;
}

export const DEFAULT_SETTINGS: ControllerSettings = { debounceMs: 150, mode: "auto", n: 1, temperature: 0, stream: true };

/**
 * Copilot's mid-line rule: with text after the cursor, only ask when the rest of the line is
 * closing brackets/quotes and punctuation, where a completion can still sit before it.
 */
const LINE_SUFFIX_OK = /^\s*[)>}\]"'`]*\s*[:{;,]?\s*$/;

export function shouldTrigger(ctx: CursorContext): boolean {
  const restOfLine = ctx.suffix.split("\n", 1)[0];
  return LINE_SUFFIX_OK.test(restOfLine) && ctx.prefix.trim().length > 0;
}

/** The first word of `text` with the spaces before it (Ctrl/Cmd+Right), or a run of symbols. */
export function firstWord(text: string): string {
  const m = /^\s*(\w+|[^\w\s]+)|^\s+/.exec(text);
  return m ? m[0] : text;
}

export class SuggestionController {
  readonly status: StatusModel;
  settings: ControllerSettings;
  /** Requests sent to the completer (the tests count them). */
  requests = 0;

  /** `partial`: still being generated (streamed); typing then asks again rather than trims it. */
  private shown: { ctx: CursorContext; candidates: { text: string; meanLogprob: number }[]; index: number; partial?: boolean } | null = null;
  private inflight: AbortController | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private generation = 0;
  private lastKey = 0;
  private intervals: number[] = [];
  private destroyed = false;
  private lastCtx: CursorContext | null = null;

  constructor(
    private readonly completer: CompleterLike,
    private readonly onChange: (s: Suggestion | null) => void,
    settings: Partial<ControllerSettings> = {},
    status?: StatusModel,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.settings = { ...DEFAULT_SETTINGS, ...settings };
    // A status model handed in belongs to a page that reports loading itself.
    this.status = status ?? new StatusModel({ state: "ready", backend: completer.backend ?? null });
  }

  get suggestion(): Suggestion | null {
    const s = this.shown;
    if (!s) return null;
    const c = s.candidates[s.index];
    return { text: c.text, index: s.index, count: s.candidates.length, candidates: s.candidates.map((x) => ({ ...x })) };
  }

  /**
   * After every change of the document or the cursor. `typed`: the document changed (a cursor
   * move alone never asks: it would flicker). A suggestion whose head the user just typed is
   * shortened and no request goes out.
   */
  update(ctx: CursorContext, typed: boolean): void {
    if (this.destroyed) return;
    // The cursor set where it already was (a click on it): nothing to redo.
    const last = this.lastCtx;
    this.lastCtx = ctx;
    if (!typed && last && last.prefix === ctx.prefix && last.suffix === ctx.suffix) return;
    this.abort();
    if (typed) this.noteKeystroke();
    if (this.shown && this.typedThrough(ctx)) return;
    this.clear();
    if (typed && shouldTrigger(ctx)) this.schedule(ctx, this.debounceFor(ctx));
  }

  /**
   * What is on its way: a debounce running, a request in flight, or nothing. An adapter that
   * waits for the next answer (Monaco's) must not wait when nothing is: no answer would come.
   */
  get pending(): "debounce" | "request" | null {
    return this.timer !== null ? "debounce" : this.inflight !== null ? "request" : null;
  }

  /** Asks at once (an explicit trigger), whatever the line's suffix. */
  trigger(ctx: CursorContext): void {
    if (this.destroyed) return;
    this.abort();
    this.clear();
    this.schedule(ctx, 0);
  }

  /**
   * Esc: cancels what is shown and what is pending; true when there was something. Adapters let
   * the key go on to the editor unless a suggestion was on screen (vim's Esc must not be eaten
   * by a debounce the user never saw).
   */
  dismiss(): boolean {
    const had = this.shown !== null || this.inflight !== null || this.timer !== null;
    this.abort();
    this.clear();
    return had;
  }

  /** Alt+] / Alt+[: true when there was a suggestion to cycle. */
  cycle(step: 1 | -1): boolean {
    const s = this.shown;
    if (!s) return false;
    s.index = (s.index + step + s.candidates.length) % s.candidates.length;
    this.emit();
    return true;
  }

  /** The editor shows this candidate (Monaco cycles by itself and says which). */
  select(text: string): void {
    const s = this.shown;
    const i = s ? s.candidates.findIndex((c) => c.text === text) : -1;
    if (!s || i < 0 || i === s.index) return;
    s.index = i;
    this.emit();
  }

  /** Tab: the whole suggestion's text to insert (null: nothing shown, let Tab indent). */
  accept(): string | null {
    const s = this.suggestion;
    if (!s) return null;
    this.abort();
    this.clear();
    return s.text;
  }

  /**
   * Ctrl/Cmd+Right: the next word of the suggestion to insert. The rest stays shown: the
   * adapter's insert comes back through `update` as typed-through text.
   */
  acceptWord(): string | null {
    const s = this.suggestion;
    return s ? firstWord(s.text) : null;
  }

  destroy(): void {
    this.destroyed = true;
    this.abort();
    this.clear();
  }

  /** Tabby's idea, simplified: wait about 1.5 typing intervals, less after a word ends. */
  debounceFor(ctx: CursorContext): number {
    const base = this.settings.debounceMs;
    if (base <= 0) return 0;
    let d = base;
    if (this.intervals.length >= 3) {
      const mean = this.intervals.reduce((a, b) => a + b, 0) / this.intervals.length;
      d = Math.min(base * 2, Math.max(base / 2, 1.5 * mean));
    }
    const last = ctx.prefix.slice(-1);
    if (last !== "" && !/\w/.test(last)) d *= 0.5;
    return Math.round(d);
  }

  private noteKeystroke(): void {
    const t = this.now();
    const dt = t - this.lastKey;
    this.lastKey = t;
    // Pauses longer than a second are not typing rhythm.
    if (dt > 0 && dt < 1000) {
      this.intervals.push(dt);
      if (this.intervals.length > 10) this.intervals.shift();
    }
  }

  /** Keeps the suggestion if the new context is the old one plus the suggestion's head. */
  private typedThrough(ctx: CursorContext): boolean {
    const s = this.shown;
    if (!s || s.partial || ctx.suffix !== s.ctx.suffix || !ctx.prefix.startsWith(s.ctx.prefix)) return false;
    const typed = ctx.prefix.slice(s.ctx.prefix.length);
    if (typed === "") return true;
    const current = s.candidates[s.index].text;
    const left = s.candidates.filter((c) => c.text.startsWith(typed) && c.text.length > typed.length);
    if (!left.length) return false;
    const index = Math.max(0, left.findIndex((c) => c.text === current));
    this.shown = { ctx, candidates: left.map((c) => ({ text: c.text.slice(typed.length), meanLogprob: c.meanLogprob })), index };
    this.emit();
    return true;
  }

  private schedule(ctx: CursorContext, delay: number): void {
    const gen = ++this.generation;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.request(ctx, gen);
    }, delay);
  }

  private async request(ctx: CursorContext, gen: number): Promise<void> {
    const abort = new AbortController();
    this.inflight = abort;
    this.requests++;
    const { mode, n, temperature, maxTokens, language } = this.settings;
    const t0 = this.now();
    this.status.set({ state: "thinking" });
    const stale = () => gen !== this.generation || abort.signal.aborted;
    try {
      const req: CompleteRequest = {
        prefix: ctx.prefix,
        suffix: ctx.suffix,
        ...(language ? { language } : {}),
        ...(mode !== "auto" ? { mode } : {}),
        n,
        temperature,
        ...(maxTokens ? { maxTokens } : {}),
        signal: abort.signal,
      };
      const out = this.settings.stream && n === 1 && this.completer.stream ? await this.streamed(ctx, req, stale) : await this.completer.complete(req);
      if (!out || stale()) return;
      const t = out.timings;
      this.status.set({
        state: "ready",
        error: null,
        lastLatencyMs: this.now() - t0,
        tokPerS: t.decodeMs > 0 ? (t.generatedTokens * 1000) / t.decodeMs : null,
        mode: t.mode,
      });
      const candidates = out.candidates.filter((c) => c.text.length > 0);
      this.shown = candidates.length ? { ctx, candidates: candidates.map((c) => ({ text: c.text, meanLogprob: c.meanLogprob })), index: 0 } : null;
      // Emitted even when empty: an adapter waiting for the answer (Monaco's) must hear it.
      this.emit();
    } catch (e) {
      if (gen !== this.generation || abort.signal.aborted) return;
      const err = e as { code?: string; message?: string };
      this.status.set({ state: "error", error: `${err.code ?? "error"}: ${err.message ?? String(e)}` });
      // A stream that failed part-way leaves its partial text shown: it must not stay Tab-acceptable.
      this.shown = null;
      this.emit();
    } finally {
      if (this.inflight === abort) this.inflight = null;
    }
  }

  /** Shows each growing text of the best candidate; null when the request went stale. */
  private async streamed(ctx: CursorContext, req: CompleteRequest, stale: () => boolean): Promise<Completion | null> {
    const it = (this.completer.stream as NonNullable<CompleterLike["stream"]>)(req);
    for (let r = await it.next(); ; r = await it.next()) {
      if (stale()) return null;
      if (r.done) return r.value;
      // Mean log-probability is known at the end only.
      if (r.value) {
        this.shown = { ctx, candidates: [{ text: r.value, meanLogprob: Number.NaN }], index: 0, partial: true };
        this.emit();
      }
    }
  }

  private abort(): void {
    this.generation++;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.inflight) {
      this.inflight.abort();
      this.inflight = null;
      if (this.status.value.state === "thinking") this.status.set({ state: "ready" });
    }
  }

  private clear(): void {
    if (!this.shown) return;
    this.shown = null;
    this.emit();
  }

  private emit(): void {
    this.onChange(this.suggestion);
  }
}
