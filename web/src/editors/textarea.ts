/**
 * `nib-complete/textarea`: ghost text for a plain `<textarea>`.
 *
 *   const nib = attachTextarea(textarea, completer);   // nib.detach() undoes it
 *
 * A textarea cannot style part of its text, so an overlay `<div>` with the same box, font and
 * scroll position lies over it: the text before the caret, invisible, then the suggestion in a
 * `nib-ghost` span, which therefore lands right after the caret. Keys: Tab accepts (with nothing
 * shown it inserts `indent`, as code editors do), Esc, Alt+] / Alt+[, Ctrl/Cmd+Right. During an
 * IME composition nothing is shown or asked and the keys belong to the IME.
 */
import { SuggestionController, type CompleterLike, type ControllerSettings } from "./controller.js";
import type { StatusModel } from "./status.js";

/** The box and text properties the overlay copies so that its text lines up with the textarea's. */
const MIRRORED = [
  "boxSizing", "width", "height", "paddingTop", "paddingRight", "paddingBottom", "paddingLeft",
  "borderTopWidth", "borderRightWidth", "borderBottomWidth", "borderLeftWidth", "borderStyle",
  "fontFamily", "fontSize", "fontWeight", "fontStyle", "lineHeight", "letterSpacing", "tabSize",
  "textIndent", "textTransform", "wordSpacing", "whiteSpace", "overflowWrap", "wordBreak",
] as const;

export interface NibTextarea {
  controller: SuggestionController;
  detach(): void;
}

export function attachTextarea(
  ta: HTMLTextAreaElement,
  completer: CompleterLike,
  settings: Partial<ControllerSettings> = {},
  options: { status?: StatusModel; indent?: string | null } = {},
): NibTextarea {
  const indent = options.indent === undefined ? "    " : options.indent;
  const doc = ta.ownerDocument;
  const overlay = doc.createElement("div");
  overlay.setAttribute("aria-hidden", "true");
  overlay.style.position = "absolute";
  overlay.style.pointerEvents = "none";
  overlay.style.overflow = "hidden";
  overlay.style.borderColor = "transparent";
  overlay.style.color = "transparent";
  overlay.style.background = "transparent";
  const before = doc.createTextNode("");
  const ghost = doc.createElement("span");
  ghost.className = "nib-ghost";
  ghost.style.color = "GrayText";
  ghost.style.opacity = "0.8";
  overlay.append(before, ghost);
  ta.insertAdjacentElement("afterend", overlay);

  const place = () => {
    const cs = getComputedStyle(ta);
    for (const k of MIRRORED) overlay.style[k] = cs[k];
    if (cs.whiteSpace === "normal") overlay.style.whiteSpace = "pre-wrap";
    overlay.style.left = `${ta.offsetLeft}px`;
    overlay.style.top = `${ta.offsetTop}px`;
    overlay.scrollTop = ta.scrollTop;
    overlay.scrollLeft = ta.scrollLeft;
  };
  const ctx = () => ({ prefix: ta.value.slice(0, ta.selectionStart), suffix: ta.value.slice(ta.selectionEnd) });

  const controller = new SuggestionController(
    completer,
    (s) => {
      before.data = s ? ta.value.slice(0, ta.selectionStart) : "";
      ghost.textContent = s ? s.text : "";
      place();
    },
    settings,
    options.status,
  );

  /** Inserts at the caret through the editing commands, so undo and `input` listeners see it. */
  const insert = (text: string) => {
    ta.focus();
    if (!doc.execCommand("insertText", false, text)) {
      ta.setRangeText(text, ta.selectionStart, ta.selectionEnd, "end");
      ta.dispatchEvent(new InputEvent("input", { inputType: "insertText", data: text }));
    }
  };

  let caret = -1;
  // Between compositionstart and compositionend: the text at the caret is not final yet.
  let composing = false;
  const onInput = (e?: Event) => {
    if (composing || (e as InputEvent | undefined)?.isComposing) return;
    caret = ta.selectionStart;
    controller.update(ctx(), true);
  };
  const onCompositionStart = () => {
    composing = true;
    controller.dismiss();
  };
  /** The composed text is in: the update its `input` events skipped. */
  const onCompositionEnd = () => {
    composing = false;
    onInput();
  };
  const onCaret = () => {
    if (composing) return;
    if (ta.selectionStart !== ta.selectionEnd) controller.dismiss();
    if (ta.selectionStart === caret) return;
    caret = ta.selectionStart;
    controller.update(ctx(), false);
  };
  const onKey = (e: KeyboardEvent) => {
    // 229: the key went to the IME (Safari sends the key that ends a composition after its end).
    if (composing || e.isComposing || e.keyCode === 229) return;
    const has = controller.suggestion !== null;
    let text: string | null = null;
    if (e.key === "Tab" && !e.shiftKey && !e.altKey && !e.ctrlKey && !e.metaKey) {
      text = has ? controller.accept() : indent;
      // `indent: null`: with nothing shown Tab goes on (focus moves), as target.md's keys say.
      if (text === null) return;
    } else if (e.key === "Escape") {
      // A pending request is stopped too, but with nothing shown the key goes on to the page.
      controller.dismiss();
      if (!has) return;
    } else if (e.altKey && (e.code === "BracketRight" || e.code === "BracketLeft") && has) {
      controller.cycle(e.code === "BracketRight" ? 1 : -1);
    } else if (e.key === "ArrowRight" && (e.ctrlKey || e.metaKey) && has) {
      text = controller.acceptWord();
    } else {
      return;
    }
    e.preventDefault();
    if (text !== null) insert(text);
  };
  const onBlur = () => controller.dismiss();

  ta.addEventListener("input", onInput);
  ta.addEventListener("keydown", onKey);
  ta.addEventListener("compositionstart", onCompositionStart);
  ta.addEventListener("compositionend", onCompositionEnd);
  ta.addEventListener("keyup", onCaret);
  ta.addEventListener("click", onCaret);
  ta.addEventListener("scroll", place);
  ta.addEventListener("blur", onBlur);
  place();

  return {
    controller,
    detach() {
      controller.destroy();
      ta.removeEventListener("input", onInput);
      ta.removeEventListener("keydown", onKey);
      ta.removeEventListener("compositionstart", onCompositionStart);
      ta.removeEventListener("compositionend", onCompositionEnd);
      ta.removeEventListener("keyup", onCaret);
      ta.removeEventListener("click", onCaret);
      ta.removeEventListener("scroll", place);
      ta.removeEventListener("blur", onBlur);
      overlay.remove();
    },
  };
}
