//! StarCoder2 (GGUF architecture `starcoder2`): StarCoder2-3B, 7B, 15B.
//!
//! The decoder of [`super::llama`] with StarCoder2's parts, as llama.cpp runs it:
//! - LayerNorm with a bias (`*_norm.bias`, epsilon `starcoder2.attention.layer_norm_epsilon`);
//! - biases on q, k, v, the attention output and both feed-forward projections;
//! - a non-gated feed-forward `down(gelu(up(x)))`, GELU with the tanh approximation;
//! - grouped-query attention with NEOX RoPE (θ ≈ 1e6 from `starcoder2.rope.freq_base`);
//! - the output matrix, or the token embedding when the file has none (3B ties them).
//!
//! **Sliding window.** StarCoder2 was trained with sliding-window attention (4096 tokens for
//! every size): each position attends to itself and the 4095 before it. [`config`] sets
//! `attn.window` to it (`starcoder2.attention.sliding_window` when a file has it, else 4096),
//! and both backends' attention honour it, so the whole 16k context is usable. (llama.cpp runs
//! StarCoder2 with full attention, which equals this within the window: the fixtures' prompts
//! are shorter than that.)

use super::llama::{Config, Llama, Variant};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::gguf::Gguf;

/// StarCoder2's attention window (`sliding_window` in the 3B, 7B and 15B configs).
pub const SLIDING_WINDOW: usize = 4096;

const VARIANT: Variant = Variant { qkv_bias: true, fused_qkv: false, layer_norm: true, gelu_ffn: true, learned_positions: false };

/// The config from `starcoder2.*` metadata, with its sliding window.
pub fn config(g: &Gguf) -> Result<Config> {
    let mut c = Config::read(g, "starcoder2", true)?;
    let window = match g.get("starcoder2.attention.sliding_window") {
        None => SLIDING_WINDOW,
        Some(v) => v
            .as_u64()
            .and_then(|w| usize::try_from(w).ok())
            .filter(|&w| w >= 1)
            .ok_or_else(|| Error::Model("starcoder2.attention.sliding_window is not a positive integer".into()))?,
    };
    c.attn.window = (window < c.ctx_len).then_some(window);
    Ok(c)
}

pub fn load<B: Backend>(backend: &B, g: &Gguf) -> Result<Llama<B>> {
    Llama::load_with(backend, g, config(g)?, VARIANT)
}
