//! Qwen2 (GGUF architecture `qwen2`): Qwen2.5 and Qwen2.5-Coder (0.5B, 1.5B, ...).
//!
//! The Llama decoder of [`super::llama`] with two differences, as llama.cpp runs it:
//! - q, k and v projections have biases (`blk.N.attn_{q,k,v}.bias`; o_proj has none);
//! - RoPE rotates the pairs (i, i + dims/2) ("neox" mode: the converter does not permute Q and K
//!   for Qwen2), with the base from `qwen2.rope.freq_base` (1e6 for Qwen2.5-Coder).
//!
//! Embeddings are tied for the small sizes (no `output.weight`), which the decoder handles, and
//! attention is grouped (14 query heads over 2 KV heads at 0.5B).

use super::llama::{Config, Llama, Variant};
use crate::backend::Backend;
use crate::error::Result;
use crate::gguf::Gguf;

pub fn config(g: &Gguf) -> Result<Config> {
    Config::read(g, "qwen2", true)
}

pub fn load<B: Backend>(backend: &B, g: &Gguf) -> Result<Llama<B>> {
    Llama::load_with(backend, g, config(g)?, Variant { qkv_bias: true, ..Variant::default() })
}
