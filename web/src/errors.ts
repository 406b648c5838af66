/** The one error class of the package: a stable `code` to branch on and a message to show. */
import type { ErrorCode } from "./types.js";

export class NibError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = "NibError";
    this.code = code;
  }
}

const CODES: ReadonlySet<string> = new Set<ErrorCode>([
  "model_fetch_failed", "model_hash_mismatch", "model_corrupt", "model_unsupported", "out_of_memory",
  "gpu_unavailable", "gpu_device_lost", "aborted", "invalid_argument", "busy", "disposed", "worker_lost", "internal",
]);

/** `{code, message}` from anything thrown: a wasm error carries its code, the rest are `internal`. */
export function describeError(e: unknown): { code: ErrorCode; message: string } {
  if (e && typeof e === "object") {
    const code = (e as { code?: unknown }).code;
    const message = String((e as { message?: unknown }).message ?? e);
    if (typeof code === "string" && CODES.has(code)) return { code: code as ErrorCode, message };
    if ((e as { name?: unknown }).name === "AbortError") return { code: "aborted", message: "aborted" };
    return { code: "internal", message };
  }
  return { code: "internal", message: String(e) };
}
