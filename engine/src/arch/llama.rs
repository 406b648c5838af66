//! The Llama family (GGUF architecture `llama`): SmolLM2, TinyLlama, DeepSeek-Coder, CodeLlama.
//!
//! Pre-norm decoder: RMSNorm → grouped-query attention with rotary positions → residual,
//! RMSNorm → SwiGLU feed-forward → residual; a final RMSNorm and the output matrix, which is the
//! token embedding itself when the file has no `output.weight` (tied, as in SmolLM2).
//!
//! The decoder here is shared with the architectures that differ from it only by parts llama.cpp
//! names alike in every GGUF (`qwen2`: q/k/v biases and NEOX RoPE; `starcoder2` and `starcoder`:
//! LayerNorm, biases everywhere, a GELU feed-forward, fused q/k/v, learned positions): they read
//! their [`Config`] with [`Config::read`] and load with [`Llama::load_with`] and their [`Variant`].

use crate::backend::{AttnShape, Backend, Rope};
use crate::error::{Error, Result};
use crate::gguf::{Gguf, TensorInfo};

/// Upper bounds that keep a hostile config from asking for absurd allocations (the KV cache is
/// sized from these) while leaving room for every real model nib targets.
pub(crate) const MAX_LAYERS: usize = 512;
/// The residual width, and the width of q (heads × head dim, which bounds k and v's too).
pub(crate) const MAX_DIM: usize = 1 << 16;
pub(crate) const MAX_HEADS: usize = 1024;
/// The feed-forward's inner width: prefill holds `(512, ffn_dim)` f32 activations, 256 MiB at
/// this bound (Qwen2.5-Coder-7B has 18,944, StarCoder2-15B 24,576, Llama 3 405B 53,248).
pub(crate) const MAX_FFN: usize = 1 << 17;

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
        let ffn_dim = usize_of("feed_forward_length", MAX_FFN)?;
        if n_heads % n_kv_heads != 0 {
            return Err(Error::Model(format!("{n_heads} heads cannot share {n_kv_heads} kv heads")));
        }
        let head_dim = match g.get(&key("attention.key_length")) {
            Some(_) => usize_of("attention.key_length", MAX_DIM)?,
            None if dim % n_heads == 0 => dim / n_heads,
            None => return Err(Error::Model(format!("embedding_length {dim} is not a multiple of {n_heads} heads"))),
        };
        // Each field is bounded; their product sizes q, and with it k, v (n_kv_heads divides
        // n_heads) and the KV cache.
        if n_heads.checked_mul(head_dim).is_none_or(|q_dim| q_dim > MAX_DIM) {
            return Err(Error::Model(format!("{n_heads} heads × key_length {head_dim} is wider than {MAX_DIM}")));
        }
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
        // RMSNorm's epsilon, or LayerNorm's for the architectures that have it.
        let eps = match g.get(&key("attention.layer_norm_rms_epsilon")) {
            Some(_) => f32_of("attention.layer_norm_rms_epsilon", 1e-5)?,
            None => f32_of("attention.layer_norm_epsilon", 1e-5)?,
        };
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

/// How an architecture's decoder differs from Llama's. llama.cpp names the tensors alike across
/// architectures (`blk.N.attn_q.bias`, `blk.N.attn_norm.bias`, `position_embd.weight`, ...),
/// so one loader reads them all, driven by these switches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Variant {
    /// `attn_{q,k,v}.bias` (Qwen2, StarCoder2, GPTBigCode).
    pub qkv_bias: bool,
    /// q, k and v stacked in one `attn_qkv` weight (and bias) of `q_dim + 2 kv_dim` rows
    /// (GPTBigCode); loaded as its three row ranges, so the backends see what they see for
    /// three tensors.
    pub fused_qkv: bool,
    /// LayerNorm with a bias (`*_norm.bias`) in place of RMSNorm (StarCoder2, GPTBigCode).
    pub layer_norm: bool,
    /// A feed-forward `down(gelu(up(x)))` without a gate, in place of SwiGLU, and biases on
    /// `attn_output`, `ffn_up` and `ffn_down` (StarCoder2, GPTBigCode).
    pub gelu_ffn: bool,
    /// Learned absolute positions: rows of `position_embd (ctx_len, dim)` added to the token
    /// embeddings (GPTBigCode, whose config then has no rotary dims).
    pub learned_positions: bool,
}

/// A norm's parameters, `(dim)` each.
enum Norm<W> {
    Rms(W),
    Layer { weight: W, bias: W },
}

impl<W> Norm<W> {
    fn apply<B: Backend<Weight = W>>(&self, b: &B, x: &B::Tensor, eps: f32) -> Result<B::Tensor> {
        match self {
            Norm::Rms(w) => b.rms_norm(x, w, eps),
            Norm::Layer { weight, bias } => b.layer_norm(x, weight, bias, eps),
        }
    }

