//! Hugging Face checkpoints (config.json + tokenizer.json + safetensors, single or sharded) as
//! an in-memory GGUF, so that every architecture, backend and the tokenizer load them unchanged.
//!
//! What llama.cpp's `convert_hf_to_gguf.py` does, for `LlamaForCausalLM` and `Qwen2ForCausalLM`:
//! - config.json → `{arch}.*` metadata, validated and bounded before anything is sized by it;
//! - HF tensor names → GGUF names, each tensor's shape checked against the config first; shapes
//!   `[rows, cols]` become GGML dims `[cols, rows]` with the same bytes;
//! - Llama's q/k rows are permuted (`permute` there): HF rotates the halves of a head
//!   ("rotate_half"), GGUF `llama` rotates adjacent pairs; Qwen2 is NEOX in GGUF and unpermuted;
//! - weights: F32 stays F32, F16 stays F16, BF16 becomes F16 when every value of the tensor is
//!   within f16's range (bf16's 8 significant bits fit f16's 11, so only values below 2^-14 lose
//!   bits, by less than 2^-25; llama.cpp's `--outtype f16` rounds the same way) and F32
//!   otherwise; 1-D tensors (norms, biases) are F32; with `quantize`, every 2-D tensor whose rows are whole blocks is quantized to
//!   Q8_0 or Q4_0 exactly as gguf-py's reference does ([`crate::quant::quantize`]);
//! - tokenizer.json → `tokenizer.ggml.*`: tokens padded to `vocab_size` with `[PAD{i}]`, merges,
//!   token types (added tokens that are special or look like `<|...|>` are control tokens), BOS
//!   and EOS ids from config.json, `add_bos_token` from tokenizer_config.json when present, and
//!   the pre-tokenizer named by recognising tokenizer.json's split (llama.cpp hashes the output
//!   instead; an unknown split is refused rather than guessed).
//!
//! Memory: the safetensors files are memory-mapped; the GGUF is written once into a buffer
//! reserved for its final size (the one copy of the weights, as in wasm).

use std::collections::HashMap;

use serde_json::Value as Json;

use crate::arch::llama::{MAX_DIM, MAX_HEADS, MAX_LAYERS};
use crate::error::{Error, Result};
use crate::gguf::Value;
use crate::gguf_writer::{self, TensorSpec};
use crate::quant::{self, GgmlType};
use crate::safetensors::{Dtype, Safetensors, TensorView};

const MAX_VOCAB: usize = 1 << 22;
const MAX_CTX: usize = 1 << 24;

/// The pre-tokenizer splits of tokenizer.json nib recognises, and llama.cpp's names for them.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

// llama.cpp's token types (`LLAMA_TOKEN_TYPE_*`).
const NORMAL: i32 = 1;
const UNUSED: i32 = 5;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
}

impl Arch {
    fn gguf_name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
        }
    }
}

/// What nib reads of config.json.
#[derive(Debug, Clone, PartialEq)]
pub struct HfConfig {
    pub arch: Arch,
    pub hidden: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// config.json names `head_dim` (not hidden / heads): written as `attention.key_length`.
    pub explicit_head_dim: bool,
    pub ffn: usize,
    pub eps: f32,
    pub theta: f32,
    pub ctx: usize,
    pub vocab: usize,
    pub tied: bool,
    /// Linear RoPE scaling factor (DeepSeek-Coder: 4).
    pub rope_linear: Option<f32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
}

fn cfg_err(msg: String) -> Error {
    Error::Model(format!("config.json: {msg}"))
}

