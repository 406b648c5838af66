//! Hugging Face checkpoints (engine/src/hf.rs, safetensors.rs): the twins that
//! tests/fixtures/make_tiny_hf.py writes from the tiny qwen2 model (`cargo xtask setup`) load to
//! the same model as their GGUF twins written by gguf-py:
//! - the F32 single-file checkpoint and the sharded F16/BF16 one: every tensor's bytes equal the
//!   GGUF twin's and the logits are bit-identical over the whole vocabulary;
//! - quantized on load to Q8_0 and Q4_0: the blocks equal gguf-py's `quants.quantize`, byte for
//!   byte, so the logits are bit-identical too;
//! - Llama: q/k rows permuted exactly as convert_hf_to_gguf.py does;
//! - the tokenizer built from tokenizer.json gives llama.cpp's ids (tests/fixtures/qwen2_tiny.json);
//! - corrupt files and bad configs give typed errors that name the problem.

mod common;
use common::ids;

use std::collections::HashMap;
use std::path::PathBuf;

use nib_engine::backend::cpu::CpuBackend;
use nib_engine::gguf::{Gguf, ModelBytes};
use nib_engine::hf::{self, Shard};
use nib_engine::quant::GgmlType;
use nib_engine::safetensors::Safetensors;
use nib_engine::{Error, Model};
use serde_json::{json, Value};

fn hf_dir(name: &str) -> PathBuf {
    let p = common::root().join("target/xtask/hf").join(name);
    assert!(p.exists(), "{} is missing: run `cargo xtask setup` (tests/fixtures/make_tiny_hf.py)", p.display());
    p
}

/// The HF checkpoint `dir` as GGUF bytes, and its GGUF twin's bytes.
fn twins(dir: &str, gguf: &str, quantize: Option<GgmlType>) -> (ModelBytes, ModelBytes) {
    let hf_bytes = hf::load_dir(&hf_dir(dir), quantize).unwrap();
    let twin = ModelBytes::open(&hf_dir(gguf)).unwrap();
    (hf_bytes, twin)
}

/// Every tensor of the twin is in the converted file with the same type, dims and bytes.
fn assert_same_tensors(a: &[u8], b: &[u8]) {
    let (ga, gb) = (Gguf::parse(a).unwrap(), Gguf::parse(b).unwrap());
    assert_eq!(ga.tensors.len(), gb.tensors.len(), "tensor count");
    for tb in &gb.tensors {
        let ta = ga.tensor(&tb.name).unwrap_or_else(|| panic!("{} missing from the converted file", tb.name));
        assert_eq!((ta.ty, &ta.dims), (tb.ty, &tb.dims), "{}", tb.name);
        assert!(ga.tensor_data(a, ta).unwrap() == gb.tensor_data(b, tb).unwrap(), "{}: bytes differ", tb.name);
    }
}

/// Bit-identical logits after each fixture prompt (whole vocabulary), and the same tokenizer ids.
fn assert_same_model(a: ModelBytes, b: ModelBytes) {
    let (ma, mb) = (Model::load_cpu(a, 2).unwrap(), Model::load_cpu(b, 2).unwrap());
    assert_eq!(ma.config(), mb.config());
    let fx = common::fixture("qwen2_tiny.json");
    for case in fx["cases"].as_array().unwrap().iter().take(3) {
        let prompt = case["ids"].as_array().map(|_| ids(&case["ids"])).unwrap();
        let logits = |m: &Model<CpuBackend>| {
            let mut s = m.session(prompt.len()).unwrap();
            m.eval(&mut s, &prompt).unwrap()
        };
        let (la, lb) = (logits(&ma), logits(&mb));
        assert_eq!(la.len(), 151_936);
        let max = la.iter().zip(&lb).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(la.iter().zip(&lb).all(|(x, y)| x.to_bits() == y.to_bits()), "logits differ (max |Δ| {max}) for {:?}", case["prompt"]);
    }
    for c in fx["tokens"].as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        assert_eq!(ma.tokenizer.encode(text).unwrap(), ids(&c["ids"]), "{text:?}");
        assert_eq!(mb.tokenizer.encode(text).unwrap(), ids(&c["ids"]), "{text:?}");
    }
    for c in fx["special_tokens"].as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        assert_eq!(ma.tokenizer.encode_with_special(text).unwrap(), ids(&c["ids"]), "{text:?}");
    }
    assert_eq!((ma.tokenizer.bos(), ma.tokenizer.eos(), ma.tokenizer.add_bos()), (mb.tokenizer.bos(), mb.tokenizer.eos(), mb.tokenizer.add_bos()));
    assert_eq!(ma.tokenizer.token_id("<|fim_middle|>"), Some(151660));
    assert!(ma.tokenizer.is_special(151660));
}

