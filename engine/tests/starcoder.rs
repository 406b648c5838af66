//! The `starcoder2` and `starcoder` (GPTBigCode) architectures on tiny random-weight models with
//! a real 49,152-token BPE vocabulary, against llama.cpp and across the backends.
//!
//! `cargo xtask setup` writes the models (target/xtask/starcoder/) with
//! tests/fixtures/make_tiny_starcoder.py and checks each is the file whose llama.cpp results
//! tests/fixtures/{starcoder2,gpt_bigcode}_tiny.json hold:
//! - starcoder2: 3 layers, LayerNorm with biases, biases everywhere, GELU feed-forward, 8 query /
//!   2 KV heads with NEOX RoPE, an untied output, StarCoder's FIM specials (`<fim_prefix>` 1...);
//!   one layer's q/k/v formats differ (the GPU's apart q/k/v path);
//! - starcoder: learned positions, a fused `attn_qkv`, multi-query attention (1 KV head), tied
//!   output, SantaCoder's hyphenated FIM specials (`<fim-prefix>` 49152...), an F16 layer.
//!
//! For each: the config; the context (StarCoder2's sliding window; GPTBigCode's position
//! table as a clamp and a typed error); llama.cpp's token ids; CPU (default arithmetic) logits
//! and greedy continuations against llama.cpp (tests/common/golden.rs); the FIM template the
//! completer detects and the prompt ids it builds; GPU (lavapipe) against the CPU reference
//! (logits within 1e-2 over the vocabulary, same top-1, identical greedy continuations through
//! the GPU's pipelined decode).

mod common;
use common::ids;

use nib_engine::backend::cpu::{CpuBackend, Precision};
use nib_engine::backend::Backend;
use nib_engine::complete::{Completer, CompleterConfig, Family, Request};
use nib_engine::gguf::{Gguf, ModelBytes};
use nib_engine::{Error, Model};

