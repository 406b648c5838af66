/**
 * `nib-complete/monaco`: an InlineCompletionsProvider for Monaco (tested with 0.57).
 *
 *   const nib = registerMonaco(monaco, editor, completer);   // nib.dispose() unregisters
 *
 * Monaco draws the ghost text and owns the keys (Tab commit, Esc hide, Alt+] / Alt+[ cycle,
 * Ctrl/Cmd+Right accept word); the shared controller decides when to ask. Monaco calls the
 * provider on every change: each call hands the controller the new context, which shortens a
 * typed-through suggestion at once (no request) or debounces and asks; Monaco's cancellation
 * token aborts a debounce or a request in flight. A call the controller does not ask for (the
 * mid-line gate, the same text again) is answered at once with no items; an explicit trigger
 * (Alt+\, or Monaco's cycling with nothing shown) asks at once. The `monaco` namespace is
 * passed in, not imported, so this module works with the page's own copy of Monaco (a peer
 * dependency).
 */
import { SuggestionController, type CompleterLike, type ControllerSettings, type CursorContext, type Suggestion } from "./controller.js";
import type { StatusModel } from "./status.js";

/** The few Monaco shapes used here (structurally; monaco-editor's types are not a dependency). */
interface Disposable {
  dispose(): void;
}
interface TextModel {
  getValue(): string;
  getOffsetAt(position: Position): number;
}
interface Position {
  lineNumber: number;
  column: number;
}
interface CancellationToken {
  isCancellationRequested: boolean;
  onCancellationRequested(listener: () => void): Disposable;
}
interface InlineItem {
  insertText: string;
  range: { startLineNumber: number; startColumn: number; endLineNumber: number; endColumn: number };
}
/** InlineCompletionTriggerKind.Explicit. */
const TRIGGER_EXPLICIT = 1;
/** InlineCompletionEndOfLifeReasonKind. */
const END_ACCEPTED = 0;
const END_REJECTED = 1;

export interface MonacoLike {
  languages: { registerInlineCompletionsProvider(selector: string | string[] | { pattern?: string }, provider: object): Disposable };
}
export interface EditorLike {
  getModel(): TextModel | null;
  updateOptions(options: object): void;
}

export interface NibMonaco {
  controller: SuggestionController;
  dispose(): void;
}

export function registerMonaco(
  monaco: MonacoLike,
  editor: EditorLike,
  completer: CompleterLike,
  settings: Partial<ControllerSettings> = {},
  options: { status?: StatusModel; languages?: string | string[] } = {},
): NibMonaco {
  // Whoever waits for the controller's next answer (one provider call at a time).
  let waiter: ((s: Suggestion | null) => void) | null = null;
  // Monaco takes one answer per call: no streamed partials.
  const controller = new SuggestionController(completer, (s) => waiter?.(s), { ...settings, stream: false }, options.status);
  let last: CursorContext | null = null;

  const items = (s: Suggestion, at: Position): { items: InlineItem[]; enableForwardStability: boolean } => {
    const range = { startLineNumber: at.lineNumber, startColumn: at.column, endLineNumber: at.lineNumber, endColumn: at.column };
    // The shown candidate first, so Monaco's own cycling starts where the controller is.
    const order = s.candidates.map((_, i) => (s.index + i) % s.candidates.length);
    return { items: order.map((i) => ({ insertText: s.candidates[i].text, range })), enableForwardStability: true };
  };

  const provider = {
    // The controller debounces; Monaco's own debounce would add to it.
    debounceDelayMs: 0,
    displayName: "nib",
    async provideInlineCompletions(model: TextModel, position: Position, context: { triggerKind?: number }, token: CancellationToken) {
      if (model !== editor.getModel()) return { items: [] };
      const text = model.getValue();
      const offset = model.getOffsetAt(position);
      const ctx = { prefix: text.slice(0, offset), suffix: text.slice(offset) };
      // Monaco asks again with the same text when cycling: that is not typing.
      const typed = !(last && last.prefix === ctx.prefix && last.suffix === ctx.suffix);
      last = ctx;
      controller.update(ctx, typed);
      const now = controller.suggestion;
      if (now) return items(now, position);
      // Asked for (Alt+\ or cycling with nothing shown): whatever the line's suffix, without the
      // debounce; a request already on its way is the answer.
      if (context?.triggerKind === TRIGGER_EXPLICIT && controller.pending !== "request") controller.trigger(ctx);
      // Nothing on its way: no answer would come, and Monaco would wait until it cancels.
      if (token.isCancellationRequested || controller.pending === null) return { items: [] };
      const answer = await new Promise<Suggestion | null>((resolve) => {
        const sub = token.onCancellationRequested(() => {
          // A newer call supersedes this one: stop its debounce or request.
          controller.dismiss();
          finish(null);
        });
        const finish = (s: Suggestion | null) => {
          waiter = null;
          sub.dispose();
          resolve(s);
        };
        waiter?.(null);
        waiter = finish;
      });
      return answer && !token.isCancellationRequested ? items(answer, position) : { items: [] };
    },
    /** Monaco cycles (Alt+] / Alt+[) among the items itself: the controller follows. */
    handleItemDidShow(_list: unknown, item: InlineItem) {
      controller.select(item.insertText);
    },
    /** Esc (Rejected) or Tab (Accepted) in Monaco: the controller lets the suggestion go too. */
    handleEndOfLifetime(_list: unknown, _item: InlineItem, reason: { kind: number }) {
      if (reason.kind === END_ACCEPTED || reason.kind === END_REJECTED) controller.dismiss();
    },
    /** Nothing to free: the candidates are plain strings, and what runs was stopped by the token. */
    disposeInlineCompletions() {},
    /** The same for Monaco before 0.48, which called it this. */
    freeInlineCompletions() {},
  };

  editor.updateOptions({ inlineSuggest: { enabled: true } });
  const reg = monaco.languages.registerInlineCompletionsProvider(options.languages ?? { pattern: "**" }, provider);
  return {
    controller,
    dispose() {
      reg.dispose();
      controller.destroy();
      waiter?.(null);
    },
  };
}