#[test]
fn single_file_f32_is_its_gguf_twin() {
    let (a, b) = twins("qwen2", "tiny-qwen2-f32.gguf", None);
    assert_same_tensors(&a, &b);
    assert_same_model(a, b);
}

#[test]
fn sharded_f16_bf16_is_its_gguf_twin() {
    // 2-D weights F16 (kept), 1-D BF16 (to F32), in two shards with an index.
    let (a, b) = twins("qwen2-sharded", "tiny-qwen2-f16.gguf", None);
    assert_same_tensors(&a, &b);
    assert_same_model(a, b);
}

#[test]
fn quantized_on_load_as_gguf_py_quantizes() {
    for (q, twin) in [(GgmlType::Q8_0, "tiny-qwen2-q8_0.gguf"), (GgmlType::Q4_0, "tiny-qwen2-q4_0.gguf")] {
        let (a, b) = twins("qwen2", twin, Some(q));
        assert_same_tensors(&a, &b);
        assert_same_model(a, b);
    }
}

#[test]
fn llama_q_k_rows_are_permuted_as_llama_cpp_does() {
    let (a, b) = twins("llama", "tiny-llama-f16.gguf", None);
    assert_same_tensors(&a, &b);
    assert_eq!(Gguf::parse(&a).unwrap().architecture(), Some("llama"));
    assert_same_model(a, b);
}

// ---- corrupt input ----

/// A safetensors file from (name, dtype, shape, data); `header` can rewrite the JSON first.
fn safetensors(tensors: &[(&str, &str, Vec<u64>, Vec<u8>)], header: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut h = json!({"__metadata__": {"format": "pt"}});
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        h[*name] = json!({"dtype": dtype, "shape": shape, "data_offsets": [data.len(), data.len() + bytes.len()]});
        data.extend_from_slice(bytes);
    }
    header(&mut h);
    let text = serde_json::to_vec(&h).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&data);
    out
}

fn st_err(bytes: &[u8]) -> String {
    let e = Safetensors::parse(bytes).expect_err("corrupt safetensors parsed");
    let e: Error = e.into();
    assert!(matches!(e, Error::Safetensors(_)), "{e:?}");
    e.to_string()
}

