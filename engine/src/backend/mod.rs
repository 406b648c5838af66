//! The op set every architecture is written against.
//!
//! An architecture (`arch/`) describes its forward pass once, as calls on a [`Backend`]. The CPU
//! backend ([`cpu`]) runs those calls with nib's SIMD kernels; the GPU backend runs the same calls
//! with WGSL kernels, and is tested op by op against the CPU one. The set stays small on purpose:
//! every op added here is one more kernel on every backend.

pub mod cpu;
/// Native (Vulkan) and in the browser (WebGPU); not under WASI, which has no GPU. (In the
/// browser wgpu's handles are not `Send`: the worker is single-threaded.)
#[cfg(any(not(target_arch = "wasm32"), target_os = "unknown"))]
#[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
pub mod gpu;

use crate::error::Result;
use crate::gguf::{Gguf, TensorInfo};
use crate::sample::{self, Sampled, TopK};

/// Rotary position embedding, as llama.cpp applies it for the GGUF architecture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rope {
    /// Base of the rotation frequencies (`rope.freq_base`).
    pub theta: f32,
    /// Leading dimensions of each head that rotate (`rope.dimension_count`); the rest pass through.
    pub dims: usize,
    /// `false`: rotate adjacent pairs (2i, 2i+1), llama.cpp's "normal" mode used for `llama`
    /// (the converter permutes Q and K for it). `true`: rotate (i, i + dims/2), "neox" mode.
    pub neox: bool,
    /// Linear position scaling (`rope.scaling.factor` inverted); 1.0 when absent.
    pub freq_scale: f32,
}

/// The attention geometry of a layer: grouped-query attention when `n_kv_heads < n_heads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Sliding-window attention (Gemma 3's local layers): a token at position p sees positions
    /// `p + 1 - w ..= p` only (llama.cpp's standard SWA mask). `None`: every earlier position.
    pub window: Option<usize>,
}

impl AttnShape {
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// What an architecture needs from a compute device. Activations are `(rows, cols)` f32
/// matrices, one row per token.
pub trait Backend {
    /// Activations, `(rows, cols)` f32, wherever the backend keeps them.
    type Tensor;
    /// A weight from the model file, in the block format the file stores it in.
    type Weight;
    /// The keys and values of every layer, for `max_ctx` positions.
    type Cache;

    /// A short name for reports: "cpu", or the GPU adapter's name.
    fn name(&self) -> String;

    /// CPU threads the backend computes on (1 for a GPU).
    fn threads(&self) -> usize {
        1
    }

    /// Makes a weight usable by this backend (the CPU borrows the file's bytes in place).
    fn load_weight(&self, gguf: &Gguf, info: &TensorInfo) -> Result<Self::Weight>;

    fn new_cache(&self, n_layers: usize, max_ctx: usize, shape: AttnShape) -> Result<Self::Cache>;

    /// Rows `ids` of an embedding table `(vocab, dim)` → `(ids.len(), dim)`.
    fn embed(&self, table: &Self::Weight, ids: &[u32]) -> Result<Self::Tensor>;

    /// `x / rms(x) * weight` along each row; `weight` is `(cols)`, or `(d)` with `d` dividing
    /// `cols`: then each run of `d` values is normalized on its own (a per-head norm of q or k).
    fn rms_norm(&self, x: &Self::Tensor, weight: &Self::Weight, eps: f32) -> Result<Self::Tensor>;

    /// LayerNorm along each row: `(x - mean) / sqrt(var + eps) * weight + bias`, both `(cols)`
    /// (StarCoder2, GPTBigCode).
    fn layer_norm(&self, x: &Self::Tensor, weight: &Self::Weight, bias: &Self::Weight, eps: f32) -> Result<Self::Tensor>;

    /// `x (n, k) · wᵀ` where `w` is `(m, k)` → `(n, m)`.
    fn matmul(&self, x: &Self::Tensor, w: &Self::Weight) -> Result<Self::Tensor>;

    /// Rotates `x (n, n_heads * head_dim)` in place; row `t` is the token at position `pos + t`.
    fn rope(&self, x: &mut Self::Tensor, n_heads: usize, head_dim: usize, pos: usize, rope: &Rope) -> Result<()>;

    /// Writes `k`, `v (n, kv_dim)` into `layer`'s cache at positions `pos..pos + n`, then attends
    /// `q (n, q_dim)` causally over positions `0..=pos + t` for each row `t` → `(n, q_dim)`.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        cache: &mut Self::Cache,
        layer: usize,
        pos: usize,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        shape: AttnShape,
    ) -> Result<Self::Tensor>;

    /// `x *= s`, elementwise (Gemma's embedding scale).
    fn scale(&self, x: &mut Self::Tensor, s: f32) -> Result<()>;

