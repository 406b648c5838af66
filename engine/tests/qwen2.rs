//! The `qwen2` architecture (Qwen2.5-Coder) on a tiny random-weight model with the real
//! Qwen2.5-Coder vocabulary, against llama.cpp and across the backends.
//!
//! `cargo xtask setup` writes the model (target/xtask/qwen2/tiny-qwen2.gguf) with
//! tests/fixtures/make_tiny_qwen2.py and checks it is the file whose llama.cpp results
//! tests/fixtures/qwen2_tiny.json holds: 3 layers, 14 query / 2 KV heads, q/k/v biases, NEOX RoPE
//! at θ = 1e6, tied embeddings over 151,936 tokens, Q4_0 and Q8_0 layers and one whose q/k/v
//! formats differ (so the GPU runs both its stacked and its apart q/k/v paths).
//! - tokenizer: llama.cpp's ids for 104 strings (the default model's test set), special-token
//!   strings and the documented FIM prompts;
//! - CPU (default arithmetic) logits and greedy continuations against llama.cpp, held as the
//!   default model is (tests/common/golden.rs);
//! - GPU (lavapipe) against the CPU reference: logits within 1e-2 over the whole vocabulary, same
//!   top-1, identical greedy continuations (through the pipelined GPU decode); the biases of
//!   stacked q/k/v cost no dispatch;
//! - FIM: the completer builds `<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>`
//!   exactly as llama.cpp tokenizes it (the CLI's prompt is checked in cli/tests/complete.rs).
//!
//! All but the GPU tests also run as wasm32-wasip1 (`cargo xtask test`): the simd128 kernels on
//! qwen2, as the browser's CPU path runs it.

mod common;
use common::ids;

use nib_engine::backend::cpu::{CpuBackend, Precision};
use nib_engine::complete::{Completer, CompleterConfig, Family, Request};
use nib_engine::gguf::{Gguf, ModelBytes};
use nib_engine::{Error, Model};

fn cpu_model(precision: Precision) -> Model<CpuBackend> {
    Model::open_cpu_with(&common::tiny_qwen2(), 2, precision).unwrap()
}

#[test]
fn config_is_read_from_qwen2_metadata() {
    let m = cpu_model(Precision::Ggml);
    let c = m.config();
    assert_eq!((c.n_layers, c.dim, c.ffn_dim, c.vocab), (3, 224, 608, 151_936));
    assert_eq!((c.attn.n_heads, c.attn.n_kv_heads, c.attn.head_dim), (14, 2, 16));
    assert!(c.rope.neox, "qwen2 rotates (i, i + d/2) pairs");
    assert_eq!((c.rope.theta, c.rope.dims, c.ctx_len), (1e6, 16, 32768));
    assert_eq!(c.eps, 1e-6);
    assert_eq!(m.tokenizer.vocab_size(), 151_936);
}

/// The same file with `general.architecture` renamed: a typed error, whichever name.
#[test]
fn other_architectures_are_typed_errors() {
    let bytes = std::fs::read(common::tiny_qwen2()).unwrap();
    // "qwen2" is 5 bytes: rename it in place (the value and every `qwen2.*` key) to "qwen9".
    let renamed = common::replace_all(&bytes, b"qwen2", b"qwen9");
    let err = Model::load_cpu(ModelBytes::Owned(renamed), 1).err().expect("an unknown architecture loads");
    assert!(matches!(&err, Error::Unsupported(m) if m.contains("qwen9")), "{err:?}");
    // Metadata that says qwen2 while the keys are another architecture's: a typed error too.
    let g = Gguf::parse(&bytes).unwrap();
    assert!(nib_engine::arch::llama::Config::from_gguf(&g).is_err());
}

