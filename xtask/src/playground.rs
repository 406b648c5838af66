//! The playground (playground/, Vite): `cargo xtask playground` installs what is missing
//! (`setup::run`, which fetches the default model), builds the browser runtime and then the
//! playground, and serves it on http://127.0.0.1:8080 with the model beside it, so the page
//! loads the model from its own origin. `test` runs its end-to-end tests in Chromium; `bench`
//! times keystroke → first ghost text in it (playground/bench/latency.mjs).

use std::process::Command;

use crate::{node_test, root, run_cmd, setup, web};

/// The playground's npm packages (Vite, CodeMirror, Monaco), as its package-lock.json says.
pub fn setup() -> Result<(), String> {
    setup::npm_ci(&root().join("playground"))
}

/// After `web::build`: the playground bundles the adapters and copies the runtime from web/dist.
pub fn build() -> Result<(), String> {
    run_cmd(Command::new("npm").args(["run", "--silent", "build"]).current_dir(root().join("playground")))
}

/// `cargo xtask playground [--build-only]`.
pub fn run(args: &[String]) -> Result<(), String> {
    if let Some(bad) = args.iter().find(|a| *a != "--build-only") {
        return Err(format!("playground: unknown argument {bad} (usage: cargo xtask playground [--build-only])"));
    }
    setup::run()?;
    web::build()?;
    build()?;
    if args.is_empty() {
        // Runs until interrupted.
        run_cmd(Command::new("node").arg("playground/serve.mjs"))?;
    }
    Ok(())
}

/// End-to-end tests on the built playground: each editor on the CPU, one on WebGPU.
pub fn test() -> Result<(), String> {
    build()?;
    run_cmd(node_test().args(["--test-concurrency=1", "test/editors.test.mjs"]).current_dir(root().join("playground")))
}

/// `cargo xtask bench --playground [--edits N] [--gpu-edits N] [--debounce MS]`: keystroke →
/// first ghost text, p50/p95 with the debounce apart, on the CPU over N scripted single-line
/// edits (default 30) and on WebGPU over fewer (default 3: SwiftShader, where there is no GPU,
/// takes seconds per token). One JSON line per backend.
pub fn bench(args: &[String]) -> Result<(), String> {
    let flag = |name: &str, default: u32| -> Result<u32, String> {
        match args.iter().position(|a| a == name) {
            Some(i) => args.get(i + 1).and_then(|v| v.parse().ok()).ok_or(format!("{name} needs a number")),
            None => Ok(default),
        }
    };
    let (edits, gpu_edits, debounce) = (flag("--edits", 30)?, flag("--gpu-edits", 3)?, flag("--debounce", 150)?);
    setup::run()?;
    web::build()?;
    build()?;
    for (backend, n) in [("cpu", edits), ("webgpu", gpu_edits)] {
        if n > 0 {
            run_cmd(Command::new("node").arg("bench/latency.mjs").arg(backend).arg(n.to_string()).arg(debounce.to_string()).current_dir(root().join("playground")))?;
        }
    }
    Ok(())
}
