//! The default model on the GPU backend (lavapipe where there is no GPU) against the CPU
//! backend, on the prompts of tests/fixtures/logits_smollm2.json, and the per-token cost of a
//! GPU decode step (dispatches, submits, bytes read back); and what a lost device gives.
//!
//! The reference is the CPU backend in `Precision::Reference`: the function the GPU computes
//! (f32 activations into every matmul, f32 q, unrounded attention probabilities, the same f16 KV
//! cache), with every sum in f64. Against it, on every prompt: the logits within `MAX_DELTA`
//! (issue #3's 1e-2) over the whole vocabulary, the same top-1, and identical greedy 32-token
//! continuations. The f16 KV cache is the one rounding left on both sides; it turns last-bit
//! differences upstream into occasional 2⁻¹¹ steps that grow through the layers, which is why
//! the spread is thousandths and not millionths. (With q also rounded to f16, as ggml does, it
//! was 1.9e-2: that rounding was dropped from the GPU kernel and the reference alike.)
//!
//! The default CPU path (what users run) quantizes activations to 8 bits inside its quantized
//! matmuls and rounds attention probabilities to f16, as llama.cpp does; that moves logits by
//! tenths, so against it the GPU is held to the looser bounds that difference allows (top-20
//! logits within 1.0, top-1 and greedy divergences only at near-ties of that path's logits).
//! Both comparisons use the same GPU outputs, so the second costs a few CPU forward passes.
//!
//! lavapipe takes about 0.5 s per token of this model on 2 cores, in prefill as in decode, so
//! by default the greedy continuations run on the first 3 prompts; `NIB_GPU_FULL=1` runs all
//! of them.

mod common;
use common::ids;

use nib_engine::backend::cpu::{CpuBackend, Precision};
use nib_engine::backend::gpu::{self, GpuBackend, Tuning};
use nib_engine::backend::Backend;
use nib_engine::sample::{argmax, top_k};
use nib_engine::{Error, GpuFailure, Model};

const GREEDY_TOKENS: usize = 32;

/// Largest |GPU − reference| logit allowed anywhere in the vocabulary (issue #3).
const MAX_DELTA: f32 = 1e-2;

/// A top-2 margin of the default CPU path's logits below which its choice is a tie at the
/// precision of its 8-bit activations.
const NEAR: f32 = 0.5;

fn gpu_model() -> Model<GpuBackend> {
    let m = gpu::open_model(&common::default_model()).unwrap();
    println!("{} — {}", m.backend.name(), m.backend.describe());
    m
}

fn reference_model() -> Model<CpuBackend> {
    let m = Model::open_cpu_with(&common::default_model(), 2, Precision::Reference).unwrap();
    assert_eq!(m.backend.name(), "cpu (reference)");
    m
}

/// Greedy continuation on the GPU: each step is one forward pass and an argmax on the GPU,
/// so only the chosen id comes back.
fn greedy_gpu(m: &Model<GpuBackend>, prompt: &[u32], steps: usize) -> Vec<u32> {
    let b = &m.backend;
    let mut cache = b.new_cache(m.config().n_layers, prompt.len() + steps + 1, m.config().attn).unwrap();
    let logits = m.arch.forward(b, &mut cache, prompt, 0, false).unwrap();
    let mut next = b.argmax(&logits).unwrap().unwrap();
    let mut out = vec![next];
    for i in 1..steps {
        let logits = m.arch.forward(b, &mut cache, &[next], prompt.len() + i - 1, false).unwrap();
        next = b.argmax(&logits).unwrap().unwrap();
        out.push(next);
    }
    out
}

/// Greedy continuation on the CPU, with the top-2 margin of each step's logits.
fn greedy_cpu<B: Backend>(m: &Model<B>, prompt: &[u32], steps: usize) -> (Vec<u32>, Vec<f32>) {
    let mut s = m.session(prompt.len() + steps + 1).unwrap();
    let mut seq = prompt.to_vec();
    let (mut out, mut margins) = (Vec::new(), Vec::new());
    for _ in 0..steps {
        let logits = m.eval(&mut s, &seq).unwrap();
        let top = top_k(&logits, 2);
        margins.push(top[0].1 - top[1].1);
        let id = argmax(&logits).unwrap() as u32;
        out.push(id);
        seq.push(id);
    }
    (out, margins)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
}

