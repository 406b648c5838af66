/**
 * The extension's settings (schema/plugin.json) as typed values, and where the model is
 * fetched from. Pure functions: the Node unit tests run them without JupyterLab.
 */
import type { BackendChoice } from "nib-complete";

export interface NibSettings {
  /** As the user wrote it: an http(s) URL, or a path under the Jupyter server's root. */
  modelUrl: string;
  /** Lowercase hex, or "" for no check (and no caching). */
  sha256: string;
  backend: BackendChoice;
  mode: "auto" | "line" | "block";
  debounceMs: number;
}

const BACKENDS: BackendChoice[] = ["auto", "webgpu", "cpu"];
const MODES: NibSettings["mode"][] = ["auto", "line", "block"];

/**
 * The composite settings, checked again here: the registry validates against the schema, but a
 * value it let through must not reach the engine as something else.
 */
export function readSettings(composite: Record<string, unknown>): NibSettings {
  const str = (k: string) => (typeof composite[k] === "string" ? (composite[k] as string).trim() : "");
  const backend = str("backend") as BackendChoice;
  const mode = str("mode") as NibSettings["mode"];
  const debounce = Number(composite.debounceMs);
  const sha256 = str("sha256").toLowerCase();
  if (sha256 !== "" && !/^[0-9a-f]{64}$/.test(sha256)) throw new Error("sha256 must be 64 hex digits or empty");
  if (str("modelUrl") === "") throw new Error("modelUrl is empty: set the URL of a GGUF model");
  return {
    modelUrl: str("modelUrl"),
    sha256,
    backend: BACKENDS.includes(backend) ? backend : "auto",
    mode: MODES.includes(mode) ? mode : "auto",
    debounceMs: Number.isFinite(debounce) && debounce >= 0 ? debounce : 0,
  };
}

/**
 * The URL the worker fetches. An absolute URL is used as it is; a relative one is a path under
 * the Jupyter server's root, which the server serves at `<baseUrl>files/` (so the registry's
 * default, models/default/…, works in a nib checkout).
 */
export function modelHref(modelUrl: string, baseUrl: string): string {
  if (/^[a-z][a-z0-9+.-]*:/i.test(modelUrl)) return new URL(modelUrl).href;
  const rel = modelUrl.replace(/^\/+/, "").split("/").map(encodeURIComponent).join("/");
  return new URL(`files/${rel}`, baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`).href;
}