impl HfConfig {
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let j: Json = serde_json::from_slice(bytes).map_err(|e| cfg_err(format!("not JSON: {e}")))?;
        let arch_name = j.get("architectures").and_then(|a| a.get(0)).and_then(Json::as_str).unwrap_or("(none)");
        let arch = match arch_name {
            "LlamaForCausalLM" => Arch::Llama,
            "Qwen2ForCausalLM" => Arch::Qwen2,
            other => return Err(Error::Unsupported(format!("config.json architecture {other:?} (nib reads LlamaForCausalLM, Qwen2ForCausalLM)"))),
        };
        let int = |key: &str, max: usize, default: Option<usize>| -> Result<usize> {
            match j.get(key) {
                None | Some(Json::Null) => default.ok_or_else(|| cfg_err(format!("{key} is missing"))),
                Some(v) => v
                    .as_u64()
                    .and_then(|v| usize::try_from(v).ok())
                    .filter(|&v| (1..=max).contains(&v))
                    .ok_or_else(|| cfg_err(format!("{key} = {v} is not an integer in 1..={max}"))),
            }
        };
        let float = |key: &str, default: Option<f32>| -> Result<f32> {
            match j.get(key) {
                None | Some(Json::Null) => default.ok_or_else(|| cfg_err(format!("{key} is missing"))),
                Some(v) => v
                    .as_f64()
                    .map(|x| x as f32)
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .ok_or_else(|| cfg_err(format!("{key} = {v} is not a positive number"))),
            }
        };
        let hidden = int("hidden_size", MAX_DIM, None)?;
        let n_heads = int("num_attention_heads", MAX_HEADS, None)?;
        let n_kv_heads = int("num_key_value_heads", MAX_HEADS, Some(n_heads))?;
        if n_heads % n_kv_heads != 0 {
            return Err(cfg_err(format!("{n_heads} attention heads cannot share {n_kv_heads} key/value heads")));
        }
        let explicit_head_dim = !matches!(j.get("head_dim"), None | Some(Json::Null));
        let head_dim = match explicit_head_dim {
            true => int("head_dim", MAX_DIM, None)?,
            false if hidden % n_heads == 0 => hidden / n_heads,
            false => return Err(cfg_err(format!("hidden_size {hidden} is not a multiple of {n_heads} heads"))),
        };
        if head_dim % 2 != 0 {
            return Err(cfg_err(format!("head dimension {head_dim} is odd (RoPE rotates pairs)")));
        }
        let rope_linear = match j.get("rope_scaling") {
            None | Some(Json::Null) => None,
            Some(s) => match s.get("rope_type").or_else(|| s.get("type")).and_then(Json::as_str) {
                Some("linear") => {
                    let f = s.get("factor").and_then(Json::as_f64).map(|x| x as f32).filter(|x| x.is_finite() && *x > 0.0);
                    Some(f.ok_or_else(|| cfg_err(format!("rope_scaling.factor of {s} is not a positive number")))?)
                }
                other => return Err(Error::Unsupported(format!("config.json rope_scaling type {other:?} (nib reads linear)"))),
            },
        };
        if j.get("attention_bias").and_then(Json::as_bool) == Some(true) && arch == Arch::Llama {
            return Err(Error::Unsupported("config.json: Llama with attention_bias".into()));
        }
        let tied = match j.get("tie_word_embeddings") {
            None | Some(Json::Null) => false, // LlamaConfig's and Qwen2Config's default
            Some(v) => v.as_bool().ok_or_else(|| cfg_err(format!("tie_word_embeddings = {v} is not a boolean")))?,
        };
        let token = |key: &str| -> Result<Option<u32>> {
            let v = match j.get(key) {
                Some(Json::Array(a)) => a.first(),
                other => other,
            };
            match v {
                None | Some(Json::Null) => Ok(None),
                Some(v) => v.as_u64().and_then(|v| u32::try_from(v).ok()).map(Some).ok_or_else(|| cfg_err(format!("{key} = {v} is not a token id"))),
            }
        };
        Ok(HfConfig {
            arch,
            hidden,
            n_layers: int("num_hidden_layers", MAX_LAYERS, None)?,
            n_heads,
            n_kv_heads,
            head_dim,
            explicit_head_dim,
            ffn: int("intermediate_size", MAX_DIM * 8, None)?,
            eps: float("rms_norm_eps", None)?,
            theta: float("rope_theta", Some(10_000.0))?,
            ctx: int("max_position_embeddings", MAX_CTX, Some(2048))?,
            vocab: int("vocab_size", MAX_VOCAB, None)?,
            tied,
            rope_linear,
            bos: token("bos_token_id")?,
            eos: token("eos_token_id")?,
        })
    }

    /// The `{arch}.*` metadata llama.cpp's converter writes.
    fn metadata(&self) -> Vec<(String, Value)> {
        let a = self.arch.gguf_name();
        let u = |k: &str, v: usize| (format!("{a}.{k}"), Value::U32(v as u32)); // all bounded far below u32::MAX
        let mut m = vec![
            ("general.architecture".to_string(), Value::String(a.into())),
            u("block_count", self.n_layers),
            u("context_length", self.ctx),
            u("embedding_length", self.hidden),
            u("feed_forward_length", self.ffn),
            u("attention.head_count", self.n_heads),
            u("attention.head_count_kv", self.n_kv_heads),
            (format!("{a}.rope.freq_base"), Value::F32(self.theta)),
            (format!("{a}.attention.layer_norm_rms_epsilon"), Value::F32(self.eps)),
            u("vocab_size", self.vocab),
        ];
        if self.explicit_head_dim {
            m.push(u("attention.key_length", self.head_dim));
            m.push(u("attention.value_length", self.head_dim));
            m.push(u("rope.dimension_count", self.head_dim));
        }
        if let Some(f) = self.rope_linear {
            m.push((format!("{a}.rope.scaling.type"), Value::String("linear".into())));
            m.push((format!("{a}.rope.scaling.factor"), Value::F32(f)));
        }
        m
    }
}

