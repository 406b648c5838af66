//! DeepSeek-Coder's traits on the `llama` architecture — linear RoPE scaling ×4 at θ = 100000,
//! the `deepseek-coder` pre-tokenizer, BOS added, FIM specials with full-width bars — on a tiny
//! random-weight model with a 49,152-token BPE vocabulary, against llama.cpp and across the
//! backends.
//!
//! `cargo xtask setup` writes the model (target/xtask/deepseek/tiny-deepseek-coder.gguf) with
//! tests/fixtures/make_tiny_deepseek.py and checks it is the file whose llama.cpp results
//! tests/fixtures/deepseek_coder_tiny.json holds. Checked: the config (the scaling read as
//! freq_scale 1/4); llama.cpp's token ids (digits, CJK, the specials); CPU logits and greedy
//! continuations (tests/common/golden.rs); that the same file with factor 1 gives other logits,
//! in llama.cpp and in nib alike (so the scaling is what the golden test measures); the FIM
//! prompt the completer builds; GPU (lavapipe) against the CPU reference on a few prompts.

mod common;
use common::ids;

use std::sync::Arc;

use nib_engine::backend::cpu::{CpuBackend, Precision};
use nib_engine::complete::{Completer, CompleterConfig, Family, Request};
use nib_engine::gguf::{Gguf, ModelBytes};
use nib_engine::sample::top_k;
use nib_engine::Model;
use serde_json::Value;

const FIXTURE: &str = "deepseek_coder_tiny.json";
const BOS: &str = "<｜begin▁of▁sentence｜>";
const EOS: &str = "<｜end▁of▁sentence｜>";
/// DeepSeek-Coder's FIM markers in prompt order (prefix, suffix, middle).
const FIM: [&str; 3] = ["<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"];

fn top(v: &Value) -> Vec<(u32, f32)> {
    v.as_array().unwrap().iter().map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_f64().unwrap() as f32)).collect()
}

fn cpu_model() -> Model<CpuBackend> {
    Model::open_cpu_with(&common::tiny_deepseek(), 2, Precision::Ggml).unwrap()
}

/// The model's bytes with `llama.rope.scaling.factor` (an f32 value) set to `factor`.
fn with_scaling_factor(factor: f32) -> Vec<u8> {
    let mut bytes = std::fs::read(common::tiny_deepseek()).unwrap();
    let key = b"llama.rope.scaling.factor";
    let at = bytes.windows(key.len()).position(|w| w == key).expect("the key is in the file") + key.len();
    assert_eq!(bytes[at..at + 4], 6u32.to_le_bytes(), "an f32 value (GGUF type 6)");
    assert_eq!(bytes[at + 4..at + 8], 4f32.to_le_bytes());
    bytes[at + 4..at + 8].copy_from_slice(&factor.to_le_bytes());
    bytes
}

#[test]
fn config_reads_the_linear_rope_scaling() {
    let m = cpu_model();
    let c = m.config();
    assert_eq!((c.n_layers, c.dim, c.ffn_dim, c.vocab, c.ctx_len), (3, 256, 1024, 49_157, 16_384));
    assert_eq!((c.attn.n_heads, c.attn.n_kv_heads, c.attn.head_dim), (8, 8, 32));
    assert!(!c.rope.neox, "llama rotates adjacent pairs");
    assert_eq!((c.rope.theta, c.rope.dims, c.rope.freq_scale, c.eps), (100_000.0, 32, 0.25, 1e-6));
    let tok = &m.tokenizer;
    assert!(tok.add_bos());
    assert_eq!(tok.bos(), tok.token_id(BOS));
    assert_eq!(tok.token_id(BOS), Some(49_152));
    assert_eq!(tok.token_id(EOS), Some(49_153));
}

#[test]
fn tokenizer_ids_match_llama_cpp() {
    let m = cpu_model();
    let fx = common::fixture(FIXTURE);
    let tok = &m.tokenizer;
    let mut bad = common::token_mismatches(tok, &fx);
    bad.extend(common::special_mismatches(tok, &fx, FIM));
    assert!(bad.is_empty(), "{} mismatches:\n{}", bad.len(), bad.join("\n"));
    for s in FIM.iter().chain([&BOS, &EOS]) {
        let id = tok.token_id(s).unwrap_or_else(|| panic!("{s} is in the vocabulary"));
        assert!(tok.is_special(id), "{s} is special");
    }
}

#[test]
fn cpu_logits_and_greedy_match_llama_cpp() {
    let m = cpu_model();
    let fx = common::fixture(FIXTURE);
    assert!(fx["cases"].as_array().unwrap().len() >= 8);
    common::golden::check(&m, fx["cases"].as_array().unwrap(), common::golden::Rules::All);
}

