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

/** Stores `size` bytes read through `read(offset, len)`, a piece at a time (bounded memory). */
export async function store(key: string, size: number, read: (offset: number, len: number) => Uint8Array): Promise<void> {
  if (!available()) return;
  const PIECE = 4 << 20;
  let offset = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= size) {
        controller.close();
        return;
      }
      const piece = read(offset, Math.min(PIECE, size - offset));
      if (piece.byteLength === 0) {
        controller.error(new Error(`model bytes end at ${offset} of ${size}`));
        return;
      }
      offset += piece.byteLength;
      controller.enqueue(piece);
    },
  });
  const cache = await caches.open(CACHE_NAME);
  await cache.put(key, new Response(body, { headers: { "content-length": String(size), "content-type": "application/octet-stream" } }));
}
