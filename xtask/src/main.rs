//! `cargo xtask <command>`: the project's own build tool.
//!
//! - `setup`: installs what a fresh machine lacks and fetches the default model (idempotent).
//! - `test`: `setup`, then every test.
//! - `bench`: nib beside llama.cpp on the same model, prompt and thread counts; prints a table.
//! - `web`: builds the browser runtime (wasm + the npm package) into web/dist.
//! - `playground`: builds the playground and serves it on http://127.0.0.1:8080.
//! - `fixtures`: regenerates the llama.cpp reference fixtures in tests/fixtures/.

mod bench;
mod jupyterlab;
mod playground;
mod setup;
mod web;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask <setup|test|web|playground|bench|fixtures>
  setup                 install what is missing, fetch the default model into models/default/
  test                  setup, then run every test
  web                   build the browser runtime (wasm + npm package nib-complete) into web/dist
  playground [--build-only]
                        setup, build, and serve the playground on http://127.0.0.1:8080
  bench [--runs N] [--threads 1,2] [--prompt-tokens N] [--gen-tokens N] [--backend cpu|gpu]
                        nib CPU beside llama.cpp (llama-cpp-python), medians, as a table;
                        --backend gpu: nib's GPU backend with the adapter named
  bench --browser [--runs N]
                        nib CPU wasm and WebGPU beside wllama (1 and 2 threads) in headless
                        Chromium (load, first token, prefill 512, decode 128), medians, with
                        nib's native 1-thread decode
  bench --playground [--edits N] [--gpu-edits N] [--debounce MS]
                        keystroke -> first ghost text in the playground, p50/p95, debounce apart,
                        CPU (30 edits) and WebGPU (3 edits: SwiftShader here)
  fixtures              regenerate tests/fixtures/*.json with llama-cpp-python";

fn main() -> ExitCode {
    // Mesa's Vulkan drivers (the GPU tests) complain on stderr without it; CI machines lack it.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup::run(),
        Some("test") => setup::run().and_then(|()| test()),
        Some("web") => setup::run().and_then(|()| web::build()),
        Some("playground") => playground::run(&args[1..]),
        Some("bench") if args.iter().any(|a| a == "--playground") => playground::bench(&args[1..]),
        Some("bench") if args.iter().any(|a| a == "--browser") => web::bench_browser(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("fixtures") => fixtures(),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("xtask: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    dir.parent().unwrap_or(dir).to_path_buf()
}

/// Runs a command (in the workspace root unless it names a directory), failing with its
/// description if it fails.
pub fn run_cmd(cmd: &mut Command) -> Result<(), String> {
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(root());
    }
    eprintln!("xtask: $ {}", describe(cmd));
    let status = cmd.status().map_err(|e| format!("cannot start {}: {e}", describe(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed ({status})", describe(cmd)))
    }
}

pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(|s| s.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
}

pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// `node --test` with a timeout, so a hung browser test fails CI, naming its file, instead of
/// hanging it. Node 20 applies it to each test file as a whole (the file's process is killed), so
/// it is generous: 30 minutes. (Setup requires a Node that has the flag.)
pub fn node_test() -> Command {
    let mut cmd = Command::new("node");
    cmd.args(["--test", "--test-timeout=1800000"]);
    cmd
}

fn test() -> Result<(), String> {
    run_cmd(cargo().args(["test", "--release", "--workspace", "--all-targets"]))?;
    // The fuzz targets (their own workspace, run by hand: fuzz/README.md) still build against
    // the engine's API.
    run_cmd(cargo().args(["check", "--manifest-path", "fuzz/Cargo.toml", "--bins"]))?;
    // The browser target builds, with its wasm-only dependencies.
    run_cmd(cargo().args(["build", "--release", "--target", "wasm32-unknown-unknown", "-p", "nib-engine"]))?;
    // The simd128 kernels and the portable paths, run: the engine's tests under WASI in Node,
    // the golden test on the real model included.
    let runner = format!("node {}", root().join("xtask/wasi-run.mjs").display());
    let mut wasm = cargo();
    wasm.args(["test", "--release", "--target", "wasm32-wasip1", "-p", "nib-engine"]);
    for t in WASM_TESTS {
        wasm.args(["--test", t]);
    }
    run_cmd(wasm.env("CARGO_TARGET_WASM32_WASIP1_RUNNER", &runner))?;
    // The kernels again as the browser's relaxed-simd module runs them (web::build), in their
    // own target dir (other rustflags; --config appends to .cargo/config.toml's).
    let relaxed = r#"target.wasm32-wasip1.rustflags=["-C", "target-feature=+relaxed-simd"]"#;
    let mut kernels = cargo();
    kernels.args(["test", "--release", "--target", "wasm32-wasip1", "-p", "nib-engine", "--test", "kernels"]);
    // NIB_EXPECT_RELAXED_SIMD: the kernels test fails unless relaxed-simd was compiled in.
    kernels.args(["--target-dir", "target/relaxed", "--config", relaxed]).env("NIB_EXPECT_RELAXED_SIMD", "1");
    run_cmd(kernels.env("CARGO_TARGET_WASM32_WASIP1_RUNNER", &runner))?;
    // The browser runtime: built, then its JS unit tests and Chromium end-to-end tests.
    web::build()?;
    web::test()?;
    // The playground's editors with the real model in Chromium.
    playground::test()?;
    // The JupyterLab extension, built on web/dist, in a Jupyter server and Chromium.
    jupyterlab::test()
}

/// Integration tests that also run as wasm (the rest read files through APIs WASI lacks, or
/// need native-only code).
const WASM_TESTS: &[&str] = &["kernels", "quant", "tokenizer", "golden", "session", "complete_rules", "qwen2", "starcoder", "deepseek", "gemma3"];

fn fixtures() -> Result<(), String> {
    setup::require_llama_cpp()?;
    for script in ["tests/fixtures/make_quant_fixtures.py", "tests/fixtures/make_token_fixtures.py", "tests/fixtures/make_logit_fixtures.py", "tests/fixtures/make_kquant_fixtures.py"] {
        run_cmd(Command::new(setup::python()).arg(script))?;
    }
    // Gemma 3 270M (models/gemma3/ from setup): its token ids and logits.
    run_cmd(Command::new(setup::python()).args(["tests/fixtures/make_token_fixtures.py", "--gemma3"]))?;
    run_cmd(Command::new(setup::python()).arg("tests/fixtures/make_gemma3_fixtures.py"))?;
    // The tiny qwen2 model (its tokenizer.json comes from setup) and llama.cpp's results for it.
    run_cmd(Command::new(setup::python()).args(["tests/fixtures/make_tiny_qwen2.py", "--fixtures"]))?;
    // The tiny starcoder2 and starcoder models (the default model's vocabulary) and their results.
    run_cmd(Command::new(setup::python()).args(["tests/fixtures/make_tiny_starcoder.py", "--fixtures"]))?;
    // The tiny DeepSeek-Coder-shaped llama model (linear RoPE ×4) and its results.
    run_cmd(Command::new(setup::python()).args(["tests/fixtures/make_tiny_deepseek.py", "--fixtures"]))
}
