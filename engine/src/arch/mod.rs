//! Model architectures, one file each. Each reads its config and weights from a GGUF file and
//! writes its forward pass once against the [`crate::backend::Backend`] op set.

pub mod gemma3;
pub mod gpt_bigcode;
pub mod llama;
pub mod qwen2;
pub mod starcoder2;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::gguf::Gguf;
use gemma3::Gemma3;
use llama::{Config, Llama};

/// A loaded architecture: the Llama-family decoder (llama, qwen2, starcoder2, starcoder) or
/// Gemma 3's.
pub enum Arch<B: Backend> {
    Llama(Llama<B>),
    Gemma3(Gemma3<B>),
}

/// Loads the model a GGUF file describes, by its `general.architecture`; any other is a typed
/// [`Error::Unsupported`]. Llama, Qwen2, StarCoder2 and GPTBigCode are variants of the Llama
/// decoder ([`llama::Variant`]); Gemma 3 has its own.
pub fn load<B: Backend>(backend: &B, g: &Gguf) -> Result<Arch<B>> {
    match g.architecture() {
        Some("llama") => Llama::load(backend, g).map(Arch::Llama),
        Some("qwen2") => qwen2::load(backend, g).map(Arch::Llama),
        Some("starcoder2") => starcoder2::load(backend, g).map(Arch::Llama),
        Some("starcoder") => gpt_bigcode::load(backend, g).map(Arch::Llama),
        Some("gemma3") => Gemma3::load(backend, g).map(Arch::Gemma3),
        other => Err(Error::Unsupported(format!("architecture {:?} (nib runs llama, qwen2, starcoder2, starcoder, gemma3)", other.unwrap_or("(none)")))),
    }
}

impl<B: Backend> Arch<B> {
    /// The shapes every architecture shares (layers, widths, heads, vocabulary, context).
    pub fn config(&self) -> &Config {
        match self {
            Arch::Llama(m) => &m.config,
            Arch::Gemma3(m) => &m.config,
        }
    }

    /// Runs `ids` at positions `pos..` through the model (see [`Llama::forward`]).
    pub fn forward(&self, b: &B, cache: &mut B::Cache, ids: &[u32], pos: usize, all_logits: bool) -> Result<B::Tensor> {
        match self {
            Arch::Llama(m) => m.forward(b, cache, ids, pos, all_logits),
            Arch::Gemma3(m) => m.forward(b, cache, ids, pos, all_logits),
        }
    }

    /// [`Arch::forward`] from rows of [`Arch::embedding`].
    pub fn forward_embedded(&self, b: &B, cache: &mut B::Cache, x: B::Tensor, pos: usize, all_logits: bool) -> Result<B::Tensor> {
        match self {
            Arch::Llama(m) => m.forward_embedded(b, cache, x, pos, all_logits),
            Arch::Gemma3(m) => m.forward_embedded(b, cache, x, pos, all_logits),
        }
    }

    /// One token for each of several sequences (see [`Llama::forward_rows`]).
    pub fn forward_rows(&self, b: &B, caches: &mut [&mut B::Cache], ids: &[u32], positions: &[usize]) -> Result<B::Tensor> {
        match self {
            Arch::Llama(m) => m.forward_rows(b, caches, ids, positions),
            Arch::Gemma3(m) => m.forward_rows(b, caches, ids, positions),
        }
    }

    /// The token embedding table `(vocab, dim)`.
    pub fn embedding(&self) -> &B::Weight {
        match self {
            Arch::Llama(m) => m.embedding(),
            Arch::Gemma3(m) => m.embedding(),
        }
    }
}
