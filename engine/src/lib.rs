//! nib-engine: runs small decoder-only code models, natively and in wasm.
//!
//! Layers, bottom up: [`gguf`] reads and validates model files ([`hf`] turns a Hugging Face
//! checkpoint, read by [`safetensors`], into one with [`gguf_writer`]), [`quant`] knows the block
//! formats, [`tokenizer`] turns text into ids, [`arch`] describes each architecture once against
//! the op set of [`backend`], whose CPU implementation lives in [`backend::cpu`]; [`sample`]
//! picks tokens and [`model`] ties it together.

pub mod arch;
pub mod backend;
pub mod complete;
pub mod error;
pub mod gguf;
pub mod gguf_writer;
pub mod hf;
pub mod model;
pub mod quant;
pub mod safetensors;
pub mod sample;
pub mod tokenizer;

pub use error::{Error, GgufError, GpuFailure, Result, SafetensorsError};
pub use model::{Model, Session};