/// One safetensors file of a checkpoint: its name, parsed header and bytes.
pub struct Shard<'a> {
    pub file: String,
    pub header: Safetensors,
    pub bytes: &'a [u8],
}

/// The checkpoint's tensors by name, across its shards.
struct Tensors<'s, 'a> {
    by_name: HashMap<&'s str, (&'s TensorView, &'a [u8])>,
}

impl<'s, 'a> Tensors<'s, 'a> {
    /// Indexes every shard's tensors; a name in two shards is an error, and so is a
    /// `weight_map` entry whose shard does not hold it.
    fn new(shards: &'s [Shard<'a>], weight_map: Option<&HashMap<String, String>>) -> Result<Self> {
        let mut by_name = HashMap::new();
        for s in shards {
            for t in &s.header.tensors {
                if by_name.insert(t.name.as_str(), (t, s.bytes)).is_some() {
                    return Err(Error::Model(format!("tensor {} is in more than one shard", t.name)));
                }
            }
        }
        for (name, file) in weight_map.into_iter().flatten() {
            let held = shards.iter().any(|s| &s.file == file && s.header.tensor(name).is_some());
            if !held {
                return Err(Error::Model(format!("model.safetensors.index.json maps {name} to {file}, which does not hold it")));
            }
        }
        Ok(Tensors { by_name })
    }

    /// The tensor `name` with its row-major `shape` checked.
    fn get(&self, name: &str, shape: &[usize]) -> Result<(&'s TensorView, &'a [u8])> {
        let &(t, bytes) = self.by_name.get(name).ok_or_else(|| Error::Model(format!("the checkpoint has no tensor {name}")))?;
        if t.shape.iter().map(|&d| d as u128).ne(shape.iter().map(|&d| d as u128)) {
            return Err(Error::Model(format!("tensor {name} has shape {:?}, config.json implies {shape:?}", t.shape)));
        }
        if !matches!(t.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(Error::Unsupported(format!("tensor {name} has dtype {:?} (nib reads F32, F16, BF16)", t.dtype)));
        }
        Ok((t, bytes))
    }
}

/// One GGUF tensor and where its data comes from.
struct Planned<'s, 'a> {
    spec: TensorSpec,
    src: &'s TensorView,
    bytes: &'a [u8],
    rows: usize,
    cols: usize,
    /// Llama q/k: the heads whose rows are permuted.
    permute_heads: Option<usize>,
}

/// The source row that output row `r` takes under convert_hf_to_gguf.py's `permute`: within each
/// head of `head_dim` rows, output row `2i + t` is input row `t * head_dim / 2 + i`.
fn permuted_row(r: usize, head_dim: usize) -> usize {
    let (h, j) = (r / head_dim, r % head_dim);
    h * head_dim + (j % 2) * (head_dim / 2) + j / 2
}