    /// `gelu(gate) * up`, elementwise, with GELU's tanh approximation (Gemma's feed-forward).
    fn geglu(&self, gate: &Self::Tensor, up: &Self::Tensor) -> Result<Self::Tensor>;

    /// `geglu(gate, up) · wᵀ`, which a backend may fuse as it does [`Backend::swiglu_matmul`].
    fn geglu_matmul(&self, gate: &Self::Tensor, up: &Self::Tensor, w: &Self::Weight) -> Result<Self::Tensor> {
        self.matmul(&self.geglu(gate, up)?, w)
    }

    /// `silu(gate) * up`, elementwise.
    fn swiglu(&self, gate: &Self::Tensor, up: &Self::Tensor) -> Result<Self::Tensor>;

    /// GELU with the tanh approximation (`gelu_pytorch_tanh`), elementwise: the non-gated
    /// feed-forward of StarCoder2 and GPTBigCode.
    fn gelu(&self, x: &Self::Tensor) -> Result<Self::Tensor>;

    /// `x += y`, elementwise.
    fn add_assign(&self, x: &mut Self::Tensor, y: &Self::Tensor) -> Result<()>;

    /// `x (n, cols) += bias` on every row; `bias` is a `(cols)` weight (Qwen2's q/k/v biases).
    fn add_bias(&self, x: &mut Self::Tensor, bias: &Self::Weight) -> Result<()>;

    /// `x += y`, then `rms_norm(x, weight)`: the residual add of one block and the norm that
    /// opens the next, which a backend may fuse into one pass.
    fn add_rms_norm(&self, x: &mut Self::Tensor, y: &Self::Tensor, weight: &Self::Weight, eps: f32) -> Result<Self::Tensor> {
        self.add_assign(x, y)?;
        self.rms_norm(x, weight, eps)
    }

    /// [`Backend::add_rms_norm`] whose output goes to the product with `next` (the output
    /// projection): a backend may also write it as that product reads it (the GPU's 8-bit x).
    fn add_rms_norm_before(&self, x: &mut Self::Tensor, y: &Self::Tensor, weight: &Self::Weight, eps: f32, next: &Self::Weight) -> Result<Self::Tensor> {
        let _ = next;
        self.add_rms_norm(x, y, weight, eps)
    }

    /// `swiglu(gate, up) · wᵀ`: the feed-forward's activation and down projection, which a
    /// backend may fuse so the activation is never stored.
    fn swiglu_matmul(&self, gate: &Self::Tensor, up: &Self::Tensor, w: &Self::Weight) -> Result<Self::Tensor> {
        self.matmul(&self.swiglu(gate, up)?, w)
    }

    /// Weights an architecture multiplies by the same input (a layer's q, k and v; gate and up),
    /// stacked by rows into one weight when the backend gains from one product instead of
    /// several (a GPU: fewer dispatches). `None`: the backend keeps them apart, and the
    /// architecture loads each with [`Backend::load_weight`]. 1-D tensors (the biases of such
    /// weights) are concatenated into one `(Σ cols)` vector, the bias of the stacked product.
    fn stack_weights(&self, gguf: &Gguf, infos: &[&TensorInfo]) -> Result<Option<Self::Weight>> {
        let _ = (gguf, infos);
        Ok(None)
    }

    /// Attention from a stacked `[q; k; v]` weight (only for backends whose
    /// [`Backend::stack_weights`] made one): `h · wqkvᵀ (+ bias)`, RoPE, the KV append and
    /// attention. `bias` is the stacked `[bq; bk; bv]` vector, when the architecture has one.
    #[allow(clippy::too_many_arguments)]
    fn qkv_attention(
        &self,
        cache: &mut Self::Cache,
        layer: usize,
        pos: usize,
        h: &Self::Tensor,
        wqkv: &Self::Weight,
        bias: Option<&Self::Weight>,
        shape: AttnShape,
        rope: &Rope,
    ) -> Result<Self::Tensor> {
        let _ = (cache, layer, pos, h, wqkv, bias, shape, rope);
        Err(crate::error::Error::Unsupported("stacked q/k/v weights on this backend".into()))
    }

    /// `swiglu(h · gateᵀ, h · upᵀ)` from a stacked `[gate; up]` weight (only for backends whose
    /// [`Backend::stack_weights`] made one).
    fn glu(&self, h: &Self::Tensor, w_gate_up: &Self::Weight) -> Result<Self::Tensor> {
        let _ = (h, w_gate_up);
        Err(crate::error::Error::Unsupported("stacked gate/up weights on this backend".into()))
    }