#[test]
fn corrupt_safetensors_are_typed_errors() {
    let ok = safetensors(&[("a", "F32", vec![2, 2], vec![0; 16]), ("b", "F16", vec![3], vec![0; 6])], |_| {});
    let parsed = Safetensors::parse(&ok).unwrap();
    assert_eq!(parsed.tensor("a").unwrap().shape, vec![2, 2]);
    assert_eq!(parsed.data(&ok, parsed.tensor("b").unwrap()).unwrap().len(), 6);

    assert!(st_err(&ok[..5]).contains("header.len"));
    let mut long = ok.clone();
    long[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(st_err(&long).contains("header length"));
    let header_len = u64::from_le_bytes(ok[..8].try_into().unwrap()) as usize;
    assert!(st_err(&ok[..8 + header_len - 1]).contains("header.len"), "truncated header");
    assert!(st_err(b"\x04\0\0\0\0\0\0\0{abc").contains("not JSON"));
    let past = safetensors(&[("a", "F32", vec![2, 2], vec![0; 16])], |h| h["a"]["data_offsets"] = json!([0, 32]));
    let e = st_err(&past);
    assert!(e.contains("\"a\".data_offsets") && e.contains("inside the 16 data bytes"), "{e}");
    let e = st_err(&safetensors(&[("a", "Q9", vec![4], vec![0; 16])], |_| {}));
    assert!(e.contains("unknown dtype \"Q9\""), "{e}");
    let e = st_err(&safetensors(&[("a", "F32", vec![2, 3], vec![0; 16])], |_| {}));
    assert!(e.contains("needs 24"), "shape/bytes mismatch: {e}");
    let e = st_err(&safetensors(&[("a", "F32", vec![u64::MAX, 4], vec![0; 16])], |_| {}));
    assert!(e.contains("overflows"), "{e}");
    let e = st_err(&safetensors(&[("a", "F32", vec![2], vec![0; 8]), ("b", "F32", vec![2], vec![0; 8])], |h| h["b"]["data_offsets"] = json!([4, 12])));
    assert!(e.contains("overlaps"), "{e}");
    let e = st_err(&safetensors(&[("a", "F32", vec![2], vec![0; 8])], |h| h["a"]["shape"] = json!([-2])));
    assert!(e.contains("\"a\".shape"), "{e}");
    assert!(st_err(b"\x02\0\0\0\0\0\0\0[]").contains("not a JSON object"));
}

/// A one-layer Qwen2 config (hidden 32, 2 heads of 16 over 1 KV head, FFN 64, vocab 64).
fn mini_config() -> Value {
    json!({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
           "num_key_value_heads": 1, "intermediate_size": 64, "rms_norm_eps": 1e-6, "rope_theta": 1e6, "vocab_size": 64,
           "tie_word_embeddings": true})
}

/// Its tensors, all F32 zeros.
fn mini_tensors() -> Vec<(String, &'static str, Vec<u64>, Vec<u8>)> {
    let t = |n: &str, shape: Vec<u64>| (n.to_string(), "F32", shape.clone(), vec![0u8; 4 * shape.iter().product::<u64>() as usize]);
    let l = |s: &str| format!("model.layers.0.{s}");
    vec![
        t("model.embed_tokens.weight", vec![64, 32]),
        t(&l("input_layernorm.weight"), vec![32]),
        t(&l("self_attn.q_proj.weight"), vec![32, 32]),
        t(&l("self_attn.q_proj.bias"), vec![32]),
        t(&l("self_attn.k_proj.weight"), vec![16, 32]),
        t(&l("self_attn.k_proj.bias"), vec![16]),
        t(&l("self_attn.v_proj.weight"), vec![16, 32]),
        t(&l("self_attn.v_proj.bias"), vec![16]),
        t(&l("self_attn.o_proj.weight"), vec![32, 32]),
        t(&l("post_attention_layernorm.weight"), vec![32]),
        t(&l("mlp.gate_proj.weight"), vec![64, 32]),
        t(&l("mlp.up_proj.weight"), vec![64, 32]),
        t(&l("mlp.down_proj.weight"), vec![32, 64]),
        t("model.norm.weight", vec![32]),
    ]
}

/// `to_gguf` on the mini checkpoint with `config` and `tensors` (an empty tokenizer.json: every
/// error here is found before the tokenizer is read).
fn convert(config: &Value, tensors: &[(String, &str, Vec<u64>, Vec<u8>)]) -> Error {
    let list: Vec<(&str, &str, Vec<u64>, Vec<u8>)> = tensors.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone())).collect();
    let bytes = safetensors(&list, |_| {});
    let shard = Shard { file: "model.safetensors".into(), header: Safetensors::parse(&bytes).unwrap(), bytes: &bytes };
    hf::to_gguf(&serde_json::to_vec(config).unwrap(), b"{}", None, &[shard], None, None).expect_err("a broken checkpoint converted")
}

