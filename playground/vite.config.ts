// The playground's build. The adapters (nib-complete/codemirror|monaco|textarea) are bundled
// from web/dist; the runtime itself (client, worker, wasm) is copied unchanged to nib/ and
// loaded from there, so its worker keeps the file layout it was built with. CodeMirror's
// packages resolve from here only: two copies of @codemirror/state break CodeMirror.
import { cpSync, existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig, type Plugin } from "vite";

const here = path.dirname(fileURLToPath(import.meta.url));
const webDist = path.resolve(here, "../web/dist");

function nibRuntime(): Plugin {
  return {
    name: "nib-runtime",
    buildStart() {
      if (!existsSync(path.join(webDist, "wasm/nib_wasm_bg.wasm"))) this.error(`${webDist} has no wasm: build the web package first (cargo xtask web)`);
    },
    closeBundle() {
      cpSync(webDist, path.resolve(here, "dist/nib"), { recursive: true, filter: (src) => !src.endsWith(".d.ts") });
    },
  };
}

export default defineConfig({
  base: "./",
  resolve: {
    alias: [{ find: /^nib-complete\/(codemirror|monaco|textarea|controller|status)$/, replacement: `${webDist}/editors/$1.js` }],
    dedupe: ["@codemirror/state", "@codemirror/view", "@codemirror/autocomplete", "@codemirror/language"],
  },
  build: { target: "es2022", chunkSizeWarningLimit: 4096, reportCompressedSize: false },
  plugins: [nibRuntime()],
});
