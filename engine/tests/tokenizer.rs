//! The tokenizer against llama.cpp on the default model's vocabulary.
//!
//! tests/fixtures/tokens_smollm2.json (made by tests/fixtures/make_token_fixtures.py with
//! llama-cpp-python) holds llama.cpp's ids for 100+ strings: with the model's own pre-tokenizer
//! (`smollm`), with special-token parsing, and with the same vocabulary under the other
//! pre-tokenizer names nib supports. Every id must match; mismatches are all listed at once.

mod common;

use std::time::Instant;

use nib_engine::gguf::{Gguf, ModelBytes, Value};
use nib_engine::tokenizer::{TokenKind, Tokenizer};
use nib_engine::Error;
use serde_json::Value as Json;

struct Case {
    name: String,
    text: String,
    ids: Vec<u32>,
}

fn cases(fixture: &Json, key: &str) -> Vec<Case> {
    fixture[key]
        .as_array()
        .unwrap_or_else(|| panic!("fixture has no {key}"))
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_owned(),
            text: c["text"].as_str().unwrap().to_owned(),
            ids: ids(&c["ids"]),
        })
        .collect()
}

fn ids(v: &Json) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| u32::try_from(x.as_u64().unwrap()).unwrap())
        .collect()
}

fn model_metadata() -> Gguf {
    let bytes = ModelBytes::open(&common::default_model()).unwrap();
    Gguf::parse(&bytes).unwrap()
}

fn default_tokenizer() -> Tokenizer {
    Tokenizer::from_gguf(&model_metadata()).unwrap()
}

