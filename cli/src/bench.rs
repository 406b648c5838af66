//! `nib bench`: prefill and greedy decode speed on real code, medians over several runs.

use std::time::Instant;

use nib_engine::backend::Backend;
use nib_engine::sample::Sampler;
use nib_engine::{Error, Model};
use serde_json::{json, Value};

pub struct Options {
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub runs: usize,
    /// Text to build the prompt from instead of the built-in code.
    pub prompt_file: Option<String>,
}

/// Real code for the prompt: nib's own sources, repeated as needed.
const CODE: &[&str] = &[
    include_str!("../../engine/src/arch/llama.rs"),
    include_str!("../../engine/src/sample.rs"),
    include_str!("../../engine/src/backend/cpu/mod.rs"),
];

/// `n` prompt tokens: the text's tokens repeated, then cut (xtask/llama_bench.py does the same).
pub fn prompt<B: Backend>(model: &Model<B>, file: Option<&str>, n: usize) -> Result<Vec<u32>, Error> {
    let piece = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::InvalidArgument(format!("--prompt-file {path}: {e}")))?;
            model.tokenizer.encode(&text)?
        }
        None => CODE.iter().map(|text| model.tokenizer.encode(text)).collect::<Result<Vec<_>, _>>()?.concat(),
    };
    if piece.is_empty() {
        return Err(Error::InvalidArgument("the bench prompt has no tokens".into()));
    }
    let mut ids = Vec::with_capacity(n + piece.len());
    while ids.len() < n {
        ids.extend_from_slice(&piece);
    }
    ids.truncate(n);
    Ok(ids)
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub fn run<B: Backend>(model: &Model<B>, o: &Options) -> Result<Value, Error> {
    if o.prompt_tokens == 0 {
        return Err(Error::InvalidArgument("--prompt-tokens must be at least 1".into()));
    }
    // Checked before the prompt is built: a huge count would otherwise fill memory with tokens.
    let ctx_len = model.config().ctx_len;
    if o.prompt_tokens.saturating_add(o.gen_tokens) > ctx_len {
        return Err(Error::InvalidArgument(format!("--prompt-tokens {} + --gen-tokens {} do not fit the model's context of {ctx_len} tokens", o.prompt_tokens, o.gen_tokens)));
    }
    let ids = prompt(model, o.prompt_file.as_deref(), o.prompt_tokens)?;
    let ctx = o.prompt_tokens + o.gen_tokens + 1;
    // Warm-up: fault in the mapped weights and let the threads spin up.
    let mut s = model.session(ctx)?;
    model.eval(&mut s, &ids[..ids.len().min(16)])?;

    let (mut prefill, mut decode) = (Vec::new(), Vec::new());
    for _ in 0..o.runs {
        let mut s = model.session(ctx)?;
        let t0 = Instant::now();
        let mut logits = model.eval(&mut s, &ids)?;
        prefill.push(ids.len() as f64 / t0.elapsed().as_secs_f64());

        let mut sampler = Sampler::greedy();
        let mut seq = ids.clone();
        let t1 = Instant::now();
        for _ in 0..o.gen_tokens {
            seq.push(sampler.sample(&logits)?.id);
            logits = model.eval(&mut s, &seq)?;
        }
        if o.gen_tokens > 0 {
            decode.push(o.gen_tokens as f64 / t1.elapsed().as_secs_f64());
        }
    }
    Ok(json!({
        "backend": model.backend.name().split_whitespace().next().unwrap_or("cpu"),
        "adapter": model.backend.name(),
        "threads": model.backend.threads(),
        "prompt_tokens": o.prompt_tokens,
        "gen_tokens": o.gen_tokens,
        "runs": o.runs,
        "prefill_tok_s": median(&mut prefill.clone()),
        "decode_tok_s": median(&mut decode.clone()),
        "prefill_runs": prefill,
        "decode_runs": decode,
    }))
}
