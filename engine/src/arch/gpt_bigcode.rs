//! GPTBigCode (GGUF architecture `starcoder`): SantaCoder, TinyStarCoder, StarCoder(Base).
//!
//! GPT-2's block with multi-query attention, as llama.cpp runs it:
//! - learned absolute positions: row `p` of `position_embd (context_length, dim)` is added to
//!   the token embedding at position `p`, so there is no RoPE (the config's rotary dims are 0)
//!   and the context cannot outgrow the table;
//! - LayerNorm with a bias (epsilon `starcoder.attention.layer_norm_epsilon`);
//! - q, k and v from one fused `attn_qkv` weight and bias (`c_attn`), read as its three row
//!   ranges; one KV head shared by every query head (`head_count_kv` = 1: the grouped-query path
//!   with a single group);
//! - biases on the attention output and both feed-forward projections, GELU (tanh) between;
//! - the output matrix tied to the token embedding unless the file has `output.weight`.

use super::llama::{Config, Llama, Variant};
use crate::backend::Backend;
use crate::error::Result;
use crate::gguf::Gguf;

const VARIANT: Variant = Variant { qkv_bias: true, fused_qkv: true, layer_norm: true, gelu_ffn: true, learned_positions: true };

/// The config from `starcoder.*` metadata, without rotary positions.
pub fn config(g: &Gguf) -> Result<Config> {
    let mut c = Config::read(g, "starcoder", false)?;
    c.rope.dims = 0;
    Ok(c)
}

pub fn load<B: Backend>(backend: &B, g: &Gguf) -> Result<Llama<B>> {
    Llama::load_with(backend, g, config(g)?, VARIANT)
}