/// Runs `encode` on every case and lists every mismatch in one failure.
fn check_all(
    label: &str,
    cases: &[Case],
    expected: impl Fn(usize) -> Vec<u32>,
    encode: impl Fn(&str) -> Vec<u32>,
) {
    let mut bad = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let want = expected(i);
        let got = encode(&c.text);
        if got != want {
            bad.push(format!(
                "  {} {:?}\n    llama.cpp {want:?}\n    nib       {got:?}",
                c.name, c.text
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{label}: {} of {} strings differ from llama.cpp:\n{}",
        bad.len(),
        cases.len(),
        bad.join("\n")
    );
}

#[test]
fn fixture_is_for_this_model() {
    let fixture = common::fixture("tokens_smollm2.json");
    // The default model's sha256 (target.md); a fixture made from another file proves nothing.
    assert_eq!(
        fixture["model_sha256"].as_str().unwrap(),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    assert!(cases(&fixture, "cases").len() >= 60);
}

#[test]
fn ids_match_llama_cpp() {
    let fixture = common::fixture("tokens_smollm2.json");
    let cases = cases(&fixture, "cases");
    let tok = default_tokenizer();
    check_all(
        "encode",
        &cases,
        |i| cases[i].ids.clone(),
        |s| tok.encode(s).unwrap(),
    );
}

#[test]
fn special_parsing_matches_llama_cpp() {
    let fixture = common::fixture("tokens_smollm2.json");
    let cases = cases(&fixture, "special_cases");
    let tok = default_tokenizer();
    check_all(
        "encode_with_special",
        &cases,
        |i| cases[i].ids.clone(),
        |s| tok.encode_with_special(s).unwrap(),
    );
    // The parsed cases really contain control tokens (else this test would prove nothing).
    let n_control: usize = cases
        .iter()
        .flat_map(|c| &c.ids)
        .filter(|&&id| tok.is_special(id))
        .count();
    assert!(
        n_control >= 10,
        "only {n_control} control tokens in the special cases"
    );
}

#[test]
fn plain_encode_never_yields_control_tokens() {
    let fixture = common::fixture("tokens_smollm2.json");
    let tok = default_tokenizer();
    for c in cases(&fixture, "cases")
        .iter()
        .chain(&cases(&fixture, "special_cases"))
    {
        let ids = tok.encode(&c.text).unwrap();
        assert!(
            ids.iter()
                .all(|&id| tok.kind(id) == Some(TokenKind::Normal)),
            "{}: {ids:?} has a non-normal token",
            c.name
        );
    }
}

/// `g`'s metadata (no tensors) as a GGUF v3 file, with the values in `replace` replaced or added.
fn rewrite_metadata(g: &Gguf, replace: &[(&str, Value)]) -> Vec<u8> {
    let mut kvs: Vec<(String, Value)> = g.metadata().map(|(k, v)| (k.to_owned(), v.clone())).collect();
    for (key, v) in replace {
        match kvs.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = v.clone(),
            None => kvs.push(((*key).to_owned(), v.clone())),
        }
    }
    nib_engine::gguf_writer::write(&kvs, &[], |_, _| Ok(())).unwrap()
}

fn with_pre(g: &Gguf, pre: &str) -> Result<Tokenizer, Error> {
    let bytes = rewrite_metadata(g, &[("tokenizer.ggml.pre", Value::String(pre.to_owned()))]);
    Tokenizer::from_gguf(&Gguf::parse(&bytes).unwrap())
}

#[test]
fn other_pre_tokenizers_match_llama_cpp() {
    let fixture = common::fixture("tokens_smollm2.json");
    let cases = cases(&fixture, "cases");
    let other = fixture["other_pre"].as_object().unwrap();
    let g = model_metadata();
    for pre in ["gpt-2", "llama-bpe", "qwen2", "starcoder", "deepseek-coder"] {
        let expected: Vec<Vec<u32>> = other[pre].as_array().unwrap().iter().map(ids).collect();
        assert_eq!(expected.len(), cases.len());
        let tok = with_pre(&g, pre).unwrap();
        check_all(
            pre,
            &cases,
            |i| expected[i].clone(),
            |s| tok.encode(s).unwrap(),
        );
    }
    // "gpt2" is the same pre-tokenizer as llama.cpp's "gpt-2".
    let a = with_pre(&g, "gpt2").unwrap();
    let b = with_pre(&g, "gpt-2").unwrap();
    for c in &cases {
        assert_eq!(
            a.encode(&c.text).unwrap(),
            b.encode(&c.text).unwrap(),
            "{}",
            c.name
        );
    }
}

#[test]
fn unknown_pre_tokenizer_or_model_is_an_error() {
    let g = model_metadata();
    match with_pre(&g, "falcon") {
        Err(Error::Unsupported(msg)) => assert!(msg.contains("'falcon'"), "{msg}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("pre-tokenizer 'falcon' accepted"),
    }
    let spm = rewrite_metadata(
        &g,
        &[("tokenizer.ggml.model", Value::String("t5".into()))],
    );
    match Tokenizer::from_gguf(&Gguf::parse(&spm).unwrap()) {
        Err(Error::Unsupported(msg)) => assert!(msg.contains("'t5'"), "{msg}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("tokenizer model 't5' accepted"),
    }
    // A SentencePiece vocabulary needs its scores.
    let no_scores = rewrite_metadata(&g, &[("tokenizer.ggml.model", Value::String("llama".into()))]);
    assert!(matches!(Tokenizer::from_gguf(&Gguf::parse(&no_scores).unwrap()), Err(Error::Model(_))));
    let missing = rewrite_metadata(&g, &[("tokenizer.ggml.merges", Value::Bool(true))]);
    assert!(Tokenizer::from_gguf(&Gguf::parse(&missing).unwrap()).is_err());
}

#[test]
fn metadata_decides_bos_and_eos() {
    let g = model_metadata();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    assert_eq!(
        (tok.bos(), tok.eos(), tok.add_bos()),
        (Some(1), Some(2), false)
    );
    assert_eq!(tok.vocab_size(), 49152);
    let with_bos = rewrite_metadata(&g, &[("tokenizer.ggml.add_bos_token", Value::Bool(true))]);
    let tok_bos = Tokenizer::from_gguf(&Gguf::parse(&with_bos).unwrap()).unwrap();
    assert!(tok_bos.add_bos());
    let plain = tok.encode("Hello world").unwrap();
    assert_eq!(
        tok_bos.encode("Hello world").unwrap(),
        [&[1], &plain[..]].concat()
    );
}

#[test]
fn special_tokens_are_known() {
    let tok = default_tokenizer();
    assert_eq!(tok.token_id("<|im_start|>"), Some(1));
    assert_eq!(tok.token_id("<|im_end|>"), Some(2));
    assert_eq!(tok.token_id("<|endoftext|>"), Some(0));
    assert_eq!(tok.token_id("<no such token>"), None);
    // Plain-text tokens are found by the text they stand for.
    let the = tok.token_id(" the").unwrap();
    assert_eq!(tok.encode(" the").unwrap(), [the]);
    assert_eq!(tok.token_bytes(the).unwrap(), b" the");
    assert_eq!(tok.token_bytes(2).unwrap(), b"<|im_end|>");
    assert_eq!(tok.token_bytes(49152), None);
    assert!((0..17).all(|id| tok.is_special(id)));
    assert!(!tok.is_special(the));
    // llama.cpp's end-of-generation set for this model: <|endoftext|>, <|im_end|> (also EOS)
    // and <reponame> (a FIM repo marker).
    assert_eq!(tok.end_of_generation(), [0, 2, 4]);
}

#[test]
fn decode_inverts_encode() {
    let fixture = common::fixture("tokens_smollm2.json");
    let tok = default_tokenizer();
    for c in cases(&fixture, "cases") {
        assert_eq!(tok.decode(&c.ids).unwrap(), c.text, "{}", c.name);
    }
    for c in cases(&fixture, "special_cases") {
        assert_eq!(tok.decode(&c.ids).unwrap(), c.text, "{}", c.name);
    }
    assert!(matches!(
        tok.decode(&[49152]),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn stream_decoder_emits_whole_characters_only() {
    let tok = default_tokenizer();
    let texts = [
        "emoji 🦙🚀😶‍🌫️👨‍👩‍👧‍👦 done",
        "我想在apple工作1314151天～",
        "こんにちは、世界！안녕하세요",
        "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇ and 𝗙𝗹𝗮𝘀𝗵",
    ];
    let mut waited = 0;
    for text in texts {
        let ids = tok.encode(text).unwrap();
        let mut stream = tok.stream_decoder();
        let mut out = String::new();
        let mut bytes = Vec::new();
        for &id in &ids {
            bytes.extend(tok.token_bytes(id).unwrap());
            let piece = stream.push(id).unwrap();
            out.push_str(&piece);
            // What has come out is exactly the complete characters of the bytes so far.
            let complete = match std::str::from_utf8(&bytes) {
                Ok(s) => s,
                Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap(),
            };
            assert_eq!(out, complete, "{text:?} after id {id}");
            if piece.is_empty() {
                waited += 1;
            }
        }
        out.push_str(&stream.finish());
        assert_eq!(out, text);
    }
    // The texts do split characters across tokens, so the waiting was exercised.
    assert!(waited >= 4, "only {waited} tokens ended inside a character");
}

#[test]
fn stream_decoder_replaces_invalid_bytes_like_decode() {
    let tok = default_tokenizer();
    // Byte-level tokens for single bytes: 0xF0 starts a 4-byte sequence, 0x41 breaks it.
    let byte_token = |b: u8| {
        (0..49152u32)
            .find(|&id| tok.token_bytes(id).as_deref() == Some(&[b][..]))
            .unwrap()
    };
    let ids = [
        byte_token(0xF0),
        byte_token(0x9F),
        byte_token(b'A'),
        byte_token(0xE4),
        byte_token(0xBD),
    ];
    let mut stream = tok.stream_decoder();
    let mut out = String::new();
    for &id in &ids {
        out.push_str(&stream.push(id).unwrap());
    }
    assert_eq!(out, "\u{FFFD}A");
    out.push_str(&stream.finish());
    assert_eq!(out, tok.decode(&ids).unwrap());
    assert_eq!(out, "\u{FFFD}A\u{FFFD}");
}

#[test]
fn tokenizer_json_round_trip_gives_identical_ids() {
    let fixture = common::fixture("tokens_smollm2.json");
    let tok = default_tokenizer();
    let json = tok.to_tokenizer_json().unwrap();
    let from_json = Tokenizer::from_tokenizer_json(json.as_bytes()).unwrap();
    assert_eq!(from_json.vocab_size(), tok.vocab_size());
    assert_eq!((from_json.bos(), from_json.add_bos()), (None, false));
    for c in cases(&fixture, "cases") {
        assert_eq!(from_json.encode(&c.text).unwrap(), c.ids, "{}", c.name);
    }
    for c in cases(&fixture, "special_cases") {
        assert_eq!(
            from_json.encode_with_special(&c.text).unwrap(),
            c.ids,
            "{}",
            c.name
        );
        assert_eq!(from_json.decode(&c.ids).unwrap(), c.text, "{}", c.name);
    }
    assert_eq!(from_json.end_of_generation(), tok.end_of_generation());

    // A model that adds BOS exports a post-processor that does, and the json keeps it.
    let g = model_metadata();
    let with_bos = rewrite_metadata(&g, &[("tokenizer.ggml.add_bos_token", Value::Bool(true))]);
    let tok_bos = Tokenizer::from_gguf(&Gguf::parse(&with_bos).unwrap()).unwrap();
    let from_json =
        Tokenizer::from_tokenizer_json(tok_bos.to_tokenizer_json().unwrap().as_bytes()).unwrap();
    assert_eq!((from_json.bos(), from_json.add_bos()), (Some(1), true));
    assert_eq!(
        from_json.encode("def f():").unwrap(),
        tok_bos.encode("def f():").unwrap()
    );

    assert!(matches!(
        Tokenizer::from_tokenizer_json(b"{not json"),
        Err(Error::Tokenizer(_))
    ));
}

/// Not a benchmark: a guard that building stays far below the one second the design allows.
#[test]
fn building_is_fast() {
    let g = model_metadata();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let tok = Tokenizer::from_gguf(&g).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        assert_eq!(tok.vocab_size(), 49152);
    }
    let tok = default_tokenizer();
    let text = common::fixture("tokens_smollm2.json")["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let t = Instant::now();
    let n = tok.encode(&text).unwrap().len();
    let enc = t.elapsed().as_secs_f64();
    eprintln!(
        "from_gguf (49152 tokens, 48900 merges): {:.1} ms; encode {} bytes -> {n} tokens: {:.2} ms",
        best * 1e3,
        text.len(),
        enc * 1e3
    );
    assert!(best < 1.0, "building the tokenizer took {best:.3} s");
}
