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

/// Unit tests (Node) and browser tests (Chromium), after `build`.
pub fn test() -> Result<(), String> {
    let web = root().join("web");
    run_cmd(Command::new("node").args(["--test", "test/unit/"]).current_dir(&web))?;
    run_cmd(Command::new("node").args(["--test", "--test-concurrency=1", "test/browser/"]).current_dir(&web))
}
