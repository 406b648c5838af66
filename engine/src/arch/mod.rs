//! Model architectures, one file each. Each reads its config and weights from a GGUF file and
//! writes its forward pass once against the [`crate::backend::Backend`] op set.

pub mod llama;
