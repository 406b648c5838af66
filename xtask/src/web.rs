//! The browser runtime: `cargo xtask web` builds it (nib-wasm for wasm32 with the `wasm`
//! profile, wasm-bindgen into web/dist/wasm, tsc into web/dist), and `test` runs the
//! package's unit tests in Node and its end-to-end tests in headless Chromium.

use std::process::Command;

use crate::{cargo, root, run_cmd};

/// The wasm-bindgen CLI must be the crate's exact version (wasm/Cargo.toml pins it).
pub const WASM_BINDGEN_VERSION: &str = "0.2.130";

pub fn build() -> Result<(), String> {
    run_cmd(cargo().args(["build", "--profile", "wasm", "--target", "wasm32-unknown-unknown", "-p", "nib-wasm"]))?;
    let wasm = root().join("target/wasm32-unknown-unknown/wasm/nib_wasm.wasm");
    let out = root().join("web/dist/wasm");
    // No wasm-opt: Debian's binaryen breaks this module, and the npm one is not worth its
    // download for the few percent it saves (README, "Browser runtime").
    run_cmd(Command::new("wasm-bindgen").args(["--target", "web", "--out-dir"]).arg(&out).arg(&wasm))?;
    run_cmd(Command::new("npm").args(["run", "--silent", "build"]).current_dir(root().join("web")))
}

/// The GPU kernel checks for the browser (kernel-check/, a test entry outside the package) into
/// target/kernel-check/pkg, where web/test/browser/kernels.test.mjs serves them from.
fn build_kernel_check() -> Result<(), String> {
    run_cmd(cargo().args(["build", "--release", "--target", "wasm32-unknown-unknown", "-p", "nib-kernel-check"]))?;
    let wasm = root().join("target/wasm32-unknown-unknown/release/nib_kernel_check.wasm");
    run_cmd(Command::new("wasm-bindgen").args(["--target", "web", "--out-dir"]).arg(root().join("target/kernel-check/pkg")).arg(&wasm))
}

/// Unit tests (Node) and browser tests (Chromium), after `build`.
pub fn test() -> Result<(), String> {
    let web = root().join("web");
    build_kernel_check()?;
    run_cmd(Command::new("node").args(["--test", "test/unit/"]).current_dir(&web))?;
    run_cmd(Command::new("node").args(["--test", "--test-concurrency=1", "test/browser/"]).current_dir(&web))
}

/// wllama, the browser peer, at the version of ../shared/anchors/wllama-baseline.md.
const WLLAMA: &str = "@wllama/wllama@3.13.0";

/// `cargo xtask bench --browser [--runs N]`: nib's CPU wasm and WebGPU beside wllama (1 and 2
/// threads) in one Chromium, and nib's native 1-thread decode for the ratio the issue asks for.
pub fn bench_browser(args: &[String]) -> Result<(), String> {
    let runs = match args.iter().position(|a| a == "--runs") {
        Some(i) => args.get(i + 1).and_then(|r| r.parse::<u32>().ok()).filter(|&r| r >= 1).ok_or("--runs needs a number ≥ 1")?,
        None => 3,
    };
    crate::setup::run()?;
    build()?;
    // wllama is installed for the benchmark only, outside web/'s dependencies (10 MB of wasm).
    let dir = root().join("target/xtask/wllama");
    if !dir.join("node_modules/@wllama/wllama/package.json").is_file() {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        run_cmd(Command::new("npm").args(["install", "--no-audit", "--no-fund", "--prefix"]).arg(&dir).arg(WLLAMA))?;
    }
    run_cmd(cargo().args(["build", "--release", "-p", "nib-cli"]))?;
    let native = Command::new(root().join("target/release/nib"))
        .args(["bench", "--threads", "1", "--backend", "cpu"])
        .current_dir(root())
        .output()
        .map_err(|e| format!("nib bench: {e}"))?;
    if !native.status.success() {
        return Err(format!("nib bench failed: {}", String::from_utf8_lossy(&native.stderr)));
    }
    let json: serde_json::Value = serde_json::from_slice(&native.stdout).map_err(|e| format!("nib bench output: {e}"))?;
    let decode = json["decode_tok_s"].as_f64().ok_or("nib bench gave no decode_tok_s")?;
    eprintln!("xtask: nib native, 1 thread: decode {decode:.1} tok/s");
    run_cmd(Command::new("node").arg("bench/run.mjs").arg(&dir).arg(format!("{decode}")).arg(runs.to_string()).current_dir(root().join("web")))
}
