/**
 * `nib-complete/codemirror`: ghost-text completion for CodeMirror 6.
 *
 *   const nib = nibCompletion(completer, { debounceMs: 150 });
 *   new EditorView({ extensions: [basicSetup, nib.extension] });
 *
 * A StateField holds the suggestion (set by an effect, mapped away on any change), a ViewPlugin
 * feeds the shared controller and draws nothing itself, a widget decoration renders the text
 * with the class `nib-ghost` (one inline `white-space: pre` span, so a multi-line ghost only
 * grows the line it sits on: the lines below move down, the cursor's line never jumps), and a
 * Prec.highest keymap handles Tab / Esc / Alt+] / Alt+[ / Ctrl-or-Cmd+Right, each returning
 * false when nothing is shown so the key falls through (Tab indents, vim's Esc leaves insert
 * mode). Nothing is asked or shown during an IME composition or in an editor without focus.
 */
import { completionStatus } from "@codemirror/autocomplete";
import { Prec, StateEffect, StateField, type EditorState, type Extension } from "@codemirror/state";
import { Decoration, EditorView, ViewPlugin, WidgetType, keymap, type DecorationSet, type ViewUpdate } from "@codemirror/view";
import { SuggestionController, type CompleterLike, type ControllerSettings, type Suggestion } from "./controller.js";
import type { StatusModel } from "./status.js";

const setSuggestion = StateEffect.define<{ text: string; pos: number } | null>();

class GhostWidget extends WidgetType {
  constructor(readonly text: string) {
    super();
  }
  eq(other: GhostWidget): boolean {
    return other.text === this.text;
  }
  toDOM(): HTMLElement {
    const span = document.createElement("span");
    span.className = "nib-ghost";
    span.setAttribute("aria-hidden", "true");
    span.textContent = this.text;
    return span;
  }
  ignoreEvent(): boolean {
    return true;
  }
}

/** The suggestion on screen: its text and where it hangs (the cursor when it was shown). */
const ghostField = StateField.define<{ text: string; pos: number } | null>({
  create: () => null,
  update(value, tr) {
    for (const e of tr.effects) if (e.is(setSuggestion)) return e.value;
    // Any edit invalidates it; the controller decides (typed-through) whether to put it back.
    return tr.docChanged ? null : value;
  },
  provide: (f) =>
    EditorView.decorations.from(f, (g): DecorationSet =>
      g ? Decoration.set([Decoration.widget({ widget: new GhostWidget(g.text), side: 1 }).range(g.pos)]) : Decoration.none,
    ),
});

const ghostTheme = EditorView.baseTheme({
  ".nib-ghost": { opacity: "0.45", whiteSpace: "pre", fontStyle: "italic", pointerEvents: "none" },
});

/** The popup is open or opening, or text is selected: nib stays out of the way. */
const blocked = (state: EditorState) => completionStatus(state) !== null || !state.selection.main.empty;

function context(state: EditorState): { prefix: string; suffix: string } {
  const pos = state.selection.main.head;
  return { prefix: state.doc.sliceString(0, pos), suffix: state.doc.sliceString(pos) };
}

export interface NibCodeMirror {
  extension: Extension;
  controller: SuggestionController;
}

/** The extension array for one editor, and its controller (settings, status, request count). */
export function nibCompletion(completer: CompleterLike, settings: Partial<ControllerSettings> = {}, status?: StatusModel): NibCodeMirror {
  let view: EditorView | null = null;
  let queued = false;
  // Dispatching inside an update is not allowed and the controller may call back from one, so
  // the field is brought in line with the controller's latest suggestion in a microtask.
  const sync = () => {
    queued = false;
    const v = view;
    if (!v) return;
    // An answer that lands after the popup opened is dropped.
    if (controller.suggestion && blocked(v.state)) controller.dismiss();
    const s = controller.suggestion;
    const have = v.state.field(ghostField, false);
    if (!s && !have) return;
    if (s && have && have.text === s.text && have.pos === v.state.selection.main.head) return;
    v.dispatch({ effects: setSuggestion.of(s ? { text: s.text, pos: v.state.selection.main.head } : null) });
  };
  const show = (_: Suggestion | null) => {
    if (!queued) queueMicrotask(sync);
    queued = true;
  };
  const controller = new SuggestionController(completer, show, settings, status);

  const plugin = ViewPlugin.define(
    (v) => {
      view = v;
      // The document changed during an IME composition: reported once the composition ends.
      let composed = false;
      const step = (docChanged: boolean, selectionSet: boolean) => {
        // No ghost while the autocomplete popup is open (it owns the keys) or text is selected;
        // none in an editor that lost focus (what was pending is stopped, so no late answer
        // draws there); none next to an IME composition, whose text is not final yet.
        if (blocked(v.state) || !v.hasFocus || v.composing) {
          composed = v.composing && (composed || docChanged);
          controller.dismiss();
          return;
        }
        if (docChanged || selectionSet || composed) controller.update(context(v.state), docChanged || composed);
        composed = false;
      };
      return {
        update: (u: ViewUpdate) => step(u.docChanged, u.selectionSet),
        /** The composition's last change may come before its end, with no update after it. */
        compositionEnd: () => setTimeout(() => view === v && composed && step(false, false)),
        destroy() {
          controller.destroy();
          view = null;
        },
      };
    },
    {
      eventObservers: {
        compositionend() {
          this.compositionEnd();
        },
      },
    },
  );

  const insert = (v: EditorView, text: string) => {
    const pos = v.state.selection.main.head;
    v.dispatch({ changes: { from: pos, insert: text }, selection: { anchor: pos + text.length }, userEvent: "input.complete", scrollIntoView: true });
  };
  const keys = Prec.highest(
    keymap.of([
      {
        key: "Tab",
        run: (v) => {
          if (!v.state.field(ghostField, false)) return false;
          const text = controller.accept();
          if (text === null) return false;
          insert(v, text);
          return true;
        },
      },
      {
        key: "Escape",
        // The pending request or debounce is stopped either way, but the key is only taken when
        // a suggestion was on screen.
        run: () => {
          const shown = controller.suggestion !== null;
          controller.dismiss();
          return shown;
        },
      },
      { key: "Alt-]", run: () => controller.cycle(1) },
      { key: "Alt-[", run: () => controller.cycle(-1) },
      {
        key: "Mod-ArrowRight",
        run: (v) => {
          const word = controller.acceptWord();
          if (word === null) return false;
          insert(v, word);
          return true;
        },
      },
    ]),
  );
  return { extension: [ghostField, ghostTheme, plugin, keys], controller };
}
