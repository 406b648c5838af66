//! The browser runtime: `cargo xtask web` builds it (nib-wasm for wasm32 with the `wasm`
//! profile, wasm-bindgen into web/dist/wasm, tsc into web/dist), and `test` runs the
//! package's unit tests in Node and its end-to-end tests in headless Chromium.

use std::process::Command;

use crate::{cargo, node_test, root, run_cmd};

/// The wasm-bindgen CLI must be the crate's exact version (wasm/Cargo.toml pins it).
pub const WASM_BINDGEN_VERSION: &str = "0.2.130";

/// Two builds of nib-wasm from the same code: nib_wasm_bg.wasm with relaxed-simd (browsers that
/// have it: faster 4-bit matmuls, the same results) and nib_wasm_simd128_bg.wasm with SIMD128
/// alone; the worker picks one. The relaxed build has its own target dir (other rustflags).
pub fn build() -> Result<(), String> {
    let bindgen = |wasm: &str, out: &std::path::Path| {
        // No wasm-opt: Debian's binaryen breaks this module, and the npm one is not worth its
        // download for the few percent it saves (README, "Browser runtime").
        run_cmd(Command::new("wasm-bindgen").args(["--target", "web", "--out-dir"]).arg(out).arg(root().join(wasm)))
    };
    let wasm_build = || {
        let mut c = cargo();
        c.args(["build", "--profile", "wasm", "--target", "wasm32-unknown-unknown", "-p", "nib-wasm"]);
        c
    };
    run_cmd(&mut wasm_build())?;
    let plain = root().join("target/xtask/wasm-simd128");
    bindgen("target/wasm32-unknown-unknown/wasm/nib_wasm.wasm", &plain)?;
    // --config arrays append to .cargo/config.toml's rustflags (+simd128 and the getrandom cfg).
    run_cmd(wasm_build().args(["--target-dir", "target/relaxed", "--config", r#"target.wasm32-unknown-unknown.rustflags=["-C", "target-feature=+relaxed-simd"]"#]))?;
    let out = root().join("web/dist/wasm");
    bindgen("target/relaxed/wasm32-unknown-unknown/wasm/nib_wasm.wasm", &out)?;
    // The worker loads either module through the one glue: it must be the same for both.
    let read = |p: std::path::PathBuf| std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()));
    if read(plain.join("nib_wasm.js"))? != read(out.join("nib_wasm.js"))? {
        return Err("wasm-bindgen glue differs between the simd128 and relaxed-simd builds".into());
    }
    let simd128 = out.join("nib_wasm_simd128_bg.wasm");
    std::fs::copy(plain.join("nib_wasm_bg.wasm"), &simd128).map_err(|e| format!("{}: {e}", simd128.display()))?;
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
    run_cmd(node_test().arg("test/unit/").current_dir(&web))?;
    run_cmd(node_test().args(["--test-concurrency=1", "test/browser/"]).current_dir(&web))
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
