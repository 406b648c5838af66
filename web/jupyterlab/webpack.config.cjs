// Merged into @jupyterlab/builder's webpack config. nib-complete's engine is a module worker
// that imports its sibling modules and fetches its .wasm by relative URL, so it is shipped as
// it is, as static files beside the bundle (static/nib/), instead of being bundled: the worker
// and the wasm are then plain files the Jupyter server serves.
const fs = require("fs");
const path = require("path");

const DIST = path.join(__dirname, "..", "dist");

class ShipNibWorker {
  apply(compiler) {
    const { RawSource } = compiler.webpack.sources;
    compiler.hooks.thisCompilation.tap("ShipNibWorker", (compilation) => {
      compilation.hooks.processAssets.tap({ name: "ShipNibWorker", stage: compiler.webpack.Compilation.PROCESS_ASSETS_STAGE_ADDITIONAL }, () => {
        const files = [
          ...fs.readdirSync(DIST).filter((f) => f.endsWith(".js")),
          "wasm/nib_wasm.js",
          "wasm/nib_wasm_bg.wasm",
          // The build the worker loads where relaxed SIMD is missing (Safari).
          "wasm/nib_wasm_simd128_bg.wasm",
        ];
        for (const f of files) {
          const file = path.join(DIST, f);
          if (!fs.existsSync(file)) throw new Error(`${file} is missing: build nib-complete first (cargo xtask web)`);
          compilation.fileDependencies.add(file);
          compilation.emitAsset(`nib/${f}`, new RawSource(fs.readFileSync(file)));
        }
      });
    });
  }
}

module.exports = {
  plugins: [new ShipNibWorker()],
  // nib-complete is this repository's web/ package, built into web/dist by `cargo xtask web`:
  // bundled from there rather than installed, so the two lockfiles stay independent.
  resolve: { alias: { "nib-complete$": path.join(DIST, "index.js") } },
  // nib-complete's default worker URL (new URL("./worker.js", import.meta.url)) is never used
  // here (the provider passes workerUrl): webpack must not turn it into an asset.
  module: { parser: { javascript: { url: false } } },
};
