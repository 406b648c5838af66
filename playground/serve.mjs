// `cargo xtask playground` ends here: the built playground at http://127.0.0.1:8080/, with the
// default model beside it (models/default/), so the page loads it from its own origin.
// The same static server as the browser tests (web/test/server.mjs).
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startServer } from "../web/test/server.mjs";

const dist = path.join(path.dirname(fileURLToPath(import.meta.url)), "dist");
const port = Number(process.env.NIB_PORT ?? 8080);
const srv = await startServer({ mounts: [["/", dist]], port });
console.log(`nib playground: ${srv.origin}/  (Ctrl+C stops it)`);