#[test]
fn missing_or_mismatched_tensors_are_typed_errors() {
    // The mini checkpoint is complete: it fails only at the (empty) tokenizer.
    assert!(matches!(convert(&mini_config(), &mini_tensors()), Error::Tokenizer(_)));

    let mut t = mini_tensors();
    t.retain(|x| x.0 != "model.layers.0.mlp.down_proj.weight");
    let e = convert(&mini_config(), &t);
    assert!(matches!(&e, Error::Model(m) if m.contains("no tensor model.layers.0.mlp.down_proj.weight")), "{e:?}");

    let mut t = mini_tensors();
    t[2] = ("model.layers.0.self_attn.q_proj.weight".into(), "F32", vec![30, 32], vec![0; 30 * 32 * 4]);
    let e = convert(&mini_config(), &t);
    assert!(matches!(&e, Error::Model(m) if m.contains("q_proj.weight has shape [30, 32], config.json implies [32, 32]")), "{e:?}");

    let mut t = mini_tensors();
    t[2] = ("model.layers.0.self_attn.q_proj.weight".into(), "I32", vec![32, 32], vec![0; 32 * 32 * 4]);
    let e = convert(&mini_config(), &t);
    assert!(matches!(&e, Error::Unsupported(m) if m.contains("q_proj.weight has dtype I32")), "{e:?}");

    // Untied needs lm_head.
    let mut c = mini_config();
    c["tie_word_embeddings"] = json!(false);
    assert!(matches!(convert(&c, &mini_tensors()), Error::Model(m) if m.contains("no tensor lm_head.weight")));
}

