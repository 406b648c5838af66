/**
 * The three editors the playground offers, behind one small interface: each mounts into a
 * host element with the starting text and nib's adapter attached, and hands back its
 * controller. Monaco is imported only when chosen (it is most of the bundle).
 */
import { autocompletion } from "@codemirror/autocomplete";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { javascript } from "@codemirror/lang-javascript";
import { python } from "@codemirror/lang-python";
import { rust } from "@codemirror/lang-rust";
import { bracketMatching, defaultHighlightStyle, indentOnInput, indentUnit, syntaxHighlighting } from "@codemirror/language";
import { EditorState } from "@codemirror/state";
import { EditorView, drawSelection, highlightActiveLine, keymap, lineNumbers } from "@codemirror/view";
import { nibCompletion } from "nib-complete/codemirror";
import { attachTextarea } from "nib-complete/textarea";
import type { CompleterLike, ControllerSettings, SuggestionController } from "nib-complete/controller";
import type { StatusModel } from "nib-complete/status";

export type EditorKind = "codemirror" | "monaco" | "textarea";
export const EDITORS: EditorKind[] = ["codemirror", "monaco", "textarea"];

export interface MountedEditor {
  controller: SuggestionController;
  getValue(): string;
  focus(): void;
  destroy(): void;
}

interface Mount {
  host: HTMLElement;
  text: string;
  language: string;
  completer: CompleterLike;
  settings: Partial<ControllerSettings>;
  status: StatusModel;
}

const cmLanguage = (l: string) =>
  l === "python" ? python() : l === "rust" ? rust() : javascript({ typescript: l === "typescript" });

function mountCodeMirror(m: Mount): MountedEditor {
  const nib = nibCompletion(m.completer, m.settings, m.status);
  const view = new EditorView({
    parent: m.host,
    state: EditorState.create({
      doc: m.text,
      selection: { anchor: m.text.length },
      extensions: [
        nib.extension,
        lineNumbers(),
        history(),
        drawSelection(),
        highlightActiveLine(),
        indentOnInput(),
        bracketMatching(),
        indentUnit.of("    "),
        syntaxHighlighting(defaultHighlightStyle),
        // The popup opens on Ctrl-Space only; while it is open nib shows nothing.
        autocompletion({ activateOnTyping: false }),
        keymap.of([...defaultKeymap, ...historyKeymap, indentWithTab]),
        cmLanguage(m.language),
      ],
    }),
  });
  return { controller: nib.controller, getValue: () => view.state.doc.toString(), focus: () => view.focus(), destroy: () => view.destroy() };
}

function mountTextarea(m: Mount): MountedEditor {
  const ta = document.createElement("textarea");
  ta.className = "nib-textarea";
  ta.spellcheck = false;
  ta.value = m.text;
  m.host.append(ta);
  ta.setSelectionRange(m.text.length, m.text.length);
  const nib = attachTextarea(ta, m.completer, m.settings, { status: m.status });
  return {
    controller: nib.controller,
    getValue: () => ta.value,
    focus: () => ta.focus(),
    destroy: () => {
      nib.detach();
      ta.remove();
    },
  };
}

async function mountMonaco(m: Mount): Promise<MountedEditor> {
  const { monaco } = await import("./monaco.js");
  const { registerMonaco } = await import("nib-complete/monaco");
  const model = monaco.editor.createModel(m.text, m.language);
  const editor = monaco.editor.create(m.host, {
    model,
    automaticLayout: true,
    minimap: { enabled: false },
    fontSize: 14,
    tabSize: 4,
    insertSpaces: true,
    // The suggest widget would compete with the inline suggestion for Tab.
    quickSuggestions: false,
    suggestOnTriggerCharacters: false,
    wordBasedSuggestions: "off",
    scrollBeyondLastLine: false,
    // Typing the head of a suggestion must not also close brackets after the cursor.
    autoClosingBrackets: "never",
    autoClosingQuotes: "never",
  });
  const end = model.getPositionAt(m.text.length);
  editor.setPosition(end);
  const nib = registerMonaco(monaco, editor, m.completer, m.settings, { status: m.status });
  return {
    controller: nib.controller,
    getValue: () => model.getValue(),
    focus: () => editor.focus(),
    destroy: () => {
      nib.dispose();
      editor.dispose();
      model.dispose();
    },
  };
}

export async function mountEditor(kind: EditorKind, m: Mount): Promise<MountedEditor> {
  m.host.replaceChildren();
  m.host.dataset.editor = kind;
  if (kind === "monaco") return mountMonaco(m);
  return kind === "textarea" ? mountTextarea(m) : mountCodeMirror(m);
}
