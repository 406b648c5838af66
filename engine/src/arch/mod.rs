//! Model architectures, one file each. Each reads its config and weights from a GGUF file and
//! writes its forward pass once against the [`crate::backend::Backend`] op set.

pub mod gpt_bigcode;
pub mod llama;
pub mod qwen2;
pub mod starcoder2;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::gguf::Gguf;
use llama::Llama;

/// Loads the model a GGUF file describes, by its `general.architecture`; any other is a typed
/// [`Error::Unsupported`]. Every supported architecture is, so far, a variant of the Llama
/// decoder ([`llama::Variant`]).
pub fn load<B: Backend>(backend: &B, g: &Gguf) -> Result<Llama<B>> {
    match g.architecture() {
        Some("llama") => Llama::load(backend, g),
        Some("qwen2") => qwen2::load(backend, g),
        Some("starcoder2") => starcoder2::load(backend, g),
        Some("starcoder") => gpt_bigcode::load(backend, g),
        other => Err(Error::Unsupported(format!("architecture {:?} (nib runs llama, qwen2, starcoder2, starcoder)", other.unwrap_or("(none)")))),
    }
}