/// Row `r` of a source tensor as f32.
fn row_f32(src: &[u8], dtype: Dtype, out: &mut [f32]) {
    match dtype {
        Dtype::F16 => src.chunks_exact(2).zip(out).for_each(|(b, o)| *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
        Dtype::BF16 => src.chunks_exact(2).zip(out).for_each(|(b, o)| *o = half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        _ => src.chunks_exact(4).zip(out).for_each(|(b, o)| *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    }
}

/// Whether every BF16 value of `data` is within f16's range (NaN and infinities stay what they
/// are), so F16 holds it to f16's precision.
fn bf16_fits_f16(data: &[u8]) -> bool {
    data.chunks_exact(2).all(|b| {
        let x = half::bf16::from_le_bytes([b[0], b[1]]).to_f32();
        !x.is_finite() || x.abs() <= f32::from(half::f16::MAX)
    })
}

impl Planned<'_, '_> {
    /// Appends this tensor's GGUF data to `out`.
    fn write(&self, out: &mut Vec<u8>) -> Result<()> {
        let data = self.bytes.get(self.src.start..self.src.end).ok_or_else(|| Error::Model(format!("tensor {} lies outside its file", self.src.name)))?;
        let row_bytes = self.cols * self.src.dtype.size() as usize;
        let mut f = vec![0f32; self.cols];
        for r in 0..self.rows {
            let s = match self.permute_heads {
                Some(heads) => permuted_row(r, self.rows / heads),
                None => r,
            };
            let src = data.get(s * row_bytes..(s + 1) * row_bytes).ok_or_else(|| Error::Model(format!("tensor {}: row {s} out of range", self.src.name)))?;
            match (self.spec.ty, self.src.dtype) {
                (GgmlType::F16, Dtype::F16) => out.extend_from_slice(src),
                (GgmlType::F16, _) => {
                    row_f32(src, self.src.dtype, &mut f);
                    f.iter().for_each(|x| out.extend_from_slice(&half::f16::from_f32(*x).to_le_bytes()));
                }
                (GgmlType::F32, _) => {
                    row_f32(src, self.src.dtype, &mut f);
                    f.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
                }
                (ty, _) => {
                    row_f32(src, self.src.dtype, &mut f);
                    quant::quantize(ty, &f, out)?;
                }
            }
        }
        Ok(())
    }
}

/// The GGUF tensors of `c` from the checkpoint, with their target types.
fn plan<'s, 'a>(c: &HfConfig, t: &Tensors<'s, 'a>, quantize: Option<GgmlType>) -> Result<Vec<Planned<'s, 'a>>> {
    let (h, q_dim, kv_dim) = (c.hidden, c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
    // (GGUF name, HF name, HF shape, permuted heads)
    let mut list: Vec<(String, String, Vec<usize>, Option<usize>)> = vec![("token_embd.weight".into(), "model.embed_tokens.weight".into(), vec![c.vocab, h], None)];
    let llama = c.arch == Arch::Llama;
    for i in 0..c.n_layers {
        let (g, f) = (|s: &str| format!("blk.{i}.{s}"), |s: &str| format!("model.layers.{i}.{s}"));
        list.push((g("attn_norm.weight"), f("input_layernorm.weight"), vec![h], None));
        list.push((g("attn_q.weight"), f("self_attn.q_proj.weight"), vec![q_dim, h], llama.then_some(c.n_heads)));
        list.push((g("attn_k.weight"), f("self_attn.k_proj.weight"), vec![kv_dim, h], llama.then_some(c.n_kv_heads)));
        list.push((g("attn_v.weight"), f("self_attn.v_proj.weight"), vec![kv_dim, h], None));
        if c.arch == Arch::Qwen2 {
            list.push((g("attn_q.bias"), f("self_attn.q_proj.bias"), vec![q_dim], None));
            list.push((g("attn_k.bias"), f("self_attn.k_proj.bias"), vec![kv_dim], None));
            list.push((g("attn_v.bias"), f("self_attn.v_proj.bias"), vec![kv_dim], None));
        }
        list.push((g("attn_output.weight"), f("self_attn.o_proj.weight"), vec![h, q_dim], None));
        list.push((g("ffn_norm.weight"), f("post_attention_layernorm.weight"), vec![h], None));
        list.push((g("ffn_gate.weight"), f("mlp.gate_proj.weight"), vec![c.ffn, h], None));
        list.push((g("ffn_up.weight"), f("mlp.up_proj.weight"), vec![c.ffn, h], None));
        list.push((g("ffn_down.weight"), f("mlp.down_proj.weight"), vec![h, c.ffn], None));
    }
    list.push(("output_norm.weight".into(), "model.norm.weight".into(), vec![h], None));
    if !c.tied {
        list.push(("output.weight".into(), "lm_head.weight".into(), vec![c.vocab, h], None));
    }
    list.into_iter()
        .map(|(gguf_name, hf_name, shape, permute_heads)| {
            let (src, bytes) = t.get(&hf_name, &shape)?;
            let (rows, cols) = match shape[..] {
                [r, c] => (r, c),
                [c] => (1, c),
                _ => (0, 0),
            };
            let matrix = shape.len() == 2;
            let ty = match (quantize, src.dtype) {
                (Some(q), _) if matrix && cols % q.block_size() == 0 => q,
                (_, Dtype::F16) if matrix => GgmlType::F16,
                (_, Dtype::BF16) if matrix && bf16_fits_f16(bytes.get(src.start..src.end).unwrap_or_default()) => GgmlType::F16,
                _ => GgmlType::F32,
            };
            let dims = shape.iter().rev().map(|&d| d as u64).collect();
            Ok(Planned { spec: TensorSpec { name: gguf_name, dims, ty }, src, bytes, rows, cols, permute_heads })
        })
        .collect()
}

/// Whether an added token's text looks like a control token (convert_hf_to_gguf.py's
/// `does_token_look_special`, for the spellings of the supported families).
fn looks_special(text: &str) -> bool {
    matches!(text, "<pad>" | "<mask>") || (text.starts_with("<|") && text.ends_with("|>")) || (text.starts_with("<\u{FF5C}") && text.ends_with("\u{FF5C}>"))
}

/// llama.cpp's pre-tokenizer name for tokenizer.json's `pre_tokenizer`, if nib knows it.
fn pre_tokenizer_name(pre: &Json) -> Option<&'static str> {
    fn kind(v: &Json) -> &str {
        v.get("type").and_then(Json::as_str).unwrap_or("")
    }
    let byte_level = |v: &Json, regex: bool| kind(v) == "ByteLevel" && v.get("use_regex").and_then(Json::as_bool).unwrap_or(true) == regex;
    if byte_level(pre, true) {
        return Some("gpt-2");
    }
    let steps = pre.get("pretokenizers").and_then(Json::as_array).filter(|_| kind(pre) == "Sequence")?;
    match &steps[..] {
        [split, bl] if kind(split) == "Split" && byte_level(bl, false) => {
            match split.get("pattern").and_then(|p| p.get("Regex")).and_then(Json::as_str)? {
                QWEN2_SPLIT => Some("qwen2"),
                LLAMA3_SPLIT => Some("llama-bpe"),
                _ => None,
            }
        }
        // SmolLM / StarCoder: each digit apart, then GPT-2's split.
        [digits, bl] if kind(digits) == "Digits" && digits.get("individual_digits").and_then(Json::as_bool) == Some(true) && byte_level(bl, true) => Some("smollm"),
        _ => None,
    }
}

/// `tokenizer.ggml.*` metadata from tokenizer.json (byte-level BPE), padded to `c.vocab` tokens.
fn tokenizer_metadata(c: &HfConfig, tokenizer_json: &[u8], tokenizer_config: Option<&[u8]>) -> Result<Vec<(String, Value)>> {
    let tok_err = |m: String| Error::Tokenizer(format!("tokenizer.json: {m}"));
    let j: Json = serde_json::from_slice(tokenizer_json).map_err(|e| tok_err(format!("not JSON: {e}")))?;
    let model = j.get("model").ok_or_else(|| tok_err("no model".into()))?;
    if model.get("type").and_then(Json::as_str) != Some("BPE") {
        return Err(Error::Unsupported("tokenizer.json model other than BPE".into()));
    }
    let pre_json = j.get("pre_tokenizer").unwrap_or(&Json::Null);
    let pre = pre_tokenizer_name(pre_json).ok_or_else(|| Error::Unsupported(format!("tokenizer.json pre-tokenizer {}", excerpt(pre_json))))?;

    // c.vocab is bounded, and the embedding's bytes (checked before this) hold that many rows.
    let mut tokens: Vec<Option<(String, i32)>> = vec![None; c.vocab];
    let mut set = |id: Option<u64>, text: &str, ty: i32| -> Result<()> {
        let slot = id.and_then(|i| usize::try_from(i).ok()).and_then(|i| tokens.get_mut(i));
        let slot = slot.ok_or_else(|| tok_err(format!("token {text:?} has id {id:?}, past vocab_size {} of config.json", c.vocab)))?;
        *slot = Some((text.to_owned(), ty));
        Ok(())
    };
    let vocab = model.get("vocab").and_then(Json::as_object).ok_or_else(|| tok_err("model.vocab is not an object".into()))?;
    for (text, id) in vocab {
        set(id.as_u64(), text, NORMAL)?;
    }
    for a in j.get("added_tokens").and_then(Json::as_array).into_iter().flatten() {
        let text = a.get("content").and_then(Json::as_str).ok_or_else(|| tok_err("an added token has no content".into()))?;
        let special = a.get("special").and_then(Json::as_bool).unwrap_or(false) || looks_special(text);
        set(a.get("id").and_then(Json::as_u64), text, if special { CONTROL } else { USER_DEFINED })?;
    }
    let (texts, types): (Vec<Value>, Vec<Value>) = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let (text, ty) = t.unwrap_or_else(|| (format!("[PAD{i}]"), UNUSED));
            (Value::String(text), Value::I32(ty))
        })
        .unzip();
    let merges = model
        .get("merges")
        .and_then(Json::as_array)
        .ok_or_else(|| tok_err("model.merges is not an array".into()))?
        .iter()
        .map(|m| match m {
            Json::String(s) => Some(Value::String(s.clone())),
            Json::Array(p) => match &p[..] {
                [Json::String(a), Json::String(b)] => Some(Value::String(format!("{a} {b}"))),
                _ => None,
            },
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| tok_err("a merge is neither \"a b\" nor [a, b]".into()))?;

    let mut m = vec![
        ("tokenizer.ggml.model".to_string(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".to_string(), Value::String(pre.into())),
        ("tokenizer.ggml.tokens".to_string(), Value::Array(texts)),
        ("tokenizer.ggml.token_type".to_string(), Value::Array(types)),
        ("tokenizer.ggml.merges".to_string(), Value::Array(merges)),
    ];
    for (key, id) in [("tokenizer.ggml.bos_token_id", c.bos), ("tokenizer.ggml.eos_token_id", c.eos)] {
        if let Some(id) = id {
            m.push((key.into(), Value::U32(id)));
        }
    }
    if let Some(bytes) = tokenizer_config {
        let tc: Json = serde_json::from_slice(bytes).map_err(|e| Error::Tokenizer(format!("tokenizer_config.json: not JSON: {e}")))?;
        if let Some(b) = tc.get("add_bos_token").and_then(Json::as_bool) {
            m.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(b)));
        }
    }
    Ok(m)
}

fn excerpt(j: &Json) -> String {
    let s = j.to_string();
    match s.char_indices().nth(120) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

/// Parses a `--quantize` value: `q8_0` or `q4_0`.
pub fn parse_quantize(s: &str) -> Result<GgmlType> {
    match s.to_ascii_lowercase().as_str() {
        "q8_0" => Ok(GgmlType::Q8_0),
        "q4_0" => Ok(GgmlType::Q4_0),
        _ => Err(Error::InvalidArgument(format!("quantize {s:?}: expected q8_0 or q4_0"))),
    }
}

/// The GGUF file of a checkpoint given as bytes: config.json, tokenizer.json, the optional
/// tokenizer_config.json, the safetensors shards and the index's `weight_map` when sharded.
pub fn to_gguf(
    config_json: &[u8],
    tokenizer_json: &[u8],
    tokenizer_config: Option<&[u8]>,
    shards: &[Shard],
    weight_map: Option<&HashMap<String, String>>,
    quantize: Option<GgmlType>,
) -> Result<Vec<u8>> {
    if let Some(q) = quantize.filter(|q| !matches!(q, GgmlType::Q8_0 | GgmlType::Q4_0)) {
        return Err(Error::InvalidArgument(format!("quantize to {} (nib quantizes to Q8_0, Q4_0)", q.name())));
    }
    let c = HfConfig::parse(config_json)?;
    let tensors = Tensors::new(shards, weight_map)?;
    let planned = plan(&c, &tensors, quantize)?;
    let mut metadata = c.metadata();
    metadata.extend(tokenizer_metadata(&c, tokenizer_json, tokenizer_config)?);
    let specs: Vec<TensorSpec> = planned.iter().map(|p| TensorSpec { name: p.spec.name.clone(), dims: p.spec.dims.clone(), ty: p.spec.ty }).collect();
    gguf_writer::write(&metadata, &specs, |i, out| match planned.get(i) {
        Some(p) => p.write(out),
        None => Err(Error::Model(format!("no tensor {i}"))),
    })
}

/// Whether `path` is a checkpoint directory (it holds config.json).
pub fn is_checkpoint(path: &std::path::Path) -> bool {
    path.is_dir() && path.join("config.json").is_file()
}

/// Reads a checkpoint directory (model.safetensors, or model.safetensors.index.json and its
/// shards, memory-mapped) into GGUF bytes every loader takes.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_dir(dir: &std::path::Path, quantize: Option<GgmlType>) -> Result<crate::gguf::ModelBytes> {
    use crate::gguf::ModelBytes;
    let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.join(name).display())));
    let config = read("config.json")?;
    let tokenizer = read("tokenizer.json")?;
    let tokenizer_config = dir.join("tokenizer_config.json").is_file().then(|| read("tokenizer_config.json")).transpose()?;
    let index_path = dir.join("model.safetensors.index.json");
    let (files, weight_map) = if index_path.is_file() {
        let j: Json = serde_json::from_slice(&read("model.safetensors.index.json")?).map_err(|e| Error::Model(format!("model.safetensors.index.json: not JSON: {e}")))?;
        let map: HashMap<String, String> = j
            .get("weight_map")
            .and_then(Json::as_object)
            .and_then(|m| m.iter().map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
            .ok_or_else(|| Error::Model("model.safetensors.index.json: weight_map is not an object of file names".into()))?;
        let mut files: Vec<String> = map.values().cloned().collect();
        files.sort();
        files.dedup();
        // Shards are files beside the index, never paths elsewhere.
        if let Some(bad) = files.iter().find(|f| f.contains(['/', '\\']) || f.starts_with('.') || !f.ends_with(".safetensors")) {
            return Err(Error::Model(format!("model.safetensors.index.json: shard {bad:?} is not a .safetensors file name")));
        }
        (files, Some(map))
    } else {
        (vec!["model.safetensors".to_string()], None)
    };
    let maps = files.iter().map(|f| ModelBytes::open(&dir.join(f))).collect::<Result<Vec<_>>>()?;
    let shards = files
        .iter()
        .zip(&maps)
        .map(|(f, b)| {
            let header = Safetensors::parse(b).map_err(|mut e| {
                e.field = format!("{f}: {}", e.field);
                e
            })?;
            Ok::<_, Error>(Shard { file: f.clone(), header, bytes: b })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ModelBytes::Owned(to_gguf(&config, &tokenizer, tokenizer_config.as_deref(), &shards, weight_map.as_ref(), quantize)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// convert_hf_to_gguf.py's permute on row indices: reshape (heads, 2, hd/2) → swap → flatten.
    #[test]
    fn permutation_is_llama_cpp_s() {
        let (heads, hd) = (3, 8);
        let mut want = Vec::new();
        for h in 0..heads {
            for i in 0..hd / 2 {
                for t in 0..2 {
                    want.push(h * hd + t * (hd / 2) + i);
                }
            }
        }
        let got: Vec<usize> = (0..heads * hd).map(|r| permuted_row(r, hd)).collect();
        assert_eq!(got, want);
    }
}
