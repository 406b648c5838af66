//! The GPU kernel property checks of `engine/tests/common/kernel_checks.rs` (the grid and the
//! references engine/tests/gpu_kernels.rs runs on lavapipe) as one wasm-bindgen entry, so that
//! they also run in a browser's WebGPU: headless Chromium on SwiftShader in
//! web/test/browser/kernels.test.mjs. A crate of its own, so nothing of it is in the shipped
//! wasm (nib-wasm).

use std::sync::Arc;

use nib_engine::backend::gpu::GpuBackend;
use nib_engine::gguf::ModelBytes;
use wasm_bindgen::prelude::*;

#[path = "../../engine/tests/common/random.rs"]
mod random;
#[path = "../../engine/tests/common/kernel_checks.rs"]
mod kernel_checks;

/// Runs every check on the page's WebGPU adapter with outputs poisoned. Resolves to JSON
/// `{"adapter": …, "tolerance": …, "worst": [[check, worst rel err], …]}`; rejects with the
/// first check that failed.
#[wasm_bindgen]
pub async fn run() -> Result<String, JsValue> {
    let b = GpuBackend::new_async(Arc::new(ModelBytes::Owned(Vec::new()))).await.map_err(|e| JsValue::from_str(&e.to_string()))?;
    b.set_poison(true);
    let report = kernel_checks::all(&b).await.map_err(|e| JsValue::from_str(&e))?;
    let worst: Vec<serde_json::Value> = report.0.iter().map(|(name, e)| serde_json::json!([name, e])).collect();
    Ok(serde_json::json!({ "adapter": b.describe(), "tolerance": kernel_checks::TOL, "worst": worst }).to_string())
}
