/**
 * What the model sees in a notebook: the code of the cells above the current one, then the
 * current cell up to the cursor. The earlier cells come first and are cut by whole cells from
 * the top, so the prompt's start does not move while the user types in the current cell: each
 * keystroke only appends to the prefix, and the engine reuses its KV cache for all of it.
 */

/** Characters of earlier cells kept (about 1.5k tokens of code): room for the current cell. */
export const MAX_CONTEXT_CHARS = 6000;

/** Between cells: a blank line, as in a script made of the notebook. */
const SEP = "\n\n";

/**
 * The earlier cells' code joined into the text placed before the cell's own prefix; ends with
 * the separator when not empty. Cells are dropped from the top until the rest fits; a last
 * cell longer than the budget keeps its tail, cut at a line start.
 */
export function earlierContext(cells: string[], maxChars = MAX_CONTEXT_CHARS): string {
  const kept: string[] = [];
  let size = 0;
  for (let i = cells.length - 1; i >= 0; i--) {
    const code = cells[i].replace(/\s+$/, "");
    if (code.trim() === "") continue;
    if (size + code.length + SEP.length > maxChars) {
      if (kept.length === 0) {
        const tail = code.slice(code.length - (maxChars - SEP.length));
        const line = tail.indexOf("\n");
        if (line >= 0 && line + 1 < tail.length) kept.unshift(tail.slice(line + 1));
      }
      break;
    }
    kept.unshift(code);
    size += code.length + SEP.length;
  }
  return kept.length ? kept.join(SEP) + SEP : "";
}

/** The completion request's prefix and suffix for a cursor at `offset` in the cell's `text`. */
export function cellPrompt(earlier: string[], text: string, offset: number): { prefix: string; suffix: string } {
  return { prefix: earlierContext(earlier) + text.slice(0, offset), suffix: text.slice(offset) };
}
