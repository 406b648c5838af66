// A plain static server for the browser tests: no COOP/COEP or other special headers (nib must
// work without them). It serves the test page, the built package and the default model, plus
// the broken models the error tests need, and logs every request it answers.
import http from "node:http";
import fs from "node:fs";
import zlib from "node:zlib";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const WEB = path.resolve(here, "..");
export const ROOT = path.resolve(WEB, "..");
export const MODEL_FILE = path.join(ROOT, "models/default/SmolLM2-135M-Instruct.Q4_1.gguf");
export const MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
export const MODEL_URL_PATH = "/models/default/SmolLM2-135M-Instruct.Q4_1.gguf";

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json", ".gguf": "application/octet-stream", ".ts": "text/plain", ".css": "text/css", ".ttf": "font/ttf", ".svg": "image/svg+xml", ".png": "image/png" };

/** Static folders, by URL prefix. */
const MOUNTS = [
  ["/page/", path.join(WEB, "test/page")],
  ["/dist/", path.join(WEB, "dist")],
  ["/models/default/", path.join(ROOT, "models/default")],
];

function serveFile(res, file, transform) {
  fs.stat(file, (err, st) => {
    if (err || !st.isFile()) {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
      return;
    }
    res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream", "content-length": st.size, "cache-control": "no-store" });
    const s = fs.createReadStream(file, { highWaterMark: 1 << 20 });
    if (transform) s.pipe(transform).pipe(res);
    else s.pipe(res);
  });
}

/**
 * Starts the server (on a free port unless `port` is given); `requests` lists every path asked
 * for. `headers` go on every answer (the benchmark sets COOP/COEP so that wllama may use
 * threads); `mounts` add [prefix, folder] pairs (the playground mounts its build at "/").
 */
export async function startServer({ headers = {}, mounts = [], port: wanted = 0 } = {}) {
  const requests = [];
  let gzipped = null;
  const allMounts = [...MOUNTS, ...mounts];
  const server = http.createServer((req, res) => {
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    const url = new URL(req.url, "http://x");
    requests.push(url.pathname);
    const p = url.pathname;
    if (p === "/bad/404.gguf") {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("no such model");
      return;
    }
    if (p === "/bad/truncated.gguf") {
      // Says the whole size, sends 8 MiB, then cuts the connection: a download that breaks.
      const size = fs.statSync(MODEL_FILE).size;
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": size });
      const s = fs.createReadStream(MODEL_FILE, { start: 0, end: (8 << 20) - 1 });
      s.on("data", (c) => res.write(c));
      s.on("end", () => setTimeout(() => res.socket?.destroy(), 50));
      return;
    }
    if (p === "/bad/wronghash.gguf") {
      // The model with one weight byte changed: a valid file whose sha256 is not the model's.
      const size = fs.statSync(MODEL_FILE).size;
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": size });
      let offset = 0;
      const flip = size - 1000;
      const s = fs.createReadStream(MODEL_FILE, { highWaterMark: 1 << 20 });
      s.on("data", (c) => {
        if (flip >= offset && flip < offset + c.length) c[flip - offset] ^= 0xff;
        offset += c.length;
        res.write(c);
      });
      s.on("end", () => res.end());
      return;
    }
    if (p === "/gzip/model.gguf") {
      // The model gzip-encoded, to any origin, as a CDN may send it: Content-Length is the
      // compressed size, and CORS hides Content-Encoding from the page (it is not safelisted).
      gzipped ??= zlib.gzipSync(fs.readFileSync(MODEL_FILE), { level: 1 });
      res.writeHead(200, { "content-type": "application/octet-stream", "content-encoding": "gzip", "content-length": gzipped.length, "access-control-allow-origin": "*" });
      res.end(gzipped);
      return;
    }
    if (p === "/bad/corrupt.gguf") {
      // The real header with an absurd tensor count: the reader must refuse it, not allocate.
      const head = Buffer.alloc(4096);
      const fd = fs.openSync(MODEL_FILE, "r");
      fs.readSync(fd, head, 0, head.length, 0);
      fs.closeSync(fd);
      head.writeBigUInt64LE(0xffffffffffn, 8);
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": head.length });
      res.end(head);
      return;
    }
    for (const [prefix, dir] of allMounts) {
      if (p.startsWith(prefix)) {
        const rel = decodeURIComponent(p.slice(prefix.length)) || "index.html";
        const file = path.resolve(dir, rel);
        if (!file.startsWith(dir + path.sep)) break;
        serveFile(res, file);
        return;
      }
    }
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found");
  });
  await new Promise((r, reject) => server.once("error", reject).listen(wanted, "127.0.0.1", r));
  const { port } = server.address();
  return { server, port, origin: `http://127.0.0.1:${port}`, requests, close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }) };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const s = await startServer();
  console.log(`serving ${WEB} on ${s.origin}/page/`);
}