/// The test above can fail: with the scaling factor 1 llama.cpp's logits are others (top-1
/// changes on most prompts), nib's logits for that file follow llama.cpp's unscaled ones, and
/// stand far (> 1) from the scaled ones the golden test holds nib to.
#[test]
fn ignoring_the_scaling_gives_other_logits() {
    let fx = common::fixture(FIXTURE);
    let cases = fx["cases"].as_array().unwrap();
    let unscaled_tops = fx["unscaled"]["top"].as_array().unwrap();
    assert_eq!(unscaled_tops.len(), cases.len());
    let bytes = Arc::new(ModelBytes::Owned(with_scaling_factor(1.0)));
    let gguf = Gguf::parse(&bytes).unwrap();
    let m = Model::new(CpuBackend::with_precision(Arc::clone(&bytes), 2, Precision::Ggml), &gguf).unwrap();
    assert_eq!(m.config().rope.freq_scale, 1.0);
    let (mut top1_moved, mut far, mut worst_unscaled) = (0, 0, 0f32);
    for (case, unscaled) in cases.iter().zip(unscaled_tops) {
        let (scaled, unscaled) = (top(&case["top"]), top(unscaled));
        if scaled[0].0 != unscaled[0].0 {
            top1_moved += 1;
        }
        let prompt = ids(&case["ids"]);
        let logits = m.eval(&mut m.session(prompt.len() + 1).unwrap(), &prompt).unwrap();
        // Against llama.cpp's scaled logits (what the golden test compares): far off.
        let off = scaled.iter().map(|(id, l)| (logits[*id as usize] - l).abs()).fold(0f32, f32::max);
        if off > 1.0 {
            far += 1;
        }
        // Against llama.cpp's unscaled logits of the same file: its own tolerance.
        let near = unscaled.iter().map(|(id, l)| (logits[*id as usize] - l).abs()).fold(0f32, f32::max);
        worst_unscaled = worst_unscaled.max(near);
        println!("max |Δlogit| over the top-20: {off:.2} against the scaled reference, {near:.3} against the unscaled one; top-1 {}", top_k(&logits, 1)[0].0);
    }
    assert!(top1_moved * 2 > cases.len(), "llama.cpp's top-1 moves on only {top1_moved} of {} prompts without the scaling", cases.len());
    assert!(far * 2 > cases.len(), "only {far} of {} prompts move by more than 1 without the scaling", cases.len());
    assert!(worst_unscaled < 0.5, "nib without the scaling is {worst_unscaled} off llama.cpp without it");
}

/// DeepSeek-Coder's documented FIM prompt, `<｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>`
/// after BOS, id for id as llama.cpp tokenizes its spelled-out form.
#[test]
fn fim_prompt() {
    let c = Completer::new(cpu_model(), CompleterConfig { cache_entries: 0, ..CompleterConfig::default() }).unwrap();
    let fim = c.format().fim().expect("FIM tokens detected");
    assert_eq!(fim.family, Family::DeepSeekCoder);
    assert_eq!((fim.prefix, fim.suffix, fim.middle), (49_155, 49_154, 49_156));
    assert!(c.format().stop_ids().contains(&49_153), "<｜end▁of▁sentence｜> ends a completion");
    let cases = common::fixture(FIXTURE)["fim"].as_array().unwrap().clone();
    assert!(!cases.is_empty());
    for case in cases {
        let req = Request::new(case["prefix"].as_str().unwrap(), case["suffix"].as_str().unwrap());
        let want = ids(&case["ids"]);
        assert_eq!(want[..2], [49_152, 49_155], "BOS, then <｜fim▁begin｜>");
        assert_eq!(c.prompt(&req).unwrap().ids, want);
    }
}

/// The GPU backend (lavapipe where there is no GPU; WASI has none), on three short prompts:
/// code, digits, and the FIM prompt.
#[cfg(not(target_os = "wasi"))]
#[test]
fn gpu_matches_the_cpu_reference() {
    let fx = common::fixture(FIXTURE);
    let cases = fx["cases"].as_array().unwrap();
    let picked: Vec<Value> = [0, 7, cases.len() - 1].iter().map(|&i| cases[i].clone()).collect();
    assert!(picked[1]["prompt"].as_str().unwrap().contains("1234567890"));
    assert_eq!(picked[2]["special"], true);
    common::gpu::matches_cpu_reference(&common::tiny_deepseek(), &picked);
}
