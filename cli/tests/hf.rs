//! `--model DIR` with a Hugging Face checkpoint and `--quantize`: the tiny qwen2 checkpoint that
//! `cargo xtask setup` writes (tests/fixtures/make_tiny_hf.py) quantized on load gives the very
//! ids and logits of its gguf-py-quantized GGUF twin; misuse is one line on stderr.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn hf(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/xtask/hf").join(name);
    assert!(p.exists(), "{} is missing: run `cargo xtask setup` first", p.display());
    p.to_string_lossy().into_owned()
}

fn nib(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nib")).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

#[test]
fn checkpoint_directory_quantized_on_load_is_its_gguf_twin() {
    let prompt = "def fibonacci(n):\n    ";
    let run = |args: &[&str]| {
        let out = nib(args, prompt);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let (dir, twin) = (hf("qwen2"), hf("tiny-qwen2-q8_0.gguf"));
    let a = run(&["logits", "--model", &dir, "--quantize", "q8_0", "--backend", "cpu", "--top", "10"]);
    let b = run(&["logits", "--model", &twin, "--backend", "cpu", "--top", "10"]);
    assert_eq!(a, b);

    let out = nib(&["tokenize", "--model", &twin, "--quantize", "q8_0"], "x");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--quantize applies to a Hugging Face checkpoint directory"));
    assert_eq!(nib(&["tokenize", "--model", &dir, "--quantize", "q5_k"], "x").status.code(), Some(2));
    let out = nib(&["tokenize", "--model", &hf("")], "x");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a directory without config.json"));
}
