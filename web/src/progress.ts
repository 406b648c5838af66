/**
 * Progress as the caller sees it: phases only move forward (download → verify → init) and
 * bytes never go back within a phase, whatever order the underlying events come in.
 */
import type { Progress } from "./types.js";

const ORDER: Record<Progress["phase"], number> = { download: 0, verify: 1, init: 2 };

export class ProgressTracker {
  private last: Progress | null = null;

  constructor(private readonly emit: (p: Progress) => void) {}

  /** Reports `p` unless it would move backwards; returns whether it was reported. */
  report(p: Progress): boolean {
    const last = this.last;
    if (last) {
      const dPhase = ORDER[p.phase] - ORDER[last.phase];
      if (dPhase < 0 || (dPhase === 0 && p.bytes < last.bytes)) return false;
      if (dPhase === 0 && p.bytes === last.bytes && p.total === last.total) return false;
    }
    this.last = { ...p };
    this.emit({ ...p });
    return true;
  }
}
