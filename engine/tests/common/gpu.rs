//! A model on the GPU backend (lavapipe where there is no GPU) against the CPU reference
//! (`Precision::Reference`), for the tiny architecture models.

use std::path::Path;
use super::ids;

use nib_engine::backend::cpu::Precision;
use nib_engine::backend::gpu::{self, decode};
use nib_engine::backend::Backend;
use nib_engine::sample::{argmax, top_k};
use nib_engine::Model;
use serde_json::Value;

/// Largest |GPU − CPU reference| logit allowed anywhere in the vocabulary (as for the default
/// model).
pub const MAX_DELTA: f32 = 1e-2;
pub const GREEDY_TOKENS: usize = 16;

/// GPU logits against the CPU reference on every fixture case's prompt (within [`MAX_DELTA`],
/// same top-1), and greedy continuations through the GPU's pipelined decode (argmax on the GPU,
/// the host a step behind) against the reference's, token for token.
pub fn matches_cpu_reference(model: &Path, cases: &[Value]) {
    let t0 = std::time::Instant::now();
    let g = gpu::open_model(model).unwrap();
    g.backend.set_poison(true);
    println!("{}", g.backend.describe());
    let r = Model::open_cpu_with(model, 2, Precision::Reference).unwrap();
    let (mut worst, mut failures) = (0f32, Vec::new());
    for (ci, case) in cases.iter().enumerate() {
        let prompt = ids(&case["ids"]);
        let gl = g.eval(&mut g.session(prompt.len() + 1).unwrap(), &prompt).unwrap();
        let rl = r.eval(&mut r.session(prompt.len() + 1).unwrap(), &prompt).unwrap();
        assert!(gl.iter().all(|x| x.is_finite()), "case {ci}: non-finite GPU logits");
        let delta = gl.iter().zip(&rl).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        worst = worst.max(delta);
        let (gt, rt) = (top_k(&gl, 2), top_k(&rl, 2));
        if delta > MAX_DELTA {
            failures.push(format!("case {ci}: max |Δlogit| {delta:.2e} > {MAX_DELTA:.0e}"));
        }
        if gt[0].0 != rt[0].0 {
            failures.push(format!("case {ci}: top-1 {} vs the reference's {} (its margin {:.4})", gt[0].0, rt[0].0, rt[0].1 - rt[1].1));
        }

        let b = &g.backend;
        let mut cache = b.new_cache(g.config().n_layers, prompt.len() + GREEDY_TOKENS + 1, g.config().attn).unwrap();
        let logits = g.arch.forward(b, &mut cache, &prompt, 0, false).unwrap();
        let got = decode::greedy(&g.arch, b, &mut cache, &logits, prompt.len(), GREEDY_TOKENS, |_| true).unwrap();
        let want = greedy(&r, &prompt, GREEDY_TOKENS);
        if got != want {
            failures.push(format!("case {ci}: greedy gpu {got:?} vs reference {want:?}"));
        }
        println!("case {ci}: max |Δlogit| {delta:.2e}, top-1 {} (margin {:.3}), greedy {}", gt[0].0, rt[0].1 - rt[1].1, if got == want { "identical" } else { "differs" });
    }
    println!("GPU vs CPU reference: max |Δlogit| over the vocabulary {worst:.2e} ({:.0} s)", t0.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `steps` greedy tokens after `prompt`, one `eval` per token.
pub fn greedy<B: Backend>(m: &Model<B>, prompt: &[u32], steps: usize) -> Vec<u32> {
    let mut s = m.session(prompt.len() + steps + 1).unwrap();
    let mut seq = prompt.to_vec();
    for _ in 0..steps {
        let logits = m.eval(&mut s, &seq).unwrap();
        seq.push(argmax(&logits).unwrap() as u32);
    }
    seq.split_off(prompt.len())
}
