/**
 * The model cache (Cache API). A file is stored only after its sha256 checked out, under a key
 * made of its URL and that sha256, so a changed file at the same URL is a new entry and a
 * cached entry is always the bytes that were asked for.
 */

const CACHE_NAME = "nib-models-v1";

/** The cache key: a same-origin URL no server is asked for. */
export function cacheKey(origin: string, url: string, sha256: string): string {
  return `${origin}/__nib_model_cache__/${sha256.toLowerCase()}/${encodeURIComponent(url)}`;
}

function available(): boolean {
  return typeof caches !== "undefined";
}

/** The cached response for `key`, or null (also when the Cache API is unavailable). */
export async function lookup(key: string): Promise<Response | null> {
  if (!available()) return null;
  try {
    const cache = await caches.open(CACHE_NAME);
    return (await cache.match(key)) ?? null;
  } catch {
    return null;
  }
}

/** Removes the entry for `key`, if the cache can. */
export async function forget(key: string): Promise<void> {
  if (!available()) return;
  try {
    await (await caches.open(CACHE_NAME)).delete(key);
  } catch {
    // Nothing more to do: the next store replaces it.
  }
}

/**
 * Stores the `size` bytes that `view(offset, len)` shows (views into wasm memory). Each piece
 * becomes a Blob, which copies it out of the renderer into the browser's blob storage at once;
 * copies made as JS arrays would instead stay in the worker's heap as garbage (about the
 * model's size, measured) until a collection.
 */
export async function store(key: string, size: number, view: (offset: number, len: number) => Uint8Array): Promise<void> {
  if (!available()) return;
  const PIECE = 4 << 20;
  const parts: Blob[] = [];
  for (let offset = 0; offset < size; offset += PIECE) {
    parts.push(new Blob([view(offset, Math.min(PIECE, size - offset)) as Uint8Array<ArrayBuffer>]));
  }
  const cache = await caches.open(CACHE_NAME);
  await cache.put(key, new Response(new Blob(parts), { headers: { "content-length": String(size), "content-type": "application/octet-stream" } }));
}
