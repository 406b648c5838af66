//! The default model on one CPU thread, natively or as wasm32-wasip1 under Node (for a profile
//! of the simd128 path without a browser): a short prompt (first-token time), then a prefill of
//! `PROMPT` tokens of real code and `GEN` greedy tokens after it, as `nib bench` does.
//!
//! cargo run --release -p nib-engine --example model_bench [-- SHORT PROMPT GEN RUNS]
//! wasm: cargo build --release --target wasm32-wasip1 -p nib-engine --example model_bench, then
//! node [--cpu-prof] xtask/wasi-run.mjs target/wasm32-wasip1/release/examples/model_bench.wasm

use std::time::Instant;

use nib_engine::backend::Backend;
use nib_engine::sample::Sampler;
use nib_engine::Model;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let arg = |i: usize, default: usize| args.get(i).copied().unwrap_or(default);
    let (short, prompt, gen, runs) = (arg(0, 28), arg(1, 512), arg(2, 128), arg(3, 1));
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join("models/default/SmolLM2-135M-Instruct.Q4_1.gguf");
    let t = Instant::now();
    let model = Model::open_cpu(&path, 1).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let text = std::fs::read_to_string(root.join("engine/src/arch/llama.rs")).expect("engine/src/arch/llama.rs");
    let piece = model.tokenizer.encode(&text).expect("tokenize");
    let ids: Vec<u32> = piece.iter().copied().cycle().take(prompt.max(short)).collect();
    for run in 0..runs {
        let mut s = model.session(prompt + gen + 1).expect("session");
        let t = Instant::now();
        model.eval(&mut s, &ids[..short]).expect("eval");
        let short_ms = t.elapsed().as_secs_f64() * 1e3;

        let mut s = model.session(prompt + gen + 1).expect("session");
        let t = Instant::now();
        let mut logits = model.eval(&mut s, &ids[..prompt]).expect("eval");
        let prefill = prompt as f64 / t.elapsed().as_secs_f64();
        let mut seq = ids[..prompt].to_vec();
        let mut sampler = Sampler::greedy();
        let t = Instant::now();
        for _ in 0..gen {
            seq.push(sampler.sample(&logits).expect("sample").id);
            logits = model.eval(&mut s, &seq).expect("eval");
        }
        let decode = gen as f64 / t.elapsed().as_secs_f64();
        println!(
            "run {run}: load {load_ms:.0} ms, {short}-token prompt {short_ms:.1} ms, prefill {prompt} {prefill:.1} tok/s, decode {gen} {decode:.1} tok/s, {}",
            model.backend.name()
        );
    }
}
