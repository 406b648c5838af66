//! `cargo xtask bench`: nib's CPU backend beside llama.cpp (through llama-cpp-python) on the same
//! model, the same prompt tokens and the same thread counts, in one run. Prints the medians as a
//! table with the ratios nib / llama.cpp, and the command that reproduces it.
//! `cargo xtask bench --backend gpu` times nib's GPU backend, naming the adapter.

use std::process::Command;

use serde_json::Value;

use crate::setup::{self, MODEL_PATH};
use crate::{cargo, describe, root, run_cmd};

/// The prompt both engines tokenize: real code, repeated to the requested length.
const PROMPT_FILE: &str = "engine/src/arch/llama.rs";

struct Opts {
    runs: usize,
    threads: Vec<usize>,
    prompt_tokens: usize,
    gen_tokens: usize,
    /// `cpu` (beside llama.cpp) or `gpu` (nib's WebGPU backend, with its adapter named).
    backend: String,
    /// The GGUF both engines load (default: the default model).
    model: String,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts { runs: 5, threads: vec![1, 2], prompt_tokens: 512, gen_tokens: 128, backend: "cpu".into(), model: MODEL_PATH.into() };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        let num = |v: &String| v.parse::<usize>().map_err(|_| format!("{a} {v:?}: expected a number"));
        match a.as_str() {
            "--runs" => o.runs = num(value()?)?.max(1),
            "--prompt-tokens" => o.prompt_tokens = num(value()?)?,
            "--gen-tokens" => o.gen_tokens = num(value()?)?,
            "--model" => o.model = value()?.clone(),
            "--threads" => o.threads = value()?.split(',').map(|t| num(&t.to_string())).collect::<Result<_, _>>()?,
            "--backend" => match value()?.as_str() {
                b @ ("cpu" | "gpu") => o.backend = b.to_string(),
                other => return Err(format!("--backend {other:?}: expected cpu or gpu")),
            },
            _ => return Err(format!("unknown bench option {a}")),
        }
    }
    Ok(o)
}

fn json_of(cmd: &mut Command) -> Result<Value, String> {
    cmd.current_dir(root());
    eprintln!("xtask: $ {}", describe(cmd));
    let out = cmd.output().map_err(|e| format!("cannot start {}: {e}", describe(cmd)))?;
    if !out.status.success() {
        return Err(format!("{} failed: {}", describe(cmd), String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{}: output is not JSON: {e}", describe(cmd)))
}

fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

pub fn run(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    setup::run()?;
    if o.backend == "gpu" {
        return gpu(&o, args);
    }
    setup::require_llama_cpp()?;
    run_cmd(cargo().args(["build", "--release", "-p", "nib-cli"]))?;
    let nib = root().join("target/release/nib");
    let common = |c: &mut Command, t: usize| {
        c.args(["--threads", &t.to_string(), "--runs", &o.runs.to_string()])
            .args(["--prompt-tokens", &o.prompt_tokens.to_string(), "--gen-tokens", &o.gen_tokens.to_string()])
            .args(["--model", &o.model, "--prompt-file", PROMPT_FILE]);
    };
    let mut rows = Vec::new();
    for &t in &o.threads {
        let mut c = Command::new(&nib);
        c.arg("bench").args(["--backend", "cpu"]);
        common(&mut c, t);
        let n = json_of(&mut c)?;
        let mut c = Command::new(setup::python());
        c.arg("xtask/llama_bench.py");
        common(&mut c, t);
        let l = json_of(&mut c)?;
        rows.push((t, n, l));
    }
    println!();
    println!("nib CPU vs llama.cpp (llama-cpp-python 0.3.36) on {} — {} prompt tokens, {} greedy tokens after it, median of {} runs", o.model, o.prompt_tokens, o.gen_tokens, o.runs);
    println!();
    println!("| threads | prefill nib tok/s | prefill llama.cpp tok/s | ratio | decode nib tok/s | decode llama.cpp tok/s | ratio |");
    println!("|---|---|---|---|---|---|---|");
    for (t, n, l) in &rows {
        let (np, lp, nd, ld) = (num(n, "prefill_tok_s"), num(l, "prefill_tok_s"), num(n, "decode_tok_s"), num(l, "decode_tok_s"));
        println!("| {t} | {np:.1} | {lp:.1} | {:.2}× | {nd:.1} | {ld:.1} | {:.2}× |", np / lp, nd / ld);
    }
    println!();
    println!("reproduce: cargo xtask bench{}", if args.is_empty() { String::new() } else { format!(" {}", args.join(" ")) });
    Ok(())
}

/// `--backend gpu`: nib's WebGPU backend alone (no peer runs natively on the same GPU API), with
/// the adapter named. On lavapipe the figures say nothing about a real GPU.
fn gpu(o: &Opts, args: &[String]) -> Result<(), String> {
    run_cmd(cargo().args(["build", "--release", "-p", "nib-cli"]))?;
    let mut c = Command::new(root().join("target/release/nib"));
    c.args(["bench", "--backend", "gpu", "--runs", &o.runs.to_string()])
        .args(["--prompt-tokens", &o.prompt_tokens.to_string(), "--gen-tokens", &o.gen_tokens.to_string()])
        .args(["--model", &o.model, "--prompt-file", PROMPT_FILE]);
    let r = json_of(&mut c)?;
    println!();
    println!("nib GPU — {} prompt tokens, {} greedy tokens after it, median of {} runs", o.prompt_tokens, o.gen_tokens, o.runs);
    println!();
    println!("| adapter | prefill tok/s | decode tok/s |");
    println!("|---|---|---|");
    println!("| {} | {:.1} | {:.1} |", r.get("adapter").and_then(Value::as_str).unwrap_or("?"), num(&r, "prefill_tok_s"), num(&r, "decode_tok_s"));
    println!();
    println!("reproduce: cargo xtask bench {}", args.join(" "));
    Ok(())
}
