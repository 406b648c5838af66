/**
 * nib-complete: private code completion in the browser. `createCompleter` loads a model into
 * a Web Worker; see the README for the API.
 */
export { createCompleter, Completer } from "./client.js";
export { NibError } from "./errors.js";
export type * from "./types.js";