/// One tiny model: its file, fixture, and FIM spellings.
struct Tiny {
    file: &'static str,
    fixture: &'static str,
    fim: [&'static str; 3],
}

const STARCODER2: Tiny = Tiny { file: "tiny-starcoder2.gguf", fixture: "starcoder2_tiny.json", fim: ["<fim_prefix>", "<fim_suffix>", "<fim_middle>"] };
const GPT_BIGCODE: Tiny = Tiny { file: "tiny-gpt-bigcode.gguf", fixture: "gpt_bigcode_tiny.json", fim: ["<fim-prefix>", "<fim-suffix>", "<fim-middle>"] };

fn cpu_model(t: &Tiny, precision: Precision) -> Model<CpuBackend> {
    Model::open_cpu_with(&common::tiny_starcoder(t.file), 2, precision).unwrap()
}

#[test]
fn starcoder2_config_and_window() {
    let m = cpu_model(&STARCODER2, Precision::Ggml);
    let c = m.config();
    assert_eq!((c.n_layers, c.dim, c.ffn_dim, c.vocab), (3, 256, 1024, 49_152));
    assert_eq!((c.attn.n_heads, c.attn.n_kv_heads, c.attn.head_dim), (8, 2, 32));
    assert!(c.rope.neox, "starcoder2 rotates (i, i + d/2) pairs");
    assert_eq!((c.rope.theta, c.rope.dims, c.eps), (999_999.44, 32, 1e-5));
    // The whole 16384-token context, each position attending within the 4096-token window
    // (windowed attention itself is tested against f64 in kernels.rs and gpu_kernels.rs).
    assert_eq!((c.ctx_len, c.attn.window), (16_384, Some(nib_engine::arch::starcoder2::SLIDING_WINDOW)));
    let mut s = m.session(16_384).unwrap();
    assert_eq!(s.max_ctx(), 16_384);
    let logits = m.eval(&mut s, &vec![17u32; 4200]).unwrap();
    assert!(logits.iter().all(|v| v.is_finite()), "a prompt past the window");
}

#[test]
fn gpt_bigcode_config_and_positions() {
    let m = cpu_model(&GPT_BIGCODE, Precision::Ggml);
    let c = m.config();
    assert_eq!((c.n_layers, c.dim, c.ffn_dim, c.vocab), (3, 256, 1024, 49_280));
    assert_eq!((c.attn.n_heads, c.attn.n_kv_heads, c.attn.head_dim), (8, 1, 32), "multi-query: one KV head");
    assert_eq!((c.rope.dims, c.ctx_len, c.eps), (0, 2048, 1e-5), "learned positions, no rotary dims");
    assert_eq!(m.session(100_000).unwrap().max_ctx(), 2048);
    // A cache larger than the position table: the position past it is refused, not read.
    let b = &m.backend;
    let mut cache = b.new_cache(c.n_layers, 4096, c.attn).unwrap();
    let Err(err) = m.arch.forward(b, &mut cache, &[17], 2048, false) else { panic!("position 2048 of 2048 runs") };
    assert!(matches!(&err, Error::InvalidArgument(e) if e.contains("learned positions")), "{err:?}");
    // Position 2047 is the table's last row.
    assert!(m.arch.forward(b, &mut cache, &[17], 2047, false).is_ok());
}

/// A file without its position table or with a fused q/k/v of the wrong height: typed errors.
#[test]
fn gpt_bigcode_missing_parts_are_typed_errors() {
    let bytes = std::fs::read(common::tiny_starcoder(GPT_BIGCODE.file)).unwrap();
    for (from, to) in [(&b"position_embd.weight"[..], &b"position_embe.weight"[..]), (b"blk.1.attn_qkv.weight", b"blk.1.attn_qkx.weight")] {
        let renamed = common::replace_all(&bytes, from, to);
        let err = Model::load_cpu(ModelBytes::Owned(renamed), 1).err().expect("a model with a missing tensor loads");
        let name = String::from_utf8_lossy(from).into_owned();
        assert!(matches!(&err, Error::Model(m) if m.contains(&name)), "{err:?}");
    }
}

/// The fused q/k/v seen as row ranges: the bytes of the whole, split where the rows split, and
/// a range outside the tensor a typed error.
#[test]
fn fused_qkv_row_ranges() {
    let bytes = ModelBytes::open(&common::tiny_starcoder(GPT_BIGCODE.file)).unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    let w = g.tensor("blk.0.attn_qkv.weight").unwrap(); // (256 + 2·32, 256) Q4_0
    assert_eq!(w.dims, [256, 320]);
    let row_bytes = 256 / 32 * 18;
    let k = w.rows("k".into(), 256, 32).unwrap();
    assert_eq!((k.dims.as_slice(), k.offset, k.size), (&[256, 32][..], w.offset + 256 * row_bytes, 32 * row_bytes));
    let whole = g.tensor_data(&bytes, w).unwrap();
    assert_eq!(g.tensor_data(&bytes, &k).unwrap(), &whole[256 * row_bytes as usize..288 * row_bytes as usize]);
    let b = g.tensor("blk.0.attn_qkv.bias").unwrap(); // (320) F32
    let bv = b.rows("v".into(), 288, 32).unwrap();
    assert_eq!((bv.dims.as_slice(), bv.offset, bv.size), (&[32][..], b.offset + 288 * 4, 32 * 4));
    for (start, len) in [(300, 21), (0, 0), (u64::MAX, 2)] {
        assert!(w.rows("x".into(), start, len).is_err(), "rows {start}..+{len} of 320");
    }
}

fn tokenizer_ids_match_llama_cpp(t: &Tiny) {
    let m = cpu_model(t, Precision::Ggml);
    let fx = common::fixture(t.fixture);
    let tok = &m.tokenizer;
    let mut bad = common::token_mismatches(tok, &fx);
    bad.extend(common::special_mismatches(tok, &fx, t.fim));
    assert!(bad.is_empty(), "{} mismatches:\n{}", bad.len(), bad.join("\n"));
    for s in t.fim {
        let id = tok.token_id(s).unwrap_or_else(|| panic!("{s} is in the vocabulary"));
        assert!(tok.is_special(id), "{s} is special");
    }
}

#[test]
fn starcoder2_tokenizer_ids_match_llama_cpp() {
    tokenizer_ids_match_llama_cpp(&STARCODER2);
}

#[test]
fn gpt_bigcode_tokenizer_ids_match_llama_cpp() {
    tokenizer_ids_match_llama_cpp(&GPT_BIGCODE);
}

fn cpu_matches_llama_cpp(t: &Tiny) {
    let m = cpu_model(t, Precision::Ggml);
    let fx = common::fixture(t.fixture);
    assert!(fx["cases"].as_array().unwrap().len() >= 8);
    common::golden::check(&m, fx["cases"].as_array().unwrap(), common::golden::Rules::All);
}

#[test]
fn starcoder2_cpu_logits_and_greedy_match_llama_cpp() {
    cpu_matches_llama_cpp(&STARCODER2);
}

#[test]
fn gpt_bigcode_cpu_logits_and_greedy_match_llama_cpp() {
    cpu_matches_llama_cpp(&GPT_BIGCODE);
}

/// The completer detects the family's FIM template from the vocabulary and builds
/// `{prefix-marker}{prefix}{suffix-marker}{suffix}{middle-marker}` id for id as llama.cpp
/// tokenizes its spelled-out form.
fn fim_prompt(t: &Tiny, family: Family, ids_of_markers: (u32, u32, u32)) {
    let c = Completer::new(cpu_model(t, Precision::Ggml), CompleterConfig { cache_entries: 0, ..CompleterConfig::default() }).unwrap();
    let fim = c.format().fim().expect("FIM tokens detected");
    assert_eq!(fim.family, family);
    assert_eq!((fim.prefix, fim.suffix, fim.middle), ids_of_markers);
    assert!(c.format().stop_ids().contains(&0), "<|endoftext|> ends a completion");
    for case in common::fixture(t.fixture)["fim"].as_array().unwrap() {
        let req = Request::new(case["prefix"].as_str().unwrap(), case["suffix"].as_str().unwrap());
        assert_eq!(c.prompt(&req).unwrap().ids, ids(&case["ids"]));
    }
}

#[test]
fn starcoder2_fim_prompt() {
    fim_prompt(&STARCODER2, Family::StarCoder, (1, 3, 2));
}

#[test]
fn gpt_bigcode_fim_prompt_with_santacoder_hyphens() {
    fim_prompt(&GPT_BIGCODE, Family::SantaCoder, (49_152, 49_154, 49_153));
}

/// The GPU backend (lavapipe where there is no GPU; WASI has none).
#[cfg(not(target_os = "wasi"))]
mod on_gpu {
    use super::*;

    #[test]
    fn starcoder2_gpu_matches_the_cpu_reference() {
        let t = STARCODER2;
        common::gpu::matches_cpu_reference(&common::tiny_starcoder(t.file), common::fixture(t.fixture)["cases"].as_array().unwrap());
    }

    #[test]
    fn gpt_bigcode_gpu_matches_the_cpu_reference() {
        let t = GPT_BIGCODE;
        common::gpu::matches_cpu_reference(&common::tiny_starcoder(t.file), common::fixture(t.fixture)["cases"].as_array().unwrap());
    }
}
