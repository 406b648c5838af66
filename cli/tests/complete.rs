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

/// The same pipeline on the GPU backend (lavapipe in CI): a short, clear completion agrees.
#[test]
fn complete_runs_on_the_gpu_backend() {
    let (p, s) = files("gpu", "def mean(xs):\n    total = 0\n    for x in xs:\n        ", "\n    return total / len(xs)\n");
    let m = model();
    let out = nib(&["complete", "--model", &m, "--backend", "gpu", "--prefix-file", p.to_str().unwrap(), "--suffix-file", s.to_str().unwrap(), "--language", "python"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["candidates"][0]["text"], "total += x", "{v}");
    assert_eq!(v["timings"]["prompt_tokens"], 17);
    // Two sampled candidates decoded together on the GPU (forked KV caches), in line mode.
    let out = nib(&["complete", "--model", &m, "--backend", "gpu", "--prefix-file", p.to_str().unwrap(), "--mode", "line", "--n", "2", "--seed", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = v["candidates"].as_array().unwrap();
    assert!(!c.is_empty() && c.len() <= 2, "{v}");
    assert!(c.iter().all(|c| c["mean_logprob"].as_f64().unwrap() < 0.0 && !c["text"].as_str().unwrap().contains('\n')), "{v}");
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

/// Qwen2.5-Coder's FIM prompt, on the tiny random-weight qwen2 model with the real vocabulary
/// (`cargo xtask setup` makes it): `nib complete --show-prompt` reports the ids the model saw,
/// which must be `<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>` exactly as
/// llama.cpp tokenizes that documented form (tests/fixtures/qwen2_tiny.json), on both backends.
#[test]
fn complete_builds_the_documented_qwen_fim_prompt() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let m = root.join("target/xtask/qwen2/tiny-qwen2.gguf");
    assert!(m.is_file(), "{} is missing: run `cargo xtask setup` first", m.display());
    let fx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root.join("tests/fixtures/qwen2_tiny.json")).unwrap()).unwrap();
    for (i, case) in fx["fim"].as_array().unwrap().iter().enumerate() {
        let (p, s) = files(&format!("qwen{i}"), case["prefix"].as_str().unwrap(), case["suffix"].as_str().unwrap());
        let want = &case["ids"];
        assert_eq!(want[0], 151659, "<|fim_prefix|> first");
        for backend in ["cpu", "gpu"] {
            let out = nib(&["complete", "--model", m.to_str().unwrap(), "--backend", backend, "--prefix-file", p.to_str().unwrap(), "--suffix-file", s.to_str().unwrap(), "--max-tokens", "2", "--show-prompt"]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(&v["prompt_ids"], want, "case {i} on {backend}");
            assert_eq!(v["timings"]["prompt_tokens"], want.as_array().unwrap().len(), "case {i} on {backend}");
        }
    }
}

/// DeepSeek-Coder's FIM prompt, on the tiny DeepSeek-Coder-shaped llama model (`cargo xtask
/// setup` makes it): `BOS <｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>` exactly as
/// llama.cpp tokenizes that documented form (tests/fixtures/deepseek_coder_tiny.json).
#[test]
fn complete_builds_the_documented_deepseek_fim_prompt() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let m = root.join("target/xtask/deepseek/tiny-deepseek-coder.gguf");
    assert!(m.is_file(), "{} is missing: run `cargo xtask setup` first", m.display());
    let fx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root.join("tests/fixtures/deepseek_coder_tiny.json")).unwrap()).unwrap();
    for (i, case) in fx["fim"].as_array().unwrap().iter().enumerate() {
        let (p, s) = files(&format!("deepseek{i}"), case["prefix"].as_str().unwrap(), case["suffix"].as_str().unwrap());
        let want = &case["ids"];
        assert_eq!((&want[0], &want[1]), (&serde_json::json!(49152), &serde_json::json!(49155)), "BOS, then <｜fim▁begin｜>");
        let out = nib(&["complete", "--model", m.to_str().unwrap(), "--backend", "cpu", "--prefix-file", p.to_str().unwrap(), "--suffix-file", s.to_str().unwrap(), "--max-tokens", "2", "--show-prompt"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(&v["prompt_ids"], want, "case {i}");
    }
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

fn eval_data() -> String {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/eval");
    assert!(data.join("HumanEval.jsonl.gz").is_file(), "{} is missing", data.display());
    data.to_string_lossy().into_owned()
}

fn token_ids(text: &str) -> serde_json::Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nib"))
        .args(["tokenize", "--model", &model(), "--threads", "1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["ids"].clone()
}

#[test]
fn eval_dump_prompts_gives_the_prefix_only_prompt_ids() {
    let out = nib(&["eval", "humaneval", "--model", &model(), "--threads", "1", "--limit", "2", "--dump-prompts", "--data", &eval_data()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = v["prompts"].as_array().unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(p[1]["task_id"], "HumanEval/1");
    assert_eq!(p[0]["max_tokens"], 300);
    // No FIM template on the default model: the prompt is the task's text, tokenized.
    let prompt = "from typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n    \"\"\" Check if in given list of numbers, are any two numbers closer to each other than\n    given threshold.\n    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)\n    False\n    >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)\n    True\n    \"\"\"\n";
    assert_eq!(p[0]["ids"], token_ids(prompt));
}

#[test]
fn eval_replay_runs_given_tokens_through_the_rules_and_executes_them() {
    let dir = std::env::temp_dir().join(format!("nib-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let body = "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for j, b in enumerate(numbers) if i != j)";
    let cases = [
        // A correct body, then a blank-line run and a new function: the rules keep the body.
        (format!("{body}\n\n\ndef main():\n    pass\n"), body, true),
        // What the instruct model writes after a docstring: a fence, then prose.
        ("```\n\nThe function takes a list of numbers.".to_string(), "", false),
    ];
    for (i, (generated, want, passes)) in cases.iter().enumerate() {
        let file = dir.join(format!("ids{i}.json"));
        let replay = serde_json::json!({ "completions": [{ "task_id": "HumanEval/0", "ids": token_ids(generated) }] });
        std::fs::write(&file, replay.to_string()).unwrap();
        let out = nib(&["eval", "humaneval", "--model", &model(), "--threads", "1", "--limit", "1", "--replay", file.to_str().unwrap(), "--data", &eval_data()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["replayed"], true);
        assert_eq!(v["per_task"][0]["samples"][0]["text"], *want);
        assert_eq!(v["per_task"][0]["samples"][0]["passed"], *passes);
        assert_eq!(v["pass@1"], if *passes { 1.0 } else { 0.0 });
    }
    assert_eq!(nib(&["eval", "humaneval", "--model", &model(), "--limit", "1", "--n-samples", "2", "--replay", "x.json", "--data", &eval_data()]).status.code(), Some(1));
    let missing = dir.join("missing.json");
    std::fs::write(&missing, r#"{"completions":[]}"#).unwrap();
    let out = nib(&["eval", "humaneval", "--model", &model(), "--limit", "1", "--replay", missing.to_str().unwrap(), "--data", &eval_data()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HumanEval/0"));
}

#[test]
fn bench_complete_reuses_the_kv_cache_after_a_one_character_edit() {
    let out = nib(&["bench-complete", "--model", &model(), "--threads", "1", "--runs", "2", "--prefix-tokens", "200"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["edit"]["requests"], 2);
    assert_eq!(v["cold"]["requests"], 2);
    let prompt = v["cold"]["prompt_tokens_p50"].as_f64().unwrap();
    assert!(prompt >= 200.0, "{v}");
    // Cold: every request evaluates its whole prompt.
    assert_eq!(v["cold"]["evaluated_tokens_p50"].as_f64().unwrap(), prompt);
    assert!(v["edit"]["evaluated_tokens_max"].as_f64().unwrap() <= 3.0, "{v}");
    assert!(v["edit"]["p50_ms"].as_f64().unwrap() > 0.0);
}