#[test]
fn logits_and_greedy_match_cpu_reference() {
    let t0 = std::time::Instant::now();
    let g = gpu_model();
    let r = reference_model();
    let c = common::load_default_model(2);
    let fx = common::fixture("logits_smollm2.json");
    let cases = fx["cases"].as_array().unwrap();
    let greedy_prompts = if std::env::var("NIB_GPU_FULL").is_ok_and(|v| v == "1") { cases.len() } else { 3 };
    let (mut worst, mut worst_fast, mut top1_same, mut top1_same_fast) = (0f32, 0f32, 0, 0);
    let (mut greedy_same, mut greedy_same_fast, mut greedy_runs) = (0, 0, 0);
    let mut failures = Vec::new();
    for (ci, case) in cases.iter().enumerate() {
        let prompt = ids(&case["ids"]);
        let gl = g.eval(&mut g.session(prompt.len() + 1).unwrap(), &prompt).unwrap();
        let rl = r.eval(&mut r.session(prompt.len() + 1).unwrap(), &prompt).unwrap();
        let cl = c.eval(&mut c.session(prompt.len() + 1).unwrap(), &prompt).unwrap();
        assert!(gl.iter().all(|x| x.is_finite()), "case {ci}: non-finite GPU logits");

        // Against the reference: the whole vocabulary, and the top-1.
        let delta = max_abs_diff(&gl, &rl);
        worst = worst.max(delta);
        let (gt, rt) = (top_k(&gl, 2), top_k(&rl, 2));
        let margin = rt[0].1 - rt[1].1;
        if delta > MAX_DELTA {
            failures.push(format!("case {ci}: max |Δlogit| vs the reference {delta:.2e} > {MAX_DELTA:.0e}"));
        }
        if gt[0].0 == rt[0].0 {
            top1_same += 1;
        } else {
            failures.push(format!("case {ci}: top-1 {} vs the reference's {} (its margin {margin:.4})", gt[0].0, rt[0].0));
        }

        // Against the default CPU path: its top-20, and its top-1 where its margin is clear.
        let ct = top_k(&cl, 20);
        let delta_fast = ct.iter().map(|&(id, l)| (gl[id as usize] - l).abs()).fold(0f32, f32::max);
        worst_fast = worst_fast.max(delta_fast);
        let margin_fast = ct[0].1 - ct[1].1;
        if gt[0].0 == ct[0].0 {
            top1_same_fast += 1;
        } else if margin_fast > NEAR {
            failures.push(format!("case {ci}: top-1 {} vs the default CPU's {} with its margin {margin_fast:.3}", gt[0].0, ct[0].0));
        }
        println!(
            "case {ci:2} ({:2} tokens): vs reference max |Δ| {delta:.2e}, top-1 {} {} (margin {margin:.3}); vs default CPU top-20 max |Δ| {delta_fast:.3}, top-1 {}",
            prompt.len(),
            gt[0].0,
            if gt[0].0 == rt[0].0 { "=" } else { "≠" },
            if gt[0].0 == ct[0].0 { "=" } else { "≠" }
        );

        if ci >= greedy_prompts {
            continue;
        }
        greedy_runs += 1;
        let got = greedy_gpu(&g, &prompt, GREEDY_TOKENS);
        let (want, ref_margins) = greedy_cpu(&r, &prompt, GREEDY_TOKENS);
        match got.iter().zip(&want).position(|(a, b)| a != b) {
            None => greedy_same += 1,
            Some(step) => failures.push(format!(
                "case {ci}: greedy diverges from the reference at step {step}: gpu {} reference {} (its margin {:.4})",
                got[step], want[step], ref_margins[step]
            )),
        }
        let (fast, margins) = greedy_cpu(&c, &prompt, GREEDY_TOKENS);
        match got.iter().zip(&fast).position(|(a, b)| a != b) {
            None => greedy_same_fast += 1,
            Some(step) => {
                println!("  greedy diverges from the default CPU at step {step} (its margin there {:.3})", margins[step]);
                if margins[step] > NEAR {
                    failures.push(format!("case {ci}: greedy diverges from the default CPU at step {step} where its margin is {:.3}", margins[step]));
                }
            }
        }
    }
    println!(
        "GPU vs CPU reference over {} prompts: max |Δlogit| over the vocabulary {worst:.2e}, top-1 equal {top1_same}/{}, greedy {GREEDY_TOKENS} tokens identical {greedy_same}/{greedy_runs}",
        cases.len(),
        cases.len()
    );
    println!(
        "GPU vs default CPU: max |Δlogit| over its top-20 {worst_fast:.3}, top-1 equal {top1_same_fast}/{}, greedy identical {greedy_same_fast}/{greedy_runs} ({:.0} s)",
        cases.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The default path's 8-bit activations move logits by as much as llama.cpp's own batch-1 vs
    // batch-512 spread (up to ~0.7, see golden.rs): that spread is the bound there.
    assert!(worst_fast < 1.0, "largest |Δlogit| vs the default CPU over its top-20 {worst_fast}");
}

/// The K-quant variants of the default model (models/kquant/, whose ffn_down matrices are
/// Q4_K/Q5_K and Q6_K): GPU against the CPU reference on a few prompts (lavapipe is slow), the
/// prefill through the tiled matmul and the greedy steps through the matrix-vector kernels.
#[test]
fn k_quant_models_match_cpu_reference() {
    let fx = common::fixture("logits_smollm2_kquant.json");
    let mut failures = Vec::new();
    for (name, prompts) in [("Q4_K_M", 1), ("Q5_K_M", 1)] {
        let entry = &fx["models"][name];
        let path = common::root().join(entry["file"].as_str().unwrap());
        assert!(path.is_file(), "{} is missing: run `cargo xtask setup` first", path.display());
        let g = gpu::open_model(&path).unwrap();
        let r = Model::open_cpu_with(&path, 2, Precision::Reference).unwrap();
        failures.extend(against_reference(&g, &r, &entry["cases"].as_array().unwrap()[..prompts], 6, name));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The GPU's logits against the reference's on each of `cases` (within `MAX_DELTA`, the same
/// top-1), and a greedy continuation of `greedy` tokens from the first; the failures, each
/// named with `label`.
fn against_reference(g: &Model<GpuBackend>, r: &Model<CpuBackend>, cases: &[serde_json::Value], greedy: usize, label: &str) -> Vec<String> {
    let mut failures = Vec::new();
    for (ci, case) in cases.iter().enumerate() {
        let prompt = ids(&case["ids"]);
        let gl = g.eval(&mut g.session(prompt.len() + 1).unwrap(), &prompt).unwrap();
        let rl = r.eval(&mut r.session(prompt.len() + 1).unwrap(), &prompt).unwrap();
        let delta = max_abs_diff(&gl, &rl);
        let (gt, rt) = (top_k(&gl, 2), top_k(&rl, 2));
        println!("{label} case {ci} ({} tokens): max |Δlogit| vs the reference {delta:.2e}, top-1 {} vs {}", prompt.len(), gt[0].0, rt[0].0);
        if delta > MAX_DELTA || gt[0].0 != rt[0].0 {
            failures.push(format!("{label} case {ci}: max |Δ| {delta:.2e}, top-1 {} vs {}", gt[0].0, rt[0].0));
        }
        if ci == 0 {
            let got = greedy_gpu(g, &prompt, greedy);
            let (want, margins) = greedy_cpu(r, &prompt, greedy);
            if let Some(step) = got.iter().zip(&want).position(|(a, b)| a != b) {
                failures.push(format!("{label}: greedy diverges at step {step} (reference margin {:.4})", margins[step]));
            }
        }
    }
    failures
}

/// Attention's f32 variant (`Tuning::f16` off: what runs where the device lacks shader-f16, as
/// SwiftShader does) against the reference on the first prompts, logits and a greedy
/// continuation; the test above runs the default, which is the f16 variant wherever the device
/// has shader-f16 (lavapipe has: asserted there).
#[test]
fn f32_attention_matches_cpu_reference() {
    let g = gpu_model();
    let gpu = g.backend.context();
    if gpu.info.name.contains("llvmpipe") {
        assert!(gpu.attn_f16(), "lavapipe has shader-f16, so attention's f16 variant is the default there: {}", g.backend.describe());
    }
    gpu.set_tuning(Tuning { f16: Some(false), ..gpu.tuning() }).unwrap();
    let fx = common::fixture("logits_smollm2.json");
    let failures = against_reference(&g, &reference_model(), &fx["cases"].as_array().unwrap()[..4], GREEDY_TOKENS, "f32 attention");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn decode_step_cost() {
    let m = gpu_model();
    let b = &m.backend;
    let prompt = m.tokenizer.encode("def fibonacci(n):\n    ").unwrap();
    let mut cache = b.new_cache(m.config().n_layers, 64, m.config().attn).unwrap();
    b.reset_stats();
    let logits = m.arch.forward(b, &mut cache, &prompt, 0, false).unwrap();
    let mut next = b.argmax(&logits).unwrap().unwrap();
    let prefill = b.stats();
    let steps = 8;
    b.reset_stats();
    let t0 = std::time::Instant::now();
    for i in 0..steps {
        let logits = m.arch.forward(b, &mut cache, &[next], prompt.len() + i, false).unwrap();
        next = b.argmax(&logits).unwrap().unwrap();
    }
    let dt = t0.elapsed().as_secs_f64() / steps as f64;
    let s = b.stats();
    println!(
        "prefill of {} tokens: {} dispatches, {} submits, {} bytes read back",
        prompt.len(),
        prefill.dispatches,
        prefill.submits,
        prefill.bytes_read
    );
    println!(
        "decode step ({} layers): {} dispatches, {} submits, {} bytes read back per token; {:.1} ms per token on {}",
        m.config().n_layers,
        s.dispatches / steps as u64,
        s.submits as f64 / steps as f64,
        s.bytes_read / steps as u64,
        dt * 1e3,
        b.name()
    );
    assert_eq!(s.submits, steps as u64, "one submit per decode step");
    assert_eq!(s.bytes_read, 4 * steps as u64, "4 bytes read back per token");
    // embed + the first norm + per layer (stacked q/k/v; rope + KV append; attend + merge; o;
    // add + norm; stacked gate/up with SwiGLU; down; add + norm) + logits + argmax (its slices,
    // then their merge); no poisoning here. The last layer's second add + norm is the output
    // norm.
    assert_eq!(s.dispatches / steps as u64, 2 + 9 * m.config().n_layers as u64 + 3);
}

/// A lost device (a driver reset, the GPU process gone) is a typed error on the next call and
/// on every one after it, never a panic: the browser's client then reloads the model on the CPU.
#[test]
fn a_lost_device_is_a_typed_error_on_every_later_call() {
    let m = gpu::open_model(&common::default_model()).unwrap();
    let prompt = m.tokenizer.encode("def add(a, b):").unwrap();
    let mut s = m.session(64).unwrap();
    m.eval(&mut s, &prompt).unwrap();
    m.backend.lose_device();
    for attempt in 0..2 {
        match m.session(64).and_then(|mut s| m.eval(&mut s, &prompt)) {
            Err(Error::Gpu { kind: GpuFailure::DeviceLost, message }) => println!("attempt {attempt}: {message}"),
            other => panic!("attempt {attempt}: want a DeviceLost error, got {:?}", other.map(|logits| logits.len())),
        }
    }
}
