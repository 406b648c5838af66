/**
 * Gets the model's bytes into the wasm loader (runs in the worker): from the cache when an
 * entry for this URL and sha256 exists, else streamed from the network and hashed as it
 * arrives, then cached once verified. Bytes given by the caller go straight in.
 */
import { cacheKey, forget, lookup, store } from "./cache.js";
import { describeError, NibError } from "./errors.js";
import type { ModelSource, Progress, WasmLoader, WasmModule } from "./types.js";

/** Pieces of a caller's buffer pushed into wasm at once (bounds the transient copy). */
const PUSH_PIECE = 4 << 20;

export interface Downloaded {
  loader: WasmLoader;
  bytes: number;
  fromCache: boolean;
}

export async function download(
  wasm: WasmModule,
  memory: () => WebAssembly.Memory,
  source: ModelSource,
  sha256: string | undefined,
  origin: string,
  signal: AbortSignal,
  progress: (p: Progress) => void,
): Promise<Downloaded> {
  if ("bytes" in source) {
    const buf = new Uint8Array(source.bytes);
    const loader = new wasm.ModelLoader(buf.byteLength, sha256 ?? null);
    try {
      for (let off = 0; off < buf.byteLength; off += PUSH_PIECE) {
        loader.push(buf.subarray(off, Math.min(buf.byteLength, off + PUSH_PIECE)));
        progress({ phase: "download", bytes: Math.min(buf.byteLength, off + PUSH_PIECE), total: buf.byteLength });
      }
      progress({ phase: "verify", bytes: buf.byteLength, total: buf.byteLength });
      loader.verify();
    } catch (e) {
      loader.free();
      throw e;
    }
    return { loader, bytes: buf.byteLength, fromCache: false };
  }

  const key = sha256 ? cacheKey(origin, source.url, sha256) : null;
  const cached = key ? await lookup(key) : null;
  if (key && cached?.body) {
    // Stored only after verification, under its sha256: not hashed again.
    const total = Number(cached.headers.get("content-length")) || 0;
    let loader: WasmLoader | null = null;
    try {
      loader = await pump(wasm, cached.body, total, null, signal, (bytes) => progress({ phase: "download", bytes, total, fromCache: true }));
      if (total && loader.received() !== total) throw new NibError("model_fetch_failed", `it has ${loader.received()} bytes, not ${total}`);
      progress({ phase: "verify", bytes: loader.received(), total: loader.received(), fromCache: true });
      return { loader, bytes: loader.received(), fromCache: true };
    } catch (e) {
      loader?.free();
      // Out of memory, aborted: not the entry's fault.
      const { code, message } = describeError(e);
      if (code !== "model_fetch_failed") throw e;
      // A damaged entry would fail every later visit: drop it and fetch the model again.
      console.warn(`nib: the cached model is unreadable (${message}); fetching it again`);
      await forget(key);
    }
  }

  let response: Response;
  try {
    response = await fetch(source.url, { signal, credentials: "same-origin" });
  } catch (e) {
    if (signal.aborted) throw new NibError("aborted", "model download aborted");
    throw new NibError("model_fetch_failed", `cannot fetch ${source.url}: ${(e as Error).message ?? e}`);
  }
  if (!response.ok || !response.body) {
    throw new NibError("model_fetch_failed", `fetching ${source.url} gave HTTP ${response.status} ${response.statusText}`.trim());
  }
  // A compressed body's Content-Length is not the file's size. A cross-origin response shows
  // Content-Length but hides Content-Encoding (not CORS-safelisted) unless the server exposes
  // it: then the length is only a hint (for progress and the buffer's size), and a body of
  // another length is left to the sha256 or the GGUF reader to judge.
  const encoding = response.headers.get("content-encoding");
  const known = response.type !== "cors" || encoding !== null;
  const length = (encoding ?? "identity") !== "identity" ? 0 : Number(response.headers.get("content-length")) || 0;
  const total = known ? length : 0;
  const loader = await pump(wasm, response.body, length, sha256 ?? null, signal, (bytes) => progress({ phase: "download", bytes, total: known ? length : Math.max(length, bytes) }));
  try {
    const received = loader.received();
    if (total && received !== total) {
      throw new NibError("model_fetch_failed", `the download of ${source.url} ended after ${received} of ${total} bytes`);
    }
    progress({ phase: "verify", bytes: received, total: received });
    loader.verify();
    if (key) {
      try {
        // Views of the loader's buffer, taken while no other wasm call can run.
        const ptr = loader.bytesPtr();
        await store(key, received, (offset, len) => new Uint8Array(memory().buffer, ptr + offset, len));
      } catch (e) {
        // A full or unavailable cache costs the next visit a download, nothing more.
        console.warn(`nib: could not cache the model: ${(e as Error).message ?? e}`);
      }
    }
  } catch (e) {
    loader.free();
    throw e;
  }
  return { loader, bytes: loader.received(), fromCache: false };
}

/** Bytes read from the stream at a time, into one reused buffer. */
const READ_PIECE = 1 << 20;

/**
 * Reads `body` into a new loader, reporting the bytes received. Byte streams (fetch and cache
 * bodies in Chromium) are read with a BYOB reader into one reused buffer: the default reader
 * hands out a fresh chunk per read, about the model's size of garbage in all, which the JS
 * heap holds until a collection runs (it was most of the peak memory above the model).
 */
async function pump(
  wasm: WasmModule,
  body: ReadableStream<Uint8Array>,
  total: number,
  sha256: string | null,
  signal: AbortSignal,
  onBytes: (bytes: number) => void,
): Promise<WasmLoader> {
  const loader = new wasm.ModelLoader(total || null, sha256);
  let byob: ReadableStreamBYOBReader | null = null;
  try {
    byob = body.getReader({ mode: "byob" });
  } catch {
    byob = null;
  }
  const reader = byob ?? body.getReader();
  let buf = new ArrayBuffer(READ_PIECE);
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = byob ? await byob.read(new Uint8Array(buf)) : await (reader as ReadableStreamDefaultReader<Uint8Array>).read();
      } catch (e) {
        if (signal.aborted) throw new NibError("aborted", "model download aborted");
        throw new NibError("model_fetch_failed", `the model download failed after ${loader.received()} bytes: ${(e as Error).message ?? e}`);
      }
      if (chunk.done) break;
      if (signal.aborted) throw new NibError("aborted", "model download aborted");
      loader.push(chunk.value);
      if (byob) buf = chunk.value.buffer as ArrayBuffer;
      onBytes(loader.received());
    }
    return loader;
  } catch (e) {
    loader.free();
    reader.cancel().catch(() => {});
    throw e;
  }
}
