//! Gemma 3 (GGUF architecture `gemma3`): Gemma 3 270M, 1B, 4B, ... text models.
//!
//! The decoder as llama.cpp's graph runs it (src/models/gemma3.cpp):
//! - the token embedding is scaled by √dim; the output matrix is the embedding (tied);
//! - per layer: RMSNorm → q, k, v; q and k RMS-normalized per head (`attn_{q,k}_norm`), NEOX
//!   RoPE, attention; the output projection is normalized (`post_attention_norm`) before the
//!   residual add; RMSNorm → GEGLU feed-forward (GELU, tanh approximation) → normalized
//!   (`post_ffw_norm`) → residual add (the converter already added 1 to every norm weight);
//! - five local layers per global one: local layers attend within a sliding window
//!   (`sliding_window`, 512) with RoPE base 10 000, every sixth layer attends to everything
//!   with `rope.freq_base` (1e6);
//! - q is scaled by 1/√head_dim, which the attention ops do (27B: 1/√(dim / heads), so q is
//!   rescaled first).

use super::llama::Config;
use crate::backend::{AttnShape, Backend, Rope};
use crate::error::{Error, Result};
use crate::gguf::Gguf;

/// Every `SWA_PATTERN`-th layer (the last of each group) is global (llama.cpp's
/// `set_swa_pattern(6)`).
const SWA_PATTERN: usize = 6;
/// RoPE base of the local layers (llama.cpp's `rope_freq_base_train_swa`).
const LOCAL_ROPE_BASE: f32 = 10_000.0;

/// Gemma 3's config: the Llama-family fields, plus the local layers' window and RoPE.
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma3Config {
    pub base: Config,
    /// Sliding window of the local layers; `None`: every layer is global.
    pub window: Option<usize>,
    pub local_rope: Rope,
    /// Factor on q before attention's 1/√head_dim (1 but for the 27B model).
    pub q_scale: f32,
}

impl Gemma3Config {
    pub fn read(g: &Gguf) -> Result<Self> {
        let base = Config::read(g, "gemma3", true)?;
        let int = |k: &str| g.get(k).map(|v| v.as_u64().ok_or_else(|| Error::Model(format!("{k} is not an integer"))));
        if let Some(v) = int("gemma3.attention.value_length").transpose()? {
            if v != base.attn.head_dim as u64 {
                return Err(Error::Unsupported(format!("gemma3 value_length {v} != key_length {}", base.attn.head_dim)));
            }
        }
        let window = match int("gemma3.attention.sliding_window").transpose()? {
            None | Some(0) => None,
            Some(w) => Some(usize::try_from(w).ok().filter(|&w| w <= 1 << 24).ok_or_else(|| Error::Model(format!("sliding_window {w} is out of range")))?),
        };
        if let Some(v) = g.get("gemma3.final_logit_softcapping") {
            if v.as_f32() != Some(0.0) {
                return Err(Error::Unsupported("gemma3 final logit soft-capping".into()));
            }
        }
        // llama.cpp: 1/√(dim / heads) for the 27B model (62 layers), else 1/√head_dim.
        let a = base.attn;
        let q_scale = if base.n_layers == 62 { (a.head_dim as f32 / (base.dim as f32 / a.n_heads as f32)).sqrt() } else { 1.0 };
        let local_rope = Rope { theta: LOCAL_ROPE_BASE, freq_scale: 1.0, ..base.rope };
        Ok(Gemma3Config { base, window, local_rope, q_scale })
    }

    /// Whether layer `i` attends within the sliding window.
    pub fn is_local(&self, i: usize) -> bool {
        self.window.is_some() && i % SWA_PATTERN < SWA_PATTERN - 1
    }
}

struct Layer<W> {
    attn_norm: W,             // (dim)
    wq: W,                    // (q_dim, dim)
    wk: W,                    // (kv_dim, dim)
    wv: W,                    // (kv_dim, dim)
    q_norm: W,                // (head_dim)
    k_norm: W,                // (head_dim)
    wo: W,                    // (dim, q_dim)
    post_attn_norm: W,        // (dim)
    ffn_norm: W,              // (dim)
    gate: W,                  // (ffn_dim, dim)
    up: W,                    // (ffn_dim, dim)
    down: W,                  // (dim, ffn_dim)
    post_ffw_norm: W,         // (dim)
}

pub struct Gemma3<B: Backend> {
    pub config: Config,
    pub gemma: Gemma3Config,
    tok_embd: B::Weight, // (vocab, dim), also the output matrix
    layers: Vec<Layer<B::Weight>>,
    output_norm: B::Weight, // (dim)
}

