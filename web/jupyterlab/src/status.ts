/**
 * The status bar item: model loading %, thinking, the backend, the last request's latency,
 * errors. Its element carries `data-nib-state` and `data-nib-backend`, as the playground's
 * status does (target.md), so tests and users' styles can read it.
 */
import { Widget } from "@lumino/widgets";
import type { Backend, Progress } from "nib-complete";

export type Status =
  | { state: "idle" }
  | { state: "loading"; progress: Progress | null }
  | { state: "thinking"; backend: Backend }
  | { state: "ready"; backend: Backend; firstMs?: number; totalMs?: number }
  | { state: "error"; message: string };

export class NibStatus extends Widget {
  constructor() {
    super();
    this.addClass("nib-status");
    this.node.style.padding = "0 6px";
    this.show_({ state: "idle" });
  }

  /** Named with an underscore: Widget already has `show()`. */
  show_(s: Status): void {
    this.node.dataset.nibState = s.state;
    if ("backend" in s) this.node.dataset.nibBackend = s.backend;
    this.node.textContent = describe(s);
    this.node.title = s.state === "error" ? s.message : "nib: private code completion, in this browser tab";
  }
}

function describe(s: Status): string {
  switch (s.state) {
    case "idle":
      return "nib";
    case "loading": {
      const p = s.progress;
      if (!p) return "nib: loading";
      const pct = p.total > 0 ? ` ${Math.floor((100 * p.bytes) / p.total)}%` : "";
      return `nib: ${p.phase === "download" ? (p.fromCache ? "from cache" : "downloading") : p.phase}${pct}`;
    }
    case "thinking":
      return `nib (${s.backend}): thinking…`;
    case "ready":
      return s.totalMs === undefined ? `nib (${s.backend})` : `nib (${s.backend}): first text ${Math.round(s.firstMs ?? s.totalMs)} ms, done ${Math.round(s.totalMs)} ms`;
    case "error":
      return `nib: ${s.message.length > 60 ? s.message.slice(0, 57) + "…" : s.message}`;
  }
}
