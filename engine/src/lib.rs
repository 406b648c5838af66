//! nib-engine: runs small decoder-only code models, natively and in wasm.
//!
//! Layers, bottom up: [`gguf`] reads and validates model files, [`quant`] knows the block
//! formats, [`tokenizer`] turns text into ids, [`arch`] describes each architecture once against
//! the op set of [`backend`], whose CPU implementation lives in [`backend::cpu`]; [`sample`]
//! picks tokens and [`model`] ties it together.

pub mod arch;
pub mod backend;
pub mod complete;
pub mod error;
pub mod gguf;
pub mod model;
pub mod quant;
pub mod sample;
pub mod tokenizer;

pub use error::{Error, GgufError, GpuFailure, Result};
pub use model::{Model, Session};