#[test]
fn bad_config_values_are_typed_errors() {
    let cases: [(&str, Value, &str); 8] = [
        ("num_attention_heads", json!(0), "num_attention_heads = 0 is not an integer in 1..="),
        ("hidden_size", json!("32"), "hidden_size = \"32\""),
        ("num_key_value_heads", json!(3), "2 attention heads cannot share 3"),
        ("rms_norm_eps", json!(-1.0), "rms_norm_eps = -1.0 is not a positive number"),
        ("num_hidden_layers", json!(100000), "num_hidden_layers = 100000"),
        ("vocab_size", Value::Null, "vocab_size is missing"),
        ("tie_word_embeddings", json!("yes"), "tie_word_embeddings"),
        ("rope_scaling", json!({"type": "linear", "factor": 0}), "rope_scaling.factor"),
    ];
    for (key, value, want) in cases {
        let mut c = mini_config();
        c[key] = value;
        let e = convert(&c, &mini_tensors());
        assert!(matches!(&e, Error::Model(m) if m.starts_with("config.json: ") && m.contains(want)), "{key}: {e:?}");
    }
    let mut c = mini_config();
    c["architectures"] = json!(["GPT2LMHeadModel"]);
    assert!(matches!(convert(&c, &mini_tensors()), Error::Unsupported(m) if m.contains("GPT2LMHeadModel")));
    let mut c = mini_config();
    c["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0});
    assert!(matches!(convert(&c, &mini_tensors()), Error::Unsupported(m) if m.contains("yarn")));
    let e = hf::to_gguf(b"{not json", b"{}", None, &[], None, None).unwrap_err();
    assert!(matches!(&e, Error::Model(m) if m.contains("config.json: not JSON")), "{e:?}");
}

#[test]
fn shard_index_is_checked() {
    let list: Vec<(&str, &str, Vec<u64>, Vec<u8>)> = vec![("model.norm.weight", "F32", vec![32], vec![0; 128])];
    let bytes = safetensors(&list, |_| {});
    let shard = || Shard { file: "a.safetensors".into(), header: Safetensors::parse(&bytes).unwrap(), bytes: &bytes };
    let map: HashMap<String, String> = [("model.embed_tokens.weight".to_string(), "a.safetensors".to_string())].into();
    let e = hf::to_gguf(&serde_json::to_vec(&mini_config()).unwrap(), b"{}", None, &[shard()], Some(&map), None).unwrap_err();
    assert!(matches!(&e, Error::Model(m) if m.contains("maps model.embed_tokens.weight to a.safetensors, which does not hold it")), "{e:?}");
    let e = hf::to_gguf(&serde_json::to_vec(&mini_config()).unwrap(), b"{}", None, &[shard(), shard()], None, None).unwrap_err();
    assert!(matches!(&e, Error::Model(m) if m.contains("more than one shard")), "{e:?}");

    // An index that names a file outside the directory is refused before anything is opened.
    let dir = std::env::temp_dir().join(format!("nib-hf-index-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&mini_config()).unwrap()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), b"{}").unwrap();
    std::fs::write(dir.join("model.safetensors.index.json"), br#"{"weight_map": {"model.norm.weight": "../secret.safetensors"}}"#).unwrap();
    let e = hf::load_dir(&dir, None).err().unwrap();
    assert!(matches!(&e, Error::Model(m) if m.contains("\"../secret.safetensors\" is not a .safetensors file name")), "{e:?}");
    // A checkpoint without its weights names the file.
    std::fs::remove_file(dir.join("model.safetensors.index.json")).unwrap();
    let e = hf::load_dir(&dir, None).err().unwrap();
    assert!(matches!(&e, Error::Io(m) if m.to_string().contains("model.safetensors")), "{e:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn quantize_option_is_checked() {
    assert_eq!(hf::parse_quantize("q8_0").unwrap(), GgmlType::Q8_0);
    assert_eq!(hf::parse_quantize("Q4_0").unwrap(), GgmlType::Q4_0);
    assert!(matches!(hf::parse_quantize("q4_k"), Err(Error::InvalidArgument(_))));
}

/// A byte-level BPE tokenizer.json with `n` tokens `t0..`, one merge given as a pair, and two
/// added tokens: `<|end|>` (looks special) and `foo` (user-defined).
fn mini_tokenizer(n: usize) -> Vec<u8> {
    let vocab: serde_json::Map<String, Value> = (0..n).map(|i| (format!("t{i}"), json!(i))).collect();
    serde_json::to_vec(&json!({
        "model": {"type": "BPE", "vocab": vocab, "merges": [["t1", "t2"]]},
        "added_tokens": [{"id": n, "content": "<|end|>", "special": false}, {"id": n + 1, "content": "foo", "special": false}],
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
    }))
    .unwrap()
}

/// Which GGUF type each source dtype becomes, and the tokenizer metadata, on the mini checkpoint.
#[test]
fn dtypes_and_tokenizer_metadata_follow_the_converter() {
    let bf16 = |x: f32, n: usize| half::bf16::from_f32(x).to_le_bytes().repeat(n);
    let mut t = mini_tensors();
    // Within f16's range (0.5, and 1e-9, which f16 rounds to 0 as llama.cpp's converter does).
    t[0] = ("model.embed_tokens.weight".into(), "BF16", vec![64, 32], [bf16(0.5, 64 * 32 - 1), bf16(1e-9, 1)].concat());
    t[2] = ("model.layers.0.self_attn.q_proj.weight".into(), "BF16", vec![32, 32], bf16(1e10, 32 * 32)); // past f16's range
    t[1] = ("model.layers.0.input_layernorm.weight".into(), "F16", vec![32], half::f16::from_f32(1.5).to_le_bytes().repeat(32));
    t[4] = ("model.layers.0.self_attn.k_proj.weight".into(), "F16", vec![16, 32], half::f16::from_f32(-2.0).to_le_bytes().repeat(16 * 32));
    let list: Vec<(&str, &str, Vec<u64>, Vec<u8>)> = t.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone())).collect();
    let bytes = safetensors(&list, |_| {});
    let mut config = mini_config();
    config["bos_token_id"] = json!(62);
    config["eos_token_id"] = json!([62, 63]);
    let convert = |q| {
        let shard = Shard { file: "model.safetensors".into(), header: Safetensors::parse(&bytes).unwrap(), bytes: &bytes };
        hf::to_gguf(&serde_json::to_vec(&config).unwrap(), &mini_tokenizer(62), Some(br#"{"add_bos_token": true}"#), &[shard], None, q).unwrap()
    };
    let out = convert(None);
    let g = Gguf::parse(&out).unwrap();
    let ty = |n: &str| g.tensor(n).unwrap().ty;
    assert_eq!(ty("token_embd.weight"), GgmlType::F16, "BF16 within F16's range");
    assert_eq!(ty("blk.0.attn_q.weight"), GgmlType::F32, "BF16 out of F16's range");
    assert_eq!(ty("blk.0.attn_k.weight"), GgmlType::F16, "F16 kept");
    assert_eq!(ty("blk.0.attn_norm.weight"), GgmlType::F32, "1-D as F32");
    assert_eq!(g.tensor("token_embd.weight").unwrap().dims, vec![32, 64], "GGML order");
    let f32_at = |n: &str| {
        let d = g.tensor_data(&out, g.tensor(n).unwrap()).unwrap();
        f32::from_le_bytes([d[0], d[1], d[2], d[3]])
    };
    assert_eq!((f32_at("blk.0.attn_q.weight"), f32_at("blk.0.attn_norm.weight")), (half::bf16::from_f32(1e10).to_f32(), 1.5));

    let tokens = g.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap();
    let types: Vec<u64> = g.get("tokenizer.ggml.token_type").unwrap().as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(tokens.len(), 64);
    assert_eq!((tokens[5].as_str(), tokens[62].as_str(), tokens[63].as_str()), (Some("t5"), Some("<|end|>"), Some("foo")));
    assert_eq!((types[5], types[62], types[63]), (1, 3, 4), "normal, control, user-defined");
    assert_eq!(g.get("tokenizer.ggml.merges").unwrap().as_array().unwrap()[0].as_str(), Some("t1 t2"));
    assert_eq!(g.get("tokenizer.ggml.pre").unwrap().as_str(), Some("gpt-2"));
    assert_eq!(g.get("tokenizer.ggml.bos_token_id").unwrap().as_u64(), Some(62));
    assert_eq!(g.get("tokenizer.ggml.eos_token_id").unwrap().as_u64(), Some(62), "the first of a list");
    assert_eq!(g.get("tokenizer.ggml.add_bos_token").unwrap().as_bool(), Some(true));
    assert_eq!(g.get("qwen2.rope.freq_base").unwrap().as_f32(), Some(1e6));

    // Quantized: every 2-D tensor, whatever its dtype; 1-D stays F32.
    let out = convert(Some(GgmlType::Q4_0));
    let g = Gguf::parse(&out).unwrap();
    for t in &g.tensors {
        assert_eq!(t.ty, if t.dims.len() == 2 { GgmlType::Q4_0 } else { GgmlType::F32 }, "{}", t.name);
    }

    // A token id past vocab_size, and an unknown pre-tokenizer, are typed errors.
    let shard = Shard { file: "model.safetensors".into(), header: Safetensors::parse(&bytes).unwrap(), bytes: &bytes };
    let e = hf::to_gguf(&serde_json::to_vec(&config).unwrap(), &mini_tokenizer(63), None, &[shard], None, None).unwrap_err();
    assert!(matches!(&e, Error::Tokenizer(m) if m.contains("past vocab_size 64")), "{e:?}");
    let mut tj: Value = serde_json::from_slice(&mini_tokenizer(62)).unwrap();
    tj["pre_tokenizer"] = json!({"type": "Whitespace"});
    let shard = Shard { file: "model.safetensors".into(), header: Safetensors::parse(&bytes).unwrap(), bytes: &bytes };
    let e = hf::to_gguf(&serde_json::to_vec(&config).unwrap(), &serde_json::to_vec(&tj).unwrap(), None, &[shard], None, None).unwrap_err();
    assert!(matches!(&e, Error::Unsupported(m) if m.contains("pre-tokenizer") && m.contains("Whitespace")), "{e:?}");
}