    /// A copy of the first `len` positions of `cache` with room for `max_ctx`: one more
    /// sequence continuing the same prompt (candidates decoded together). `None`: the backend
    /// keeps one sequence per cache, and candidates are decoded one after another.
    fn fork_cache(&self, cache: &Self::Cache, len: usize, max_ctx: usize) -> Result<Option<Self::Cache>> {
        let _ = (cache, len, max_ctx);
        Ok(None)
    }

    /// [`Backend::rope_attention`] for one token of each of several sequences: row j of `q`, `k`
    /// and `v` belongs to the sequence of `caches[j]`, at position `positions[j]` (only for
    /// backends whose [`Backend::fork_cache`] makes caches).
    #[allow(clippy::too_many_arguments)]
    fn rope_attention_rows(
        &self,
        caches: &mut [&mut Self::Cache],
        layer: usize,
        positions: &[usize],
        q: &mut Self::Tensor,
        k: &mut Self::Tensor,
        v: &Self::Tensor,
        shape: AttnShape,
        rope: &Rope,
    ) -> Result<Self::Tensor> {
        let _ = (caches, layer, positions, q, k, v, shape, rope);
        Err(crate::error::Error::Unsupported("several sequences in one pass on this backend".into()))
    }

    /// [`Backend::qkv_attention`] for one token of each of several sequences, as
    /// [`Backend::rope_attention_rows`] is to [`Backend::rope_attention`].
    #[allow(clippy::too_many_arguments)]
    fn qkv_attention_rows(
        &self,
        caches: &mut [&mut Self::Cache],
        layer: usize,
        positions: &[usize],
        h: &Self::Tensor,
        wqkv: &Self::Weight,
        bias: Option<&Self::Weight>,
        shape: AttnShape,
        rope: &Rope,
    ) -> Result<Self::Tensor> {
        let _ = (caches, layer, positions, h, wqkv, bias, shape, rope);
        Err(crate::error::Error::Unsupported("stacked q/k/v weights with several sequences on this backend".into()))
    }

    /// Rotates `q` and `k` at positions `pos..`, then [`Backend::attention`]: a backend may
    /// rotate on the way into the cache, so `q` and `k` are left in an unspecified state.
    #[allow(clippy::too_many_arguments)]
    fn rope_attention(
        &self,
        cache: &mut Self::Cache,
        layer: usize,
        pos: usize,
        q: &mut Self::Tensor,
        k: &mut Self::Tensor,
        v: &Self::Tensor,
        shape: AttnShape,
        rope: &Rope,
    ) -> Result<Self::Tensor> {
        self.rope(q, shape.n_heads, shape.head_dim, pos, rope)?;
        self.rope(k, shape.n_kv_heads, shape.head_dim, pos, rope)?;
        self.attention(cache, layer, pos, q, k, v, shape)
    }

    /// The number of rows of `x`.
    fn rows(&self, x: &Self::Tensor) -> usize;

    /// The last row of `x`, `(1, cols)`: only the next token's logits are needed while generating.
    fn last_row(&self, x: &Self::Tensor) -> Result<Self::Tensor>;

    /// Copies `x` to host memory, row-major.
    fn to_vec(&self, x: &Self::Tensor) -> Result<Vec<f32>>;

    /// [`Backend::to_vec`] as a future: a GPU in the browser can only read back asynchronously.
    /// Everywhere else the future is ready at once.
    fn to_vec_async(&self, x: &Self::Tensor) -> impl std::future::Future<Output = Result<Vec<f32>>> {
        std::future::ready(self.to_vec(x))
    }

    /// Greedy decoding's choice from `(1, vocab)` logits: the most likely token and its
    /// log-probability, `None` when no logit is finite. The default reads the logits back; the
    /// GPU computes both where the logits are and reads back 12 bytes instead of the row.
    fn greedy_async(&self, logits: &Self::Tensor) -> impl std::future::Future<Output = Result<Option<Sampled>>> {
        async move {
            let v = self.to_vec_async(logits).await?;
            Ok(sample::argmax(&v).map(|i| Sampled { id: i as u32, logprob: sample::log_softmax_at(&v, i) }))
        }
    }

    /// Sampling's candidates from `(1, vocab)` logits: the `k` (≤ [`sample::MAX_TOP_K`]) most
    /// likely tokens and the row's sums, raw and at `temperature` ([`sample::TopK`]). The
    /// default reads the logits back; the GPU selects them where the logits are and reads back
    /// 16 + 8k bytes instead of the row.
    fn top_k_async(&self, logits: &Self::Tensor, k: usize, temperature: f32) -> impl std::future::Future<Output = Result<TopK>> {
        async move { Ok(sample::top_k_finite(&self.to_vec_async(logits).await?, k, temperature)) }
    }
}
