//! The Llama family (GGUF architecture `llama`): SmolLM2, TinyLlama, DeepSeek-Coder, CodeLlama.
//!
//! Pre-norm decoder: RMSNorm → grouped-query attention with rotary positions → residual,
//! RMSNorm → SwiGLU feed-forward → residual; a final RMSNorm and the output matrix, which is the
//! token embedding itself when the file has no `output.weight` (tied, as in SmolLM2).
//!
//! The decoder here is shared with the architectures that only add to it (`qwen2`: q/k/v
//! biases and NEOX RoPE): they read their [`Config`] with [`Config::read`] and load with
//! [`Llama::load_with`].

use crate::backend::{AttnShape, Backend, Rope};
use crate::error::{Error, Result};
use crate::gguf::Gguf;

/// Upper bounds that keep a hostile config from asking for absurd allocations (the KV cache is
/// sized from these) while leaving room for every real model nib targets.
pub(crate) const MAX_LAYERS: usize = 512;
pub(crate) const MAX_DIM: usize = 1 << 16;
pub(crate) const MAX_HEADS: usize = 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub n_layers: usize,
    /// Width of the residual stream.
    pub dim: usize,
    pub attn: AttnShape,
    /// Inner width of the feed-forward block.
    pub ffn_dim: usize,
    pub vocab: usize,
    pub eps: f32,
    pub rope: Rope,
    /// Context the model was trained for.
    pub ctx_len: usize,
}

impl Config {
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        Config::read(g, "llama", false)
    }

    /// The config of a Llama-like architecture `arch` from its `{arch}.*` metadata, which is
    /// validated and bounded; `neox` chooses the RoPE pairing llama.cpp uses for `arch`.
    pub fn read(g: &Gguf, arch: &str, neox: bool) -> Result<Self> {
        let found = g.architecture().unwrap_or("");
        if found != arch {
            return Err(Error::Unsupported(format!("architecture {found:?} (this reader handles {arch:?})")));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let usize_of = |k: &str, max: usize| -> Result<usize> {
            let v = g.get(&key(k)).and_then(|v| v.as_u64()).ok_or_else(|| Error::Model(format!("missing or non-integer {}", key(k))))?;
            usize::try_from(v).ok().filter(|&v| v >= 1 && v <= max).ok_or_else(|| Error::Model(format!("{} = {v} is out of range 1..={max}", key(k))))
        };
        let n_layers = usize_of("block_count", MAX_LAYERS)?;
        let dim = usize_of("embedding_length", MAX_DIM)?;
        let n_heads = usize_of("attention.head_count", MAX_HEADS)?;
        let n_kv_heads = match g.get(&key("attention.head_count_kv")) {
            Some(_) => usize_of("attention.head_count_kv", MAX_HEADS)?,
            None => n_heads,
        };
        let ffn_dim = usize_of("feed_forward_length", MAX_DIM * 8)?;
        if n_heads % n_kv_heads != 0 {
            return Err(Error::Model(format!("{n_heads} heads cannot share {n_kv_heads} kv heads")));
        }
        let head_dim = match g.get(&key("attention.key_length")) {
            Some(_) => usize_of("attention.key_length", MAX_DIM)?,
            None if dim % n_heads == 0 => dim / n_heads,
            None => return Err(Error::Model(format!("embedding_length {dim} is not a multiple of {n_heads} heads"))),
        };
        let rope_dims = match g.get(&key("rope.dimension_count")) {
            Some(_) => usize_of("rope.dimension_count", head_dim)?,
            None => head_dim,
        };
        if rope_dims % 2 != 0 {
            return Err(Error::Model(format!("rope.dimension_count {rope_dims} is odd")));
        }
        let f32_of = |k: &str, default: f32| -> Result<f32> {
            match g.get(&key(k)) {
                None => Ok(default),
                Some(v) => v.as_f32().filter(|x| x.is_finite() && *x > 0.0).ok_or_else(|| Error::Model(format!("{} is not a positive number", key(k)))),
            }
        };
        let theta = f32_of("rope.freq_base", 10_000.0)?;
        let eps = f32_of("attention.layer_norm_rms_epsilon", 1e-5)?;
        let freq_scale = match g.get(&key("rope.scaling.type")).and_then(|v| v.as_str()) {
            None | Some("none") => 1.0,
            Some("linear") => 1.0 / f32_of("rope.scaling.factor", 1.0)?,
            Some(other) => return Err(Error::Unsupported(format!("rope scaling {other:?}"))),
        };
        let vocab = match g.get(&key("vocab_size")) {
            Some(_) => usize_of("vocab_size", 1 << 22)?,
            None => g
                .get("tokenizer.ggml.tokens")
                .and_then(|v| v.as_array())
                .map(|a| a.len())
                .ok_or_else(|| Error::Model(format!("no {arch}.vocab_size and no tokenizer.ggml.tokens")))?,
        };
        let ctx_len = match g.get(&key("context_length")) {
            Some(_) => usize_of("context_length", 1 << 24)?,
            None => 2048,
        };
        Ok(Config {
            n_layers,
            dim,
            attn: AttnShape { n_heads, n_kv_heads, head_dim, window: None },
            ffn_dim,
            vocab,
            eps,
            rope: Rope { theta, dims: rope_dims, neox, freq_scale },
            ctx_len,
        })
    }
}