#[test]
fn tokenizer_ids_match_llama_cpp() {
    let m = cpu_model(Precision::Ggml);
    let fx = common::fixture("qwen2_tiny.json");
    let tok = &m.tokenizer;
    let mut bad = common::token_mismatches(tok, &fx);
    bad.extend(common::special_mismatches(tok, &fx, ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"]));
    assert!(bad.is_empty(), "{} mismatches:\n{}", bad.len(), bad.join("\n"));
    // The Qwen2.5-Coder specials, by spelling and id (the FIM ones are control tokens).
    for (s, id) in [("<|endoftext|>", 151643), ("<|fim_prefix|>", 151659), ("<|fim_middle|>", 151660), ("<|fim_suffix|>", 151661), ("<|fim_pad|>", 151662), ("<|repo_name|>", 151663), ("<|file_sep|>", 151664)] {
        assert_eq!(tok.token_id(s), Some(id), "{s}");
        assert!(tok.is_special(id), "{s} is special");
    }
    assert!(tok.end_of_generation().contains(&151643));
}

#[test]
fn cpu_logits_and_greedy_match_llama_cpp() {
    let m = cpu_model(Precision::Ggml);
    let fx = common::fixture("qwen2_tiny.json");
    assert!(fx["cases"].as_array().unwrap().len() >= 8);
    common::golden::check(&m, fx["cases"].as_array().unwrap(), common::golden::Rules::All);
}

/// The completer detects Qwen2.5-Coder's FIM template from the vocabulary and builds the
/// documented prompt, id for id as llama.cpp tokenizes its spelled-out form.
#[test]
fn fim_prompt_is_the_documented_one() {
    let c = Completer::new(cpu_model(Precision::Ggml), CompleterConfig { cache_entries: 0, ..CompleterConfig::default() }).unwrap();
    let fim = c.format().fim().expect("FIM tokens detected");
    assert_eq!(fim.family, Family::QwenCoder);
    assert_eq!((fim.prefix, fim.suffix, fim.middle, fim.file_sep), (151659, 151661, 151660, Some(151664)));
    for s in [151643, 151645, 151659, 151660, 151661, 151662, 151663, 151664] {
        assert!(c.format().stop_ids().contains(&s), "{s} ends a completion");
    }
    let fx = common::fixture("qwen2_tiny.json");
    for case in fx["fim"].as_array().unwrap() {
        let req = Request::new(case["prefix"].as_str().unwrap(), case["suffix"].as_str().unwrap());
        assert_eq!(c.prompt(&req).unwrap().ids, ids(&case["ids"]));
    }
}

/// The GPU backend (lavapipe where there is no GPU; WASI has none).
#[cfg(not(target_os = "wasi"))]
mod on_gpu {
    use super::*;
    use nib_engine::backend::gpu;
    use nib_engine::backend::Backend;

    /// GPU logits against the CPU reference on every fixture prompt (within 1e-2, same top-1),
    /// and greedy continuations through the GPU's pipelined decode against the reference's.
    #[test]
    fn gpu_matches_the_cpu_reference() {
        common::gpu::matches_cpu_reference(&common::tiny_qwen2(), common::fixture("qwen2_tiny.json")["cases"].as_array().unwrap());
    }

    /// Stacked q/k/v get their biases inside rope_store, so a decode step costs the default
    /// model's 9 dispatches per layer; layer 2, whose q/k/v formats differ, is kept apart: 3
    /// matmuls and 3 add_bias where a stacked layer has one matmul (+5).
    #[test]
    fn gpu_decode_step_dispatches() {
        let g = gpu::open_model(&common::tiny_qwen2()).unwrap();
        let b = &g.backend;
        let prompt = g.tokenizer.encode("def f(x):\n    ").unwrap();
        let mut cache = b.new_cache(g.config().n_layers, 32, g.config().attn).unwrap();
        let logits = g.arch.forward(b, &mut cache, &prompt, 0, false).unwrap();
        let next = b.argmax(&logits).unwrap().unwrap();
        b.reset_stats();
        let logits = g.arch.forward(b, &mut cache, &[next], prompt.len(), false).unwrap();
        b.argmax(&logits).unwrap();
        // embed + first norm, 9 per layer, +5 for the apart layer, logits + argmax (2 passes).
        assert_eq!(b.stats().dispatches, 2 + 9 * 3 + 5 + 3);
    }
}
