//! nib-wasm: the engine as the browser's web worker sees it (wasm-bindgen).
//!
//! The worker streams the model file into a [`loader::ModelLoader`] (one buffer inside wasm
//! memory, hashed as it arrives), turns it into an [`engine::NibEngine`], and then calls
//! tokenize / logits / complete / bench on it, or runs a [`generation::Generation`] one step at
//! a time so that it can go back to its event loop between tokens (abort without
//! SharedArrayBuffer). Every error is a JS `Error` with a stable `code` ([`error`]).

mod alloc;
mod clock;
pub mod error;
mod engine;
mod generation;
pub mod loader;
mod panic;

pub use engine::{GpuDevice, NibEngine};
pub use generation::Generation;
pub use loader::ModelLoader;

use wasm_bindgen::prelude::*;

/// Runs when the module is instantiated: a panic (a bug, never input) is reported, not silent.
#[wasm_bindgen(start)]
pub fn start() {
    panic::install_hook();
}

/// The engine's version, for diagnostics.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