/// A layer's q, k, v projections and their biases (Qwen2 has them, Llama not): apart, or
/// stacked by rows into one `(q_dim + 2 kv_dim, dim)` weight (and one `(q_dim + 2 kv_dim)` bias)
/// when the backend gains from one product (see [`Backend::stack_weights`]).
enum Qkv<W> {
    // (q_dim, dim), (kv_dim, dim), (kv_dim, dim); biases (q_dim), (kv_dim), (kv_dim)
    Apart { wq: W, wk: W, wv: W, bias: Option<[W; 3]> },
    Stacked { w: W, bias: Option<W> },
}

/// The feed-forward's gate and up projections, apart or stacked into `(2 ffn_dim, dim)`.
enum GateUp<W> {
    Apart { gate: W, up: W }, // (ffn_dim, dim) each
    Stacked(W),
}

struct Layer<W> {
    attn_norm: W, // (dim)
    qkv: Qkv<W>,
    wo: W,       // (dim, q_dim)
    ffn_norm: W, // (dim)
    gate_up: GateUp<W>,
    w_down: W, // (dim, ffn_dim)
}

/// Where a forward pass's tokens go: consecutive positions of one sequence, or one token for
/// each of several sequences.
enum Seqs<'a, 'c, C> {
    One { cache: &'a mut C, pos: usize },
    Rows { caches: &'a mut [&'c mut C], positions: &'a [usize] },
}

pub struct Llama<B: Backend> {
    pub config: Config,
    tok_embd: B::Weight,       // (vocab, dim)
    layers: Vec<Layer<B::Weight>>,
    output_norm: B::Weight,    // (dim)
    output: Option<B::Weight>, // (vocab, dim); None: tied to tok_embd
}

impl<B: Backend> Llama<B> {
    pub fn load(backend: &B, g: &Gguf) -> Result<Self> {
        Llama::load_with(backend, g, Config::from_gguf(g)?, false)
    }

