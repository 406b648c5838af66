//! The `nib` binary's contract: one JSON object on stdout, or one line on stderr and a non-zero
//! exit (target.md, "CLI").

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn model() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/default/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.is_file(), "{} is missing: run `cargo xtask setup` first", p.display());
    p
}

fn nib(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nib"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // nib may exit (on a bad model) before it reads stdin.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "nib failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A failure: non-zero exit, nothing on stdout, exactly one line on stderr that contains `needle`.
fn assert_one_line_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(out.stdout.is_empty());
    assert_eq!(err.trim_end().lines().count(), 1, "stderr: {err}");
    assert!(err.contains(needle), "stderr {err:?} lacks {needle:?}");
}

#[test]
fn bad_model_files_give_one_clear_line() {
    let dir = std::env::temp_dir().join(format!("nib-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.join("notes.gguf");
    std::fs::write(&text, b"this is not a model file, just some text\n").unwrap();
    let truncated = dir.join("truncated.gguf");
    let head = std::fs::read(model()).unwrap()[..4096].to_vec();
    std::fs::write(&truncated, head).unwrap();

    let missing = dir.join("missing.gguf");
    for (path, needle) in [(&missing, "not found"), (&empty, "GGUF"), (&text, "GGUF"), (&truncated, "GGUF")] {
        let out = nib(&["tokenize", "--model", path.to_str().unwrap()], "x");
        assert_one_line_error(&out, needle);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bench_longer_than_the_context_is_one_clear_line() {
    let m = model();
    let m = m.to_str().unwrap();
    // usize::MAX tokens: refused before any is made (it once filled memory with them).
    for prompt in ["18446744073709551615", "8192"] {
        let out = nib(&["bench", "--model", m, "--prompt-tokens", prompt, "--gen-tokens", "2", "--runs", "1"], "");
        assert_one_line_error(&out, "context");
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [&["frobnicate"][..], &["generate", "--max-tokens", "lots"], &["tokenize", "--bogus", "1"], &[]] {
        let out = nib(args, "");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn tokenize_logits_generate_follow_the_contract() {
    let m = model();
    let m = m.to_str().unwrap();
    let ids = json(&nib(&["tokenize", "--model", m], "def add(a, b):\n    return a + b\n"));
    let ids: Vec<u64> = ids["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(ids.len() > 5 && ids.iter().all(|&id| id < 49152), "{ids:?}");

    let out = json(&nib(&["logits", "--model", m, "--top", "5", "--threads", "1"], "def add(a, b):\n"));
    let top = out["top"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    let logits: Vec<f64> = top.iter().map(|p| p[1].as_f64().unwrap()).collect();
    assert!(logits.windows(2).all(|w| w[0] >= w[1]), "highest first: {logits:?}");

    let out = json(&nib(&["generate", "--model", m, "--max-tokens", "8"], "def add(a, b):\n"));
    let text = out["text"].as_str().unwrap();
    assert!(out["ids"].as_array().unwrap().len() <= 8);
    assert!(!text.is_empty(), "greedy continuation of {ids:?} is empty");
    // The same seed repeats; sampling parameters out of range are errors, not panics.
    let a = json(&nib(&["generate", "--model", m, "--max-tokens", "6", "--temperature", "0.8", "--seed", "4"], "x = "));
    let b = json(&nib(&["generate", "--model", m, "--max-tokens", "6", "--temperature", "0.8", "--seed", "4"], "x = "));
    assert_eq!(a["ids"], b["ids"]);
    assert_one_line_error(&nib(&["generate", "--model", m, "--max-tokens", "4", "--top-p", "0"], "x"), "top-p");
    assert_eq!(nib(&["generate", "--model", m, "--max-tokens", "4", "--backend", "tpu"], "x").status.code(), Some(2));
}

#[test]
fn invalid_utf8_on_stdin_is_an_error() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nib"))
        .args(["tokenize", "--model", model().to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"ok \xff\xfe bad").unwrap();
    assert_one_line_error(&child.wait_with_output().unwrap(), "UTF-8");
}

#[test]
fn gpu_backend_generates_and_benches() {
    // lavapipe in CI: slow but real (setup installs it).
    let m = model();
    let m = m.to_str().unwrap();
    let out = json(&nib(&["generate", "--model", m, "--backend", "gpu", "--max-tokens", "3"], "def add(a, b):\n"));
    assert!(!out["ids"].as_array().unwrap().is_empty());
    let b = json(&nib(&["bench", "--model", m, "--backend", "gpu", "--prompt-tokens", "8", "--gen-tokens", "2", "--runs", "1"], ""));
    assert_eq!(b["backend"], "gpu");
    assert!(b["adapter"].as_str().unwrap().contains("gpu"), "{b}");
    assert!(b["decode_tok_s"].as_f64().unwrap() > 0.0);
}
