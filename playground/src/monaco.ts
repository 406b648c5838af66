/**
 * Monaco with only what the playground uses: the standalone editor, inline completions,
 * four languages' tokenizers, and the editor worker (bundled by Vite, served from here).
 */
import * as monaco from "monaco-editor/editor/editor.api";
import "monaco-editor/editor/contrib/inlineCompletions/browser/inlineCompletions.contribution";
import "monaco-editor/languages/definitions/python/register";
import "monaco-editor/languages/definitions/javascript/register";
import "monaco-editor/languages/definitions/typescript/register";
import "monaco-editor/languages/definitions/rust/register";
import EditorWorker from "monaco-editor/editor/editor.worker?worker";

(self as unknown as { MonacoEnvironment: object }).MonacoEnvironment = { getWorker: () => new EditorWorker() };

export { monaco };
