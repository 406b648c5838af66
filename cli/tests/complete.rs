//! `nib complete` and `nib eval`: JSON on stdout, usage errors with exit 2, engine errors as one
//! line with exit 1 (target.md, "CLI").

use std::path::PathBuf;
use std::process::{Command, Output};

fn model() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/default/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.is_file(), "{} is missing: run `cargo xtask setup` first", p.display());
    p.to_string_lossy().into_owned()
}

fn nib(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nib")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn files(tag: &str, prefix: &str, suffix: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("nib-complete-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (p, s) = (dir.join("prefix.py"), dir.join("suffix.py"));
    std::fs::write(&p, prefix).unwrap();
    std::fs::write(&s, suffix).unwrap();
    (p, s)
}

#[test]
fn complete_prints_ranked_candidates_and_timings() {
    let (p, s) = files("ok", "def mean(xs):\n    total = 0\n    for x in xs:\n        ", "\n    return total / len(xs)\n");
    let m = model();
    let out = nib(&["complete", "--model", &m, "--threads", "1", "--prefix-file", p.to_str().unwrap(), "--suffix-file", s.to_str().unwrap(), "--language", "python"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["candidates"][0]["text"], "total += x");
    assert!(v["candidates"][0]["mean_logprob"].as_f64().unwrap() < 0.0);
    assert_eq!(v["timings"]["mode"], "block");
    assert_eq!(v["timings"]["prompt_tokens"], 17);
    // Forced line mode with two sampled candidates.
    let out = nib(&["complete", "--model", &m, "--threads", "1", "--prefix-file", p.to_str().unwrap(), "--mode", "line", "--n", "2", "--seed", "3"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = v["candidates"].as_array().unwrap();
    assert!(!c.is_empty() && c.len() <= 2);
    assert!(c.iter().all(|c| !c["text"].as_str().unwrap().contains('\n')));
}

#[test]
fn complete_usage_and_file_errors() {
    let (p, _) = files("err", "x = ", "");
    let m = model();
    for args in [vec!["complete"], vec!["complete", "--prefix-file", p.to_str().unwrap(), "--mode", "word"], vec!["complete", "--prefix-file", p.to_str().unwrap(), "--n", "0"], vec!["eval", "mbpp"]] {
        let out = nib(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout.is_empty());
    }
    let out = nib(&["complete", "--model", &m, "--prefix-file", "/nonexistent/prefix.py"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/prefix.py"));
}

#[test]
fn eval_runs_a_humaneval_task_and_reports_pass_at_1() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/eval");
    assert!(data.join("HumanEval.jsonl.gz").is_file(), "{} is missing", data.display());
    let out = nib(&["eval", "humaneval", "--model", &model(), "--threads", "1", "--limit", "1", "--max-tokens", "32", "--data", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tasks"], 1);
    let p = v["pass@1"].as_f64().unwrap();
    assert!(p == 0.0 || p == 1.0);
    assert_eq!(v["per_task"][0]["task_id"], "HumanEval/0");
}