    /// `x += y`, then the norm of `x` (fused where the backend fuses it), for the product with
    /// `next` when that is known.
    fn add_apply<B: Backend<Weight = W>>(&self, b: &B, x: &mut B::Tensor, y: &B::Tensor, eps: f32, next: Option<&W>) -> Result<B::Tensor> {
        match (self, next) {
            (Norm::Rms(w), Some(next)) => b.add_rms_norm_before(x, y, w, eps, next),
            (Norm::Rms(w), None) => b.add_rms_norm(x, y, w, eps),
            (Norm::Layer { .. }, _) => {
                b.add_assign(x, y)?;
                self.apply(b, x, eps)
            }
        }
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

/// The feed-forward block.
enum Ffn<W> {
    /// `down(silu(gate(x)) · up(x))`; down is (dim, ffn_dim).
    SwiGlu { gate_up: GateUp<W>, down: W },
    /// `down(gelu(up(x) + up_bias)) + down_bias`: up (ffn_dim, dim), down (dim, ffn_dim), biases
    /// (ffn_dim), (dim).
    Gelu { up: W, up_bias: W, down: W, down_bias: W },
}

struct Layer<W> {
    attn_norm: Norm<W>,
    qkv: Qkv<W>,
    wo: W,               // (dim, q_dim)
    wo_bias: Option<W>,  // (dim)
    ffn_norm: Norm<W>,
    ffn: Ffn<W>,
}

/// Where a forward pass's tokens go: consecutive positions of one sequence, or one token for
/// each of several sequences.
enum Seqs<'a, 'c, C> {
    One { cache: &'a mut C, pos: usize },
    Rows { caches: &'a mut [&'c mut C], positions: &'a [usize] },
}

pub struct Llama<B: Backend> {
    pub config: Config,
    tok_embd: B::Weight,         // (vocab, dim)
    pos_embd: Option<B::Weight>, // (ctx_len, dim): learned positions
    layers: Vec<Layer<B::Weight>>,
    output_norm: Norm<B::Weight>,
    output: Option<B::Weight>, // (vocab, dim); None: tied to tok_embd
}

impl<B: Backend> Llama<B> {
    pub fn load(backend: &B, g: &Gguf) -> Result<Self> {
        Llama::load_with(backend, g, Config::from_gguf(g)?, Variant::default())
    }

    /// Loads the decoder for `config` with the parts `variant` names.
    pub fn load_with(backend: &B, g: &Gguf, config: Config, variant: Variant) -> Result<Self> {
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
        let norm = |name: &str| -> Result<Norm<B::Weight>> {
            let weight = get(&format!("{name}.weight"), &[dim])?;
            Ok(if variant.layer_norm { Norm::Layer { weight, bias: get(&format!("{name}.bias"), &[dim])? } } else { Norm::Rms(weight) })
        };
        // q, k, v (`cols` = dim), or their biases (`cols` = 1): three tensors, or three row
        // ranges of one.
        let qkv_parts = |i: usize, suffix: &str, cols: usize| -> Result<[TensorInfo; 3]> {
            let shape = |rows: usize| if cols == 1 { vec![rows] } else { vec![cols, rows] };
            if variant.fused_qkv {
                let fused = info(&format!("blk.{i}.attn_qkv.{suffix}"), &shape(q_dim + 2 * kv_dim))?;
                let part = |what: &str, start: usize, len: usize| fused.rows(format!("{}[{what}]", fused.name), start as u64, len as u64);
                Ok([part("q", 0, q_dim)?, part("k", q_dim, kv_dim)?, part("v", q_dim + kv_dim, kv_dim)?])
            } else {
                let one = |s: &str, r: usize| info(&format!("blk.{i}.{s}.{suffix}"), &shape(r)).cloned();
                Ok([one("attn_q", q_dim)?, one("attn_k", kv_dim)?, one("attn_v", kv_dim)?])
            }
        };
        let layers = (0..c.n_layers)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                let b = |s: &str| format!("blk.{i}.{s}.bias");
                let [q, k, v] = qkv_parts(i, "weight", dim)?;
                let (q, k, v) = (&q, &k, &v);
                let biases = if variant.qkv_bias { Some(qkv_parts(i, "bias", 1)?) } else { None };
                let biases = biases.as_ref().map(|[bq, bk, bv]| [bq, bk, bv]);
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
                let down = get(&n("ffn_down"), &[ffn, dim])?;
                let ffn = if variant.gelu_ffn {
                    Ffn::Gelu { up: get(&n("ffn_up"), &[dim, ffn])?, up_bias: get(&b("ffn_up"), &[ffn])?, down, down_bias: get(&b("ffn_down"), &[dim])? }
                } else {
                    let (gate, up) = (info(&n("ffn_gate"), &[dim, ffn])?, info(&n("ffn_up"), &[dim, ffn])?);
                    let gate_up = match backend.stack_weights(g, &[gate, up])? {
                        Some(w) => GateUp::Stacked(w),
                        None => GateUp::Apart { gate: backend.load_weight(g, gate)?, up: backend.load_weight(g, up)? },
                    };
                    Ffn::SwiGlu { gate_up, down }
                };
                Ok(Layer {
                    attn_norm: norm(&format!("blk.{i}.attn_norm"))?,
                    qkv,
                    wo: get(&n("attn_output"), &[q_dim, dim])?,
                    wo_bias: if variant.gelu_ffn { Some(get(&b("attn_output"), &[dim])?) } else { None },
                    ffn_norm: norm(&format!("blk.{i}.ffn_norm"))?,
                    ffn,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let output = match g.tensor("output.weight") {
            Some(_) => Some(get("output.weight", &[dim, c.vocab])?),
            None => None,
        };
        Ok(Llama {
            tok_embd: get("token_embd.weight", &[dim, c.vocab])?,
            pos_embd: if variant.learned_positions { Some(get("position_embd.weight", &[dim, c.ctx_len])?) } else { None },
            output_norm: norm("output_norm")?,
            output,
            layers,
            config,
        })
    }

    /// The output matrix `(vocab, dim)`: `output.weight`, or the token embedding when tied.
    fn output(&self) -> &B::Weight {
        self.output.as_ref().unwrap_or(&self.tok_embd)
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
        let n = b.rows(&x);
        self.run(b, Seqs::One { cache, pos }, x, pos..pos.saturating_add(n), all_logits)
    }

    /// One token for each of several sequences (candidates decoded together): `ids[j]` goes
    /// to the sequence of `caches[j]` at position `positions[j]`. Returns logits `(n, vocab)`.
    /// The weights are read once for all rows; only attention runs row by row.
    pub fn forward_rows(&self, b: &B, caches: &mut [&mut B::Cache], ids: &[u32], positions: &[usize]) -> Result<B::Tensor> {
        self.run(b, Seqs::Rows { caches, positions }, b.embed(&self.tok_embd, ids)?, positions.iter().copied(), true)
    }

    /// `x (n, dim)`, the embedded tokens at `positions`, through the decoder.
    fn run(&self, b: &B, mut seqs: Seqs<'_, '_, B::Cache>, mut x: B::Tensor, positions: impl Iterator<Item = usize>, all_logits: bool) -> Result<B::Tensor> {
        let c = &self.config;
        let a = c.attn;
        if let Some(table) = &self.pos_embd {
            let ids = positions
                .map(|p| u32::try_from(p).ok().filter(|&p| (p as usize) < c.ctx_len))
                .collect::<Option<Vec<u32>>>()
                .ok_or_else(|| Error::InvalidArgument(format!("a position past the {} learned positions", c.ctx_len)))?;
            b.add_assign(&mut x, &b.embed(table, &ids)?)?; // (n, dim)
        }
        let first_norm = self.layers.first().map_or(&self.output_norm, |l| &l.attn_norm);
        let mut h = first_norm.apply(b, &x, c.eps)?; // (n, dim)
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
            let mut o = b.matmul(&att, &l.wo)?; // (n, dim)
            if let Some(bo) = &l.wo_bias {
                b.add_bias(&mut o, bo)?;
            }
            h = l.ffn_norm.add_apply(b, &mut x, &o, c.eps, None)?; // (n, dim)

            let down = match &l.ffn {
                Ffn::SwiGlu { gate_up: GateUp::Apart { gate, up }, down } => b.swiglu_matmul(&b.matmul(&h, gate)?, &b.matmul(&h, up)?, down)?,
                Ffn::SwiGlu { gate_up: GateUp::Stacked(w), down } => b.matmul(&b.glu(&h, w)?, down)?,
                Ffn::Gelu { up, up_bias, down, down_bias } => {
                    let mut u = b.matmul(&h, up)?; // (n, ffn_dim)
                    b.add_bias(&mut u, up_bias)?;
                    let mut d = b.matmul(&b.gelu(&u)?, down)?;
                    b.add_bias(&mut d, down_bias)?;
                    d
                }
            }; // (n, dim)
            // The residual add, fused with the norm that opens the next layer (or the output).
            h = match self.layers.get(i + 1) {
                Some(next) => next.attn_norm.add_apply(b, &mut x, &down, c.eps, None)?,
                None => self.output_norm.add_apply(b, &mut x, &down, c.eps, Some(self.output()))?,
            }; // (n, dim)
        }
        if !all_logits {
            h = b.last_row(&h)?; // (1, dim)
        }
        b.matmul(&h, self.output()) // (rows, vocab)
    }
}