/// Where a forward pass's tokens go (as in `llama.rs`): consecutive positions of one sequence,
/// or one token for each of several sequences.
enum Seqs<'a, 'c, C> {
    One { cache: &'a mut C, pos: usize },
    Rows { caches: &'a mut [&'c mut C], positions: &'a [usize] },
}

impl<B: Backend> Gemma3<B> {
    pub fn load(backend: &B, g: &Gguf) -> Result<Self> {
        let gemma = Gemma3Config::read(g)?;
        let c = &gemma.base;
        let get = |name: &str, dims: &[usize]| -> Result<B::Weight> {
            let info = g.tensor(name).ok_or_else(|| Error::Model(format!("missing tensor {name}")))?;
            let want: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
            if info.dims != want {
                return Err(Error::Model(format!("tensor {name} has dims {:?}, expected {want:?}", info.dims)));
            }
            backend.load_weight(g, info)
        };
        let (dim, q_dim, kv_dim, hd, ffn) = (c.dim, c.attn.q_dim(), c.attn.kv_dim(), c.attn.head_dim, c.ffn_dim);
        let layers = (0..c.n_layers)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                Ok(Layer {
                    attn_norm: get(&n("attn_norm"), &[dim])?,
                    wq: get(&n("attn_q"), &[dim, q_dim])?,
                    wk: get(&n("attn_k"), &[dim, kv_dim])?,
                    wv: get(&n("attn_v"), &[dim, kv_dim])?,
                    q_norm: get(&n("attn_q_norm"), &[hd])?,
                    k_norm: get(&n("attn_k_norm"), &[hd])?,
                    wo: get(&n("attn_output"), &[q_dim, dim])?,
                    post_attn_norm: get(&n("post_attention_norm"), &[dim])?,
                    ffn_norm: get(&n("ffn_norm"), &[dim])?,
                    gate: get(&n("ffn_gate"), &[dim, ffn])?,
                    up: get(&n("ffn_up"), &[dim, ffn])?,
                    down: get(&n("ffn_down"), &[ffn, dim])?,
                    post_ffw_norm: get(&n("post_ffw_norm"), &[dim])?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if g.tensor("output.weight").is_some() {
            return Err(Error::Unsupported("gemma3 with an untied output matrix".into()));
        }
        Ok(Gemma3 {
            tok_embd: get("token_embd.weight", &[dim, c.vocab])?,
            output_norm: get("output_norm.weight", &[dim])?,
            layers,
            config: c.clone(),
            gemma,
        })
    }

    /// See [`super::llama::Llama::forward`].
    pub fn forward(&self, b: &B, cache: &mut B::Cache, ids: &[u32], pos: usize, all_logits: bool) -> Result<B::Tensor> {
        self.forward_embedded(b, cache, b.embed(&self.tok_embd, ids)?, pos, all_logits)
    }

    /// The token embedding table `(vocab, dim)`, unscaled.
    pub fn embedding(&self) -> &B::Weight {
        &self.tok_embd
    }

    /// [`Gemma3::forward`] from embedded tokens `x (n, dim)` (the table's rows, unscaled).
    pub fn forward_embedded(&self, b: &B, cache: &mut B::Cache, x: B::Tensor, pos: usize, all_logits: bool) -> Result<B::Tensor> {
        self.run(b, Seqs::One { cache, pos }, x, all_logits)
    }

    /// See [`super::llama::Llama::forward_rows`].
    pub fn forward_rows(&self, b: &B, caches: &mut [&mut B::Cache], ids: &[u32], positions: &[usize]) -> Result<B::Tensor> {
        self.run(b, Seqs::Rows { caches, positions }, b.embed(&self.tok_embd, ids)?, true)
    }

    fn run(&self, b: &B, mut seqs: Seqs<'_, '_, B::Cache>, mut x: B::Tensor, all_logits: bool) -> Result<B::Tensor> {
        let (c, gm) = (&self.config, &self.gemma);
        b.scale(&mut x, (c.dim as f32).sqrt())?; // (n, dim)
        let first_norm = self.layers.first().map_or(&self.output_norm, |l| &l.attn_norm);
        let mut h = b.rms_norm(&x, first_norm, c.eps)?; // (n, dim)
        for (i, l) in self.layers.iter().enumerate() {
            let (shape, rope) = match gm.is_local(i) {
                true => (AttnShape { window: gm.window, ..c.attn }, &gm.local_rope),
                false => (c.attn, &c.rope),
            };
            let mut q = b.rms_norm(&b.matmul(&h, &l.wq)?, &l.q_norm, c.eps)?; // (n, n_heads * hd), per head
            let mut k = b.rms_norm(&b.matmul(&h, &l.wk)?, &l.k_norm, c.eps)?; // (n, n_kv_heads * hd), per head
            let v = b.matmul(&h, &l.wv)?; // (n, n_kv_heads * hd)
            if gm.q_scale != 1.0 {
                b.scale(&mut q, gm.q_scale)?;
            }
            let att = match &mut seqs {
                Seqs::One { cache, pos } => b.rope_attention(cache, i, *pos, &mut q, &mut k, &v, shape, rope)?,
                Seqs::Rows { caches, positions } => b.rope_attention_rows(caches, i, positions, &mut q, &mut k, &v, shape, rope)?,
            }; // (n, n_heads * hd)
            let att = b.rms_norm(&b.matmul(&att, &l.wo)?, &l.post_attn_norm, c.eps)?; // (n, dim)
            h = b.add_rms_norm(&mut x, &att, &l.ffn_norm, c.eps)?; // (n, dim)

            let down = b.geglu_matmul(&b.matmul(&h, &l.gate)?, &b.matmul(&h, &l.up)?, &l.down)?; // (n, dim)
            let down = b.rms_norm(&down, &l.post_ffw_norm, c.eps)?;
            // The residual add, fused with the norm that opens the next layer (or the output).
            h = match self.layers.get(i + 1) {
                Some(next) => b.add_rms_norm(&mut x, &down, &next.attn_norm, c.eps)?,
                None => b.add_rms_norm_before(&mut x, &down, &self.output_norm, c.eps, &self.tok_embd)?,
            }; // (n, dim)
        }
        if !all_logits {
            h = b.last_row(&h)?; // (1, dim)
        }
        b.matmul(&h, &self.tok_embd) // (rows, vocab)
    }
}
