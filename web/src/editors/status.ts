/**
 * What a status indicator shows (users of Copilot-like tools ask "is it thinking?"): model
 * loading progress, thinking, the backend, the last request's latency and decode speed, the
 * last error. A plain observable value, so any UI (the playground's bar, an editor's corner)
 * can draw it.
 */
export interface Status {
  state: "loading" | "ready" | "thinking" | "error";
  /** Loading progress, 0..1 (null: unknown total). */
  progress: number | null;
  backend: string | null;
  /** Request sent → candidates back, in ms (the debounce not included). */
  lastLatencyMs: number | null;
  tokPerS: number | null;
  /** The mode the engine used for the last request. */
  mode: "line" | "block" | null;
  error: string | null;
}

export class StatusModel {
  private current: Status;
  private readonly listeners = new Set<(s: Status) => void>();

  constructor(initial: Partial<Status> = {}) {
    this.current = { state: "loading", progress: null, backend: null, lastLatencyMs: null, tokPerS: null, mode: null, error: null, ...initial };
  }

  get value(): Status {
    return { ...this.current };
  }

  set(patch: Partial<Status>): void {
    this.current = { ...this.current, ...patch };
    for (const l of this.listeners) l(this.value);
  }

  /** Calls `listener` now and after every change; returns the unsubscribe function. */
  subscribe(listener: (s: Status) => void): () => void {
    this.listeners.add(listener);
    listener(this.value);
    return () => this.listeners.delete(listener);
  }
}

/** One line for a status bar: "cpu · 212 ms · 41 tok/s", "thinking…", "loading 40%". */
export function describeStatus(s: Status): string {
  if (s.state === "error") return `error: ${s.error ?? "unknown"}`;
  if (s.state === "loading") return s.progress === null ? "loading…" : `loading ${Math.round(s.progress * 100)}%`;
  const parts = [s.backend ?? "?"];
  if (s.state === "thinking") parts.push("thinking…");
  if (s.lastLatencyMs !== null) parts.push(`${Math.round(s.lastLatencyMs)} ms`);
  if (s.tokPerS !== null) parts.push(`${s.tokPerS.toFixed(s.tokPerS < 10 ? 1 : 0)} tok/s`);
  if (s.mode) parts.push(s.mode);
  return parts.join(" · ");
}