    /// Loads the decoder for `config`; `qkv_bias`: every layer has `attn_{q,k,v}.bias`.
    pub fn load_with(backend: &B, g: &Gguf, config: Config, qkv_bias: bool) -> Result<Self> {
        let c = &config;
        // Each weight must exist with the shape the config implies (GGML order: [cols, rows]).
        let info = |name: &str, dims: &[usize]| -> Result<&crate::gguf::TensorInfo> {
            let info = g.tensor(name).ok_or_else(|| Error::Model(format!("missing tensor {name}")))?;
            let want: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
            if info.dims != want {
                return Err(Error::Model(format!("tensor {name} has dims {:?}, expected {want:?}", info.dims)));
            }
            Ok(info)
        };
        let get = |name: &str, dims: &[usize]| -> Result<B::Weight> { backend.load_weight(g, info(name, dims)?) };
        let (dim, q_dim, kv_dim, ffn) = (c.dim, c.attn.q_dim(), c.attn.kv_dim(), c.ffn_dim);
        let layers = (0..c.n_layers)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                let (q, k, v) = (info(&n("attn_q"), &[dim, q_dim])?, info(&n("attn_k"), &[dim, kv_dim])?, info(&n("attn_v"), &[dim, kv_dim])?);
                let b = |s: &str| format!("blk.{i}.{s}.bias");
                let biases = if qkv_bias {
                    Some([info(&b("attn_q"), &[q_dim])?, info(&b("attn_k"), &[kv_dim])?, info(&b("attn_v"), &[kv_dim])?])
                } else {
                    None
                };
                let stacked = match backend.stack_weights(g, &[q, k, v])? {
                    None => None,
                    Some(w) => match biases {
                        None => Some(Qkv::Stacked { w, bias: None }),
                        // A bias the backend cannot stack keeps the projections apart.
                        Some(bs) => backend.stack_weights(g, &bs)?.map(|b| Qkv::Stacked { w, bias: Some(b) }),
                    },
                };
                let qkv = match stacked {
                    Some(qkv) => qkv,
                    None => Qkv::Apart {
                        wq: backend.load_weight(g, q)?,
                        wk: backend.load_weight(g, k)?,
                        wv: backend.load_weight(g, v)?,
                        bias: match biases {
                            Some([bq, bk, bv]) => Some([backend.load_weight(g, bq)?, backend.load_weight(g, bk)?, backend.load_weight(g, bv)?]),
                            None => None,
                        },
                    },
                };
                let (gate, up) = (info(&n("ffn_gate"), &[dim, ffn])?, info(&n("ffn_up"), &[dim, ffn])?);
                let gate_up = match backend.stack_weights(g, &[gate, up])? {
                    Some(w) => GateUp::Stacked(w),
                    None => GateUp::Apart { gate: backend.load_weight(g, gate)?, up: backend.load_weight(g, up)? },
                };
                Ok(Layer {
                    attn_norm: get(&n("attn_norm"), &[dim])?,
                    qkv,
                    wo: get(&n("attn_output"), &[q_dim, dim])?,
                    ffn_norm: get(&n("ffn_norm"), &[dim])?,
                    gate_up,
                    w_down: get(&n("ffn_down"), &[ffn, dim])?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let output = match g.tensor("output.weight") {
            Some(_) => Some(get("output.weight", &[dim, c.vocab])?),
            None => None,
        };
        Ok(Llama {
            tok_embd: get("token_embd.weight", &[dim, c.vocab])?,
            output_norm: get("output_norm.weight", &[dim])?,
            output,
            layers,
            config,
        })
    }

    /// Runs `ids`, which sit at positions `pos..pos + ids.len()`, through the model, adding their
    /// keys and values to `cache`. Returns logits `(ids.len(), vocab)` when `all_logits`, else
    /// only the last token's `(1, vocab)`.
    pub fn forward(&self, b: &B, cache: &mut B::Cache, ids: &[u32], pos: usize, all_logits: bool) -> Result<B::Tensor> {
        self.forward_embedded(b, cache, b.embed(&self.tok_embd, ids)?, pos, all_logits)
    }

    /// The token embedding table `(vocab, dim)`: a GPU decode loop embeds ids that never left
    /// the GPU with it.
    pub fn embedding(&self) -> &B::Weight {
        &self.tok_embd
    }

    /// [`Llama::forward`] from embedded tokens `x (n, dim)`.
    pub fn forward_embedded(&self, b: &B, cache: &mut B::Cache, x: B::Tensor, pos: usize, all_logits: bool) -> Result<B::Tensor> {
        self.run(b, Seqs::One { cache, pos }, x, all_logits)
    }

    /// One token for each of several sequences (candidates decoded together): `ids[j]` goes
    /// to the sequence of `caches[j]` at position `positions[j]`. Returns logits `(n, vocab)`.
    /// The weights are read once for all rows; only attention runs row by row.
    pub fn forward_rows(&self, b: &B, caches: &mut [&mut B::Cache], ids: &[u32], positions: &[usize]) -> Result<B::Tensor> {
        self.run(b, Seqs::Rows { caches, positions }, b.embed(&self.tok_embd, ids)?, true)
    }

    fn run(&self, b: &B, mut seqs: Seqs<'_, '_, B::Cache>, mut x: B::Tensor, all_logits: bool) -> Result<B::Tensor> {
        let c = &self.config;
        let a = c.attn;
        let first_norm = self.layers.first().map_or(&self.output_norm, |l| &l.attn_norm);
        let mut h = b.rms_norm(&x, first_norm, c.eps)?; // (n, dim)
        for (i, l) in self.layers.iter().enumerate() {
            let att = match &l.qkv {
                Qkv::Apart { wq, wk, wv, bias } => {
                    let mut q = b.matmul(&h, wq)?; // (n, n_heads * hd)
                    let mut k = b.matmul(&h, wk)?; // (n, n_kv_heads * hd)
                    let mut v = b.matmul(&h, wv)?; // (n, n_kv_heads * hd)
                    if let Some([bq, bk, bv]) = bias {
                        b.add_bias(&mut q, bq)?;
                        b.add_bias(&mut k, bk)?;
                        b.add_bias(&mut v, bv)?;
                    }
                    match &mut seqs {
                        Seqs::One { cache, pos } => b.rope_attention(cache, i, *pos, &mut q, &mut k, &v, a, &c.rope)?,
                        Seqs::Rows { caches, positions } => b.rope_attention_rows(caches, i, positions, &mut q, &mut k, &v, a, &c.rope)?,
                    }
                }
                Qkv::Stacked { w, bias } => match &mut seqs {
                    Seqs::One { cache, pos } => b.qkv_attention(cache, i, *pos, &h, w, bias.as_ref(), a, &c.rope)?,
                    Seqs::Rows { caches, positions } => b.qkv_attention_rows(caches, i, positions, &h, w, bias.as_ref(), a, &c.rope)?,
                },
            }; // (n, n_heads * hd)
            h = b.add_rms_norm(&mut x, &b.matmul(&att, &l.wo)?, &l.ffn_norm, c.eps)?; // (n, dim)

            let down = match &l.gate_up {
                GateUp::Apart { gate, up } => b.swiglu_matmul(&b.matmul(&h, gate)?, &b.matmul(&h, up)?, &l.w_down)?,
                GateUp::Stacked(w) => b.matmul(&b.glu(&h, w)?, &l.w_down)?,
            }; // (n, dim)
            // The residual add, fused with the norm that opens the next layer (or the output).
            let next_norm = self.layers.get(i + 1).map_or(&self.output_norm, |l| &l.attn_norm);
            h = b.add_rms_norm(&mut x, &down, next_norm, c.eps)?; // (n, dim)
        }
        if !all_logits {
            h = b.last_row(&h)?; // (1, dim)
        }
        b.matmul(&h, self.output.as_ref().unwrap_or(&self.tok_embd)) // (rows, vocab)
    }
}
