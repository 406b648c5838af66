//! Every GPU kernel against a reference on the CPU, on lavapipe where there is no GPU: fresh
//! random inputs (never zeros), shapes that are not multiples of any tile, outputs poisoned with
//! NaN before each kernel writes them. f32 paths must agree within ‖gpu − ref‖ / ‖ref‖ ≤ 1e-4.
//!
//! The checks of each op against its reference (`common/kernel_checks.rs`) also run in
//! Chromium's WebGPU (`kernel-check/`); this file runs them natively, plus what only the
//! native backend can do (weights split into small parts) and the fused ops (add + norm,
//! SwiGLU + down projection, RoPE + KV append + attention, products of stacked weights with
//! and without q/k/v biases) against the same ops unfused on the GPU; add_bias (both backends)
//! exactly against the host; LayerNorm and GELU (both backends) in f64.

use std::sync::{Arc, OnceLock};

use nib_engine::backend::cpu::{CpuBackend, CpuTensor, Precision};
use nib_engine::backend::gpu::{ops, GpuBackend, GpuCache};
use nib_engine::backend::{AttnShape, Backend, Rope};
use nib_engine::gguf::ModelBytes;
use nib_engine::quant::GgmlType;
use nib_engine::{Error, GpuFailure};

#[path = "common/random.rs"]
mod random;
use random::{random_weights, Rng};
#[path = "common/kernel_checks.rs"]
mod kernel_checks;
use kernel_checks::{cpu, f64s, Report, TOL};

/// One GPU backend for the whole file (device setup and shader compiles are slow on lavapipe).
fn gpu() -> &'static GpuBackend {
    static G: OnceLock<GpuBackend> = OnceLock::new();
    G.get_or_init(|| {
        let b = GpuBackend::new(Arc::new(ModelBytes::Owned(Vec::new()))).unwrap();
        b.set_poison(true);
        println!("adapter: {}", b.describe());
        b
    })
}

/// A backend whose weights are split into parts of at most 1 KiB, as a large vocabulary is
/// on a device with a small binding limit.
fn gpu_split() -> &'static GpuBackend {
    static G: OnceLock<GpuBackend> = OnceLock::new();
    G.get_or_init(|| {
        let b = GpuBackend::with_part_limit(Arc::new(ModelBytes::Owned(Vec::new())), 1024).unwrap();
        b.set_poison(true);
        b
    })
}

/// `rel_err` that fails the test on non-finite output.
fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    kernel_checks::rel_err(got, want).unwrap()
}

/// One shared check, natively (where every readback is ready at once).
fn run(name: &str, check: impl AsyncFnOnce(&GpuBackend, &mut Report) -> kernel_checks::Check) {
    let mut report = Report::default();
    ready(check(gpu(), &mut report)).unwrap_or_else(|e| panic!("{e}"));
    for (what, e) in &report.0 {
        println!("{name}: {what}: worst rel err {e:.2e}");
    }
}

#[test]
fn matmul_every_format_and_odd_shape() {
    run("matmul", kernel_checks::matmuls);
}

#[test]
fn embed_every_format() {
    run("embed", kernel_checks::embeds);
}

#[test]
fn rms_norm_odd_widths() {
    run("rms_norm", kernel_checks::rms_norms);
}

#[test]
fn rope_matches_cpu_backend() {
    run("rope", kernel_checks::ropes);
}

#[test]
fn swiglu_and_add_match_cpu_backend() {
    run("swiglu, add", kernel_checks::swiglus_and_adds);
}

/// Attention in each variant (f32, and f16 where the device has shader-f16) against f64 and
/// the CPU backend, on a backend of its own: the variants it sets would change the other tests'
/// attention meanwhile. lavapipe has shader-f16, so there the f16 variant must run.
#[test]
fn attention_prefill_then_decode() {
    let (b, report) = run_alone(kernel_checks::attentions);
    let gpu = b.context();
    if gpu.info.name.contains("llvmpipe") {
        assert!(gpu.has_f16(), "lavapipe offers shader-f16 through wgpu, but the device lacks it: {}", b.describe());
    }
    assert_eq!(report.0.iter().any(|(n, _)| n == "attention f16"), gpu.has_f16(), "the f16 variant ran where, and only where, the device has shader-f16");
}

#[test]
fn argmax_matches_sample_argmax() {
    run("argmax", kernel_checks::argmaxes);
    // The 4-byte argmax of the native decode loop, on the last row.
    let t = gpu().tensor(2, 5, &[9.0, 1.0, 2.0, 3.0, 4.0, 1.0, f32::NAN, 8.0, 8.0, -1.0]).unwrap();
    assert_eq!(gpu().argmax(&t).unwrap(), Some(2));
    assert_eq!(gpu().argmax(&gpu().tensor(1, 3, &[f32::NAN; 3]).unwrap()).unwrap(), None);
}

#[test]
fn top_k_matches_sample_top_k_and_sampler() {
    run("top_k", kernel_checks::top_ks);
    // k outside 1..=MAX_TOP_K is a typed error.
    let t = gpu().tensor(1, 3, &[1.0, 2.0, 3.0]).unwrap();
    assert!(ready(gpu().top_k_async(&t, 0, 1.0)).is_err());
    assert!(ready(gpu().top_k_async(&t, nib_engine::sample::MAX_TOP_K + 1, 1.0)).is_err());
}

fn check_matmul(b: &GpuBackend, seed: u64, ty: GgmlType, rows: usize, k: usize, n: usize) -> f64 {
    ready(kernel_checks::matmul(b, seed, ty, rows, k, n)).unwrap_or_else(|e| panic!("{e}"))
}

fn check_embed(b: &GpuBackend, seed: u64, ty: GgmlType, rows: usize, cols: usize) {
    ready(kernel_checks::embed(b, seed, ty, rows, cols)).unwrap_or_else(|e| panic!("{e}"))
}

/// Every matvec variant against its reference (kernel_checks::matvec_variants), on a backend of
/// its own: the variants it sets would change the other tests' products meanwhile.
#[test]
fn matvec_variants_match_their_references() {
    run_alone(kernel_checks::matvec_variants);
}

/// One shared check that sets kernel variants, on a poisoned backend of its own (on the shared
/// one the variants would change the other tests' results meanwhile); the backend and report.
fn run_alone(check: impl AsyncFnOnce(&GpuBackend, &mut Report) -> kernel_checks::Check) -> (GpuBackend, Report) {
    let b = GpuBackend::new(Arc::new(ModelBytes::Owned(Vec::new()))).unwrap();
    b.set_poison(true);
    let mut report = Report::default();
    ready(check(&b, &mut report)).unwrap_or_else(|e| panic!("{e}"));
    for (name, e) in &report.0 {
        println!("{name}: worst rel err {e:.2e}");
    }
    (b, report)
}

#[test]
fn matmul_and_embed_over_split_weights() {
    // Q8_0 rows of 96 are 102 bytes: 1 KiB parts hold 9 rows, so 70 rows make 8 parts.
    let mut worst = 0f64;
    for (i, ty) in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::F16].into_iter().enumerate() {
        for n in [1, 6] {
            worst = worst.max(check_matmul(gpu_split(), 100 + i as u64 * 2 + n as u64, ty, 70, 96, n));
        }
        check_embed(gpu_split(), 200 + i as u64, ty, 70, 96);
    }
    // Q6_K rows of 256 are 210 bytes: 4 rows per 1 KiB part, 18 parts.
    for n in [1, 6] {
        worst = worst.max(check_matmul(gpu_split(), 110 + n as u64, GgmlType::Q6K, 70, 256, n));
    }
    check_embed(gpu_split(), 210, GgmlType::Q6K, 70, 256);
    // Q5_0 rows of 96 are 66 bytes (every other row off word alignment): 15 rows per part.
    for n in [1, 6] {
        worst = worst.max(check_matmul(gpu_split(), 120 + n as u64, GgmlType::Q5_0, 70, 96, n));
    }
    check_embed(gpu_split(), 220, GgmlType::Q5_0, 70, 96);
    println!("split weights: worst rel err {worst:.2e}");
}

/// LayerNorm with a bias (StarCoder2, GPTBigCode) on both backends against f64, odd widths;
/// a bias of the wrong width is a typed error.
#[test]
fn layer_norm_odd_widths() {
    let b = gpu();
    let mut rng = Rng(450);
    for (rows, cols) in [(1, 256), (3, 577), (2, 1000), (5, 31)] {
        let x: Vec<f32> = rng.vec(rows * cols, 3.0).iter().map(|v| v + 2.0).collect(); // a mean to remove
        let (g, bias) = (rng.vec(cols, 1.5), rng.vec(cols, 0.5));
        let want: Vec<f64> = x
            .chunks(cols)
            .flat_map(|r| {
                let mean = r.iter().map(|v| *v as f64).sum::<f64>() / cols as f64;
                let var = r.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / cols as f64;
                let s = 1.0 / (var + 1e-5).sqrt();
                r.iter().zip(&g).zip(&bias).map(move |((v, g), b)| (*v as f64 - mean) * s * *g as f64 + *b as f64).collect::<Vec<_>>()
            })
            .collect();
        let (w, bw) = (b.weight("norm", GgmlType::F32, 1, cols, &f32_bytes(&g)).unwrap(), b.weight("bias", GgmlType::F32, 1, cols, &f32_bytes(&bias)).unwrap());
        let got = b.to_vec(&b.layer_norm(&b.tensor(rows, cols, &x).unwrap(), &w, &bw, 1e-5).unwrap()).unwrap();
        let e = rel_err(&got, &want);
        assert!(e <= TOL, "gpu layer_norm ({rows}, {cols}): {e:.2e}");
        let c = CpuBackend::new(Arc::new(ModelBytes::Owned([f32_bytes(&g), f32_bytes(&bias)].concat())), 1);
        let (cw, cb) = (c.weight_at(GgmlType::F32, 1, cols, 0).unwrap(), c.weight_at(GgmlType::F32, 1, cols, 4 * cols).unwrap());
        let e = rel_err(&c.layer_norm(&CpuTensor::new(rows, cols, x).unwrap(), &cw, &cb, 1e-5).unwrap().data, &want);
        assert!(e <= TOL, "cpu layer_norm ({rows}, {cols}): {e:.2e}");
    }
    let x = b.tensor(2, 8, &rng.vec(16, 1.0)).unwrap();
    let (w, short) = (b.weight("norm", GgmlType::F32, 1, 8, &f32_bytes(&rng.vec(8, 1.0))).unwrap(), b.weight("bias", GgmlType::F32, 1, 7, &f32_bytes(&rng.vec(7, 1.0))).unwrap());
    assert!(b.layer_norm(&x, &w, &short, 1e-5).is_err());
}

/// GELU (tanh) against f64 over ±12 (past ggml's ±10 cut-offs): the GPU and the CPU
/// reference within 1e-4, the CPU's default (ggml's f16 table) within f16 rounding.
#[test]
fn gelu_matches_f64() {
    let (b, mut rng) = (gpu(), Rng(460));
    let x: Vec<f32> = rng.vec(3 * 1001, 12.0);
    let gelu = |v: f64| if v <= -10.0 { 0.0 } else if v >= 10.0 { v } else { 0.5 * v * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * v * (1.0 + 0.044715 * v * v)).tanh()) };
    let want: Vec<f64> = x.iter().map(|&v| gelu(v as f64)).collect();
    let e = rel_err(&b.to_vec(&b.gelu(&b.tensor(3, 1001, &x).unwrap()).unwrap()).unwrap(), &want);
    assert!(e <= TOL, "gpu gelu: {e:.2e}");
    let bytes = Arc::new(ModelBytes::Owned(Vec::new()));
    let reference = CpuBackend::with_precision(Arc::clone(&bytes), 1, nib_engine::backend::cpu::Precision::Reference);
    let e = rel_err(&reference.gelu(&CpuTensor::new(3, 1001, x.clone()).unwrap()).unwrap().data, &want);
    assert!(e <= TOL, "cpu reference gelu: {e:.2e}");
    let e = rel_err(&cpu().gelu(&CpuTensor::new(3, 1001, x).unwrap()).unwrap().data, &want);
    assert!(e <= 1e-3, "cpu gelu through ggml's f16 table: {e:.2e}");
}

/// `scale` exactly as the host multiplies; `geglu` (GELU's tanh form) against the CPU
/// reference's f32 GELU, and the CPU's default path (ggml's f16 GELU table) within its f16
/// rounding of it; `geglu_matmul` against `geglu` then `matmul`. Inputs reach past ±10 (where
/// ggml's table is cut off, and a naive tanh overflows).
#[test]
fn scale_and_geglu_match() {
    let b = gpu();
    let mut rng = Rng(1600);
    let (exact, ggml) = (CpuBackend::with_precision(Arc::new(ModelBytes::Owned(Vec::new())), 1, Precision::Reference), cpu());
    for (rows, cols) in [(1, 1), (1, 2048), (3, 131), (7, 640)] {
        let x = rng.vec(rows * cols, 30.0);
        let mut t = b.tensor(rows, cols, &x).unwrap();
        b.scale(&mut t, 25.298_221).unwrap();
        let want: Vec<f32> = x.iter().map(|v| v * 25.298_221).collect();
        assert_eq!(b.to_vec(&t).unwrap(), want, "scale ({rows}, {cols})");
        let mut ct = CpuTensor::new(rows, cols, x.clone()).unwrap();
        cpu().scale(&mut ct, 25.298_221).unwrap();
        assert_eq!(ct.data, want, "cpu scale ({rows}, {cols})");

        let (g, u) = (rng.vec(rows * cols, 12.0), rng.vec(rows * cols, 2.0));
        let cg = |c: &CpuBackend| c.geglu(&CpuTensor::new(rows, cols, g.clone()).unwrap(), &CpuTensor::new(rows, cols, u.clone()).unwrap()).unwrap().data;
        let want = f64s(&cg(&exact));
        let got = b.to_vec(&b.geglu(&b.tensor(rows, cols, &g).unwrap(), &b.tensor(rows, cols, &u).unwrap()).unwrap()).unwrap();
        let e = rel_err(&got, &want);
        assert!(e <= TOL, "geglu ({rows}, {cols}): {e:.2e}");
        let eg = rel_err(&cg(&ggml), &want);
        assert!(eg <= 2e-3, "cpu geglu, ggml's f16 table ({rows}, {cols}): {eg:.2e}");
    }
    for ty in [GgmlType::Q5_0, GgmlType::Q6K, GgmlType::Q8_0] {
        let k = if ty.block_size() == 256 { 512 } else { 640 };
        for (rows, n) in [(37, 1), (640, 2), (9, 4), (11, 7)] {
            let w = b.weight("down", ty, rows, k, &random_weights(&mut rng, ty, rows, k)).unwrap();
            let g = b.tensor(n, k, &rng.vec(n * k, 4.0)).unwrap();
            let u = b.tensor(n, k, &rng.vec(n * k, 2.0)).unwrap();
            let got = b.to_vec(&b.geglu_matmul(&g, &u, &w).unwrap()).unwrap();
            let want = b.to_vec(&b.matmul(&b.geglu(&g, &u).unwrap(), &w).unwrap()).unwrap();
            let e = rel_err(&got, &f64s(&want));
            assert!(e <= TOL, "geglu_matmul {ty:?} ({rows}, {k}) n {n}: {e:.2e}");
        }
    }
}

#[test]
fn add_rms_norm_matches_add_then_norm() {
    let b = gpu();
    let mut rng = Rng(1000);
    for (rows, cols) in [(1, 576), (3, 577), (6, 31)] {
        let (xv, yv) = (rng.vec(rows * cols, 3.0), rng.vec(rows * cols, 2.0));
        let gb: Vec<u8> = rng.vec(cols, 1.5).iter().flat_map(|v| v.to_le_bytes()).collect();
        let w = b.weight("norm", GgmlType::F32, 1, cols, &gb).unwrap();
        let y = b.tensor(rows, cols, &yv).unwrap();
        let mut x = b.tensor(rows, cols, &xv).unwrap();
        let h = b.add_rms_norm(&mut x, &y, &w, 1e-5).unwrap();
        let mut x_ref = b.tensor(rows, cols, &xv).unwrap();
        b.add_assign(&mut x_ref, &y).unwrap();
        let h_ref = b.rms_norm(&x_ref, &w, 1e-5).unwrap();
        let e = rel_err(&b.to_vec(&x).unwrap(), &f64s(&b.to_vec(&x_ref).unwrap()));
        assert!(e <= TOL, "add_rms_norm ({rows}, {cols}) residual: {e:.2e}");
        let e = rel_err(&b.to_vec(&h).unwrap(), &f64s(&b.to_vec(&h_ref).unwrap()));
        assert!(e <= TOL, "add_rms_norm ({rows}, {cols}) norm: {e:.2e}");
    }
}

#[test]
fn swiglu_matmul_matches_swiglu_then_matmul() {
    let b = gpu();
    let mut rng = Rng(1100);
    let formats = kernel_checks::FORMATS;
    for ty in formats {
        let shapes = if ty.block_size() == 256 { [(37, 256, 1), (576, 1536, 2), (9, 512, 4), (11, 256, 7)] } else { [(37, 96, 1), (576, 1536, 2), (9, 64, 4), (11, 64, 7)] };
        for (rows, k, n) in shapes {
            let wb = random_weights(&mut rng, ty, rows, k);
            let w = b.weight("down", ty, rows, k, &wb).unwrap();
            let g = b.tensor(n, k, &rng.vec(n * k, 4.0)).unwrap();
            let u = b.tensor(n, k, &rng.vec(n * k, 2.0)).unwrap();
            let got = b.to_vec(&b.swiglu_matmul(&g, &u, &w).unwrap()).unwrap_or_else(|e| panic!("swiglu_matmul {ty:?} ({rows}, {k}) n {n}: {e}"));
            let want = b.to_vec(&b.matmul(&b.swiglu(&g, &u).unwrap(), &w).unwrap()).unwrap();
            let e = rel_err(&got, &f64s(&want));
            assert!(e <= TOL, "swiglu_matmul {ty:?} ({rows}, {k}) n {n}: {e:.2e}");
        }
    }
}

#[test]
fn rope_attention_matches_rope_then_attention() {
    let b = gpu();
    let mut rng = Rng(1200);
    for (nh, nkv, hd, dims, neox, prefill) in [(9, 3, 64, 64, false, 7), (6, 2, 34, 20, true, 70), (4, 4, 16, 16, false, 3), (2, 1, 8, 0, false, 5)] {
        let shape = AttnShape { n_heads: nh, n_kv_heads: nkv, head_dim: hd, window: None };
        let rope = Rope { theta: 10_000.0, dims, neox, freq_scale: 1.0 };
        let mut fused = b.new_cache(1, prefill + 4, shape).unwrap();
        let mut plain = b.new_cache(1, prefill + 4, shape).unwrap();
        let mut pos = 0;
        for n in [prefill, 1, 1] {
            let (q, k, v) = (rng.vec(n * shape.q_dim(), 2.0), rng.vec(n * shape.kv_dim(), 2.0), rng.vec(n * shape.kv_dim(), 1.0));
            let t = |data: &[f32], cols| b.tensor(n, cols, data).unwrap();
            let (mut qf, mut kf, vf) = (t(&q, shape.q_dim()), t(&k, shape.kv_dim()), t(&v, shape.kv_dim()));
            let got = b.rope_attention(&mut fused, 0, pos, &mut qf, &mut kf, &vf, shape, &rope).unwrap();
            let (mut qp, mut kp, vp) = (t(&q, shape.q_dim()), t(&k, shape.kv_dim()), t(&v, shape.kv_dim()));
            b.rope(&mut qp, nh, hd, pos, &rope).unwrap();
            b.rope(&mut kp, nkv, hd, pos, &rope).unwrap();
            let want = b.attention(&mut plain, 0, pos, &qp, &kp, &vp, shape).unwrap();
            let e = rel_err(&b.to_vec(&got).unwrap(), &f64s(&b.to_vec(&want).unwrap()));
            assert!(e <= TOL, "rope_attention {shape:?} dims {dims} neox {neox} pos {pos} n {n}: {e:.2e}");
            pos += n;
        }
    }
}

/// Rows of several sequences (candidates decoded together): forked caches at different
/// positions, one token each, against each row through `rope_attention` on its own cache; on
/// the CPU backend too, which must give the same as the GPU within the attention tolerance.
#[test]
fn rope_attention_rows_match_each_row_alone() {
    let (b, cpu) = (gpu(), cpu());
    let mut rng = Rng(1300);
    let (shape, rope) = (AttnShape { n_heads: 6, n_kv_heads: 2, head_dim: 34, window: None }, Rope { theta: 10_000.0, dims: 34, neox: true, freq_scale: 1.0 });
    let (qd, kd) = (shape.q_dim(), shape.kv_dim());
    // A shared prompt of 9 positions, then sequences that already went 0, 2 and 5 tokens further.
    let prompt = (rng.vec(9 * qd, 2.0), rng.vec(9 * kd, 2.0), rng.vec(9 * kd, 1.0));
    let mut base = b.new_cache(1, 24, shape).unwrap();
    let t = |n: usize, data: &[f32], cols| b.tensor(n, cols, data).unwrap();
    b.rope_attention(&mut base, 0, 0, &mut t(9, &prompt.0, qd), &mut t(9, &prompt.1, kd), &t(9, &prompt.2, kd), shape, &rope).unwrap();
    let mut caches: Vec<_> = [0usize, 2, 5].iter().map(|_| b.fork_cache(&base, 9, 20).unwrap().unwrap()).collect();
    let mut alone: Vec<_> = [0usize, 2, 5].iter().map(|_| b.fork_cache(&base, 9, 20).unwrap().unwrap()).collect();
    let positions: Vec<usize> = [0usize, 2, 5].iter().map(|g| 9 + g).collect();
    for (j, &pos) in positions.iter().enumerate() {
        for p in 9..pos {
            let (q, k, v) = (rng.vec(qd, 2.0), rng.vec(kd, 2.0), rng.vec(kd, 1.0));
            for c in [&mut caches[j], &mut alone[j]] {
                b.rope_attention(c, 0, p, &mut t(1, &q, qd), &mut t(1, &k, kd), &t(1, &v, kd), shape, &rope).unwrap();
            }
        }
    }
    let (q, k, v) = (rng.vec(3 * qd, 2.0), rng.vec(3 * kd, 2.0), rng.vec(3 * kd, 1.0));
    let mut refs: Vec<_> = caches.iter_mut().collect();
    let got = b.to_vec(&b.rope_attention_rows(&mut refs, 0, &positions, &mut t(3, &q, qd), &mut t(3, &k, kd), &t(3, &v, kd), shape, &rope).unwrap()).unwrap();
    for (j, &pos) in positions.iter().enumerate() {
        let row = |x: &[f32], w: usize| x[j * w..(j + 1) * w].to_vec();
        let want = b.rope_attention(&mut alone[j], 0, pos, &mut t(1, &row(&q, qd), qd), &mut t(1, &row(&k, kd), kd), &t(1, &row(&v, kd), kd), shape, &rope).unwrap();
        let e = rel_err(&got[j * qd..(j + 1) * qd], &f64s(&b.to_vec(&want).unwrap()));
        assert!(e <= TOL, "row {j} at {pos}: {e:.2e}");
    }
    // The CPU backend's rows, on caches holding the same keys and values.
    let mut cpu_base = cpu.new_cache(1, 24, shape).unwrap();
    let c = |n: usize, data: &[f32], cols| CpuTensor::new(n, cols, data.to_vec()).unwrap();
    cpu.rope_attention(&mut cpu_base, 0, 0, &mut c(9, &prompt.0, qd), &mut c(9, &prompt.1, kd), &c(9, &prompt.2, kd), shape, &rope).unwrap();
    let mut cpu_caches: Vec<_> = (0..3).map(|_| cpu.fork_cache(&cpu_base, 9, 12).unwrap().unwrap()).collect();
    let mut refs: Vec<_> = cpu_caches.iter_mut().collect();
    let at = [9, 9, 9];
    let cpu_rows = cpu.rope_attention_rows(&mut refs, 0, &at, &mut c(3, &q, qd), &mut c(3, &k, kd), &c(3, &v, kd), shape, &rope).unwrap();
    let mut gpu_caches: Vec<_> = (0..3).map(|_| b.fork_cache(&base, 9, 12).unwrap().unwrap()).collect();
    let mut refs: Vec<_> = gpu_caches.iter_mut().collect();
    let gpu_rows = b.rope_attention_rows(&mut refs, 0, &at, &mut t(3, &q, qd), &mut t(3, &k, kd), &t(3, &v, kd), shape, &rope).unwrap();
    let e = rel_err(&b.to_vec(&gpu_rows).unwrap(), &f64s(&cpu_rows.data));
    assert!(e <= 2e-3, "GPU rows against CPU rows: {e:.2e}");
}

/// The forks of a request for several candidates, dropped, take their bind groups along: the
/// bind-group cache holds its buffers, so otherwise the forks' KV caches would stay allocated
/// until the next fork. On a backend of its own (others would change the count meanwhile).
#[test]
fn dropped_caches_take_their_bind_groups_along() {
    let b = GpuBackend::new(Arc::new(ModelBytes::Owned(Vec::new()))).unwrap();
    let gpu = b.context();
    let mut rng = Rng(1400);
    let (shape, rope) = (AttnShape { n_heads: 4, n_kv_heads: 2, head_dim: 16, window: None }, Rope { theta: 10_000.0, dims: 16, neox: false, freq_scale: 1.0 });
    let (qd, kd) = (shape.q_dim(), shape.kv_dim());
    let step = |c: &mut GpuCache, pos: usize, n: usize, rng: &mut Rng| {
        let t = |data: Vec<f32>, cols| b.tensor(n, cols, &data).unwrap();
        let out = b.rope_attention(c, 0, pos, &mut t(rng.vec(n * qd, 2.0), qd), &mut t(rng.vec(n * kd, 2.0), kd), &t(rng.vec(n * kd, 1.0), kd), shape, &rope).unwrap();
        assert!(b.to_vec(&out).unwrap().iter().all(|x| x.is_finite()));
    };
    let mut base = b.new_cache(1, 32, shape).unwrap();
    step(&mut base, 0, 9, &mut rng);
    let mut forks: Vec<GpuCache> = (0..7).map(|_| b.fork_cache(&base, 9, 20).unwrap().unwrap()).collect();
    step(&mut base, 9, 1, &mut rng);
    for f in &mut forks {
        step(f, 9, 1, &mut rng);
    }
    let (q, k, v) = (rng.vec(7 * qd, 2.0), rng.vec(7 * kd, 2.0), rng.vec(7 * kd, 1.0));
    let mut refs: Vec<&mut GpuCache> = forks.iter_mut().collect();
    let t = |data: &[f32], cols| b.tensor(7, cols, data).unwrap();
    b.to_vec(&b.rope_attention_rows(&mut refs, 0, &[10; 7], &mut t(&q, qd), &mut t(&k, kd), &t(&v, kd), shape, &rope).unwrap()).unwrap();
    // Handles of the forks' buffers, to count the groups over them (they keep the buffers, not
    // the groups, alive).
    let fork_buffers: Vec<wgpu::Buffer> = forks.iter().flat_map(|f| f.buffers().cloned()).collect();
    let (total, over_forks, over_base) = (gpu.cached_bind_groups(), gpu.cached_bind_groups_over(&fork_buffers), gpu.cached_bind_groups_over(base.buffers()));
    println!("bind groups: {total} cached, {over_forks} of them over the 7 forks' caches, {over_base} over the base cache");
    // Per fork: RoPE + KV append and attention, alone and among the rows.
    assert!(over_forks >= 4 * 7, "the forks' steps bound their caches in only {over_forks} bind groups");
    assert!(over_base > 0);
    drop(forks);
    assert_eq!(gpu.cached_bind_groups_over(&fork_buffers), 0, "bind groups over the dropped forks' caches are still cached");
    assert_eq!(gpu.cached_bind_groups(), total - over_forks, "dropping the forks forgot other bind groups too");
    assert_eq!(gpu.cached_bind_groups_over(base.buffers()), over_base);
    // The base cache still works, its bind groups untouched by the forks' going.
    step(&mut base, 10, 1, &mut rng);
}

/// Limits met at run time, by a request and not by the model, are not `Unsupported` (which the
/// browser reports as `model_unsupported`): an activation past the largest binding is out of
/// memory, a size past the kernels' u32 an invalid argument.
#[test]
fn runtime_limits_are_not_unsupported() {
    let gpu = gpu().context();
    match gpu.alloc(gpu.max_binding() + 4) {
        Err(Error::Gpu { kind: GpuFailure::OutOfMemory, message }) => println!("{message}"),
        Err(e) => panic!("not OutOfMemory: {e}"),
        Ok(_) => panic!("an activation past the largest binding was allocated"),
    }
    assert!(matches!(ops::u32_of(1 << 40, "tokens"), Err(Error::InvalidArgument(_))));
}

/// Stacked weights (as `stack_weights` makes them: the rows of each, one after another) through
/// `glu` and `qkv_attention`, against the same weights apart through the plain ops.
#[test]
fn stacked_weights_match_separate_ones() {
    let b = gpu();
    let mut rng = Rng(1300);
    for ty in kernel_checks::FORMATS.into_iter().filter(|&t| t != GgmlType::F32) {
        let shapes = if ty.block_size() == 256 { [(45, 256, 1), (1536, 512, 3), (20, 256, 9)] } else { [(45, 96, 1), (1536, 576, 3), (20, 64, 9)] };
        for (f, k, n) in shapes {
            let (gb, ub) = (random_weights(&mut rng, ty, f, k), random_weights(&mut rng, ty, f, k));
            let stacked = b.weight("gate+up", ty, 2 * f, k, &[gb.clone(), ub.clone()].concat()).unwrap();
            let (gate, up) = (b.weight("gate", ty, f, k, &gb).unwrap(), b.weight("up", ty, f, k, &ub).unwrap());
            let h = b.tensor(n, k, &rng.vec(n * k, 2.0)).unwrap();
            let got = b.to_vec(&b.glu(&h, &stacked).unwrap()).unwrap();
            let want = b.to_vec(&b.swiglu(&b.matmul(&h, &gate).unwrap(), &b.matmul(&h, &up).unwrap()).unwrap()).unwrap();
            let e = rel_err(&got, &f64s(&want));
            assert!(e <= TOL, "glu {ty:?} ({f}, {k}) n {n}: {e:.2e}");
        }
    }
    for (nh, nkv, hd, dims, neox, dim) in [(9, 3, 64, 64, false, 576), (6, 2, 34, 20, true, 96), (2, 1, 8, 0, false, 64)] {
        let shape = AttnShape { n_heads: nh, n_kv_heads: nkv, head_dim: hd, window: None };
        let rope = Rope { theta: 10_000.0, dims, neox, freq_scale: 1.0 };
        let ty = GgmlType::Q8_0;
        let (qb, kb, vb) = (random_weights(&mut rng, ty, shape.q_dim(), dim), random_weights(&mut rng, ty, shape.kv_dim(), dim), random_weights(&mut rng, ty, shape.kv_dim(), dim));
        let stacked = b.weight("qkv", ty, shape.q_dim() + 2 * shape.kv_dim(), dim, &[qb.clone(), kb.clone(), vb.clone()].concat()).unwrap();
        let wq = b.weight("q", ty, shape.q_dim(), dim, &qb).unwrap();
        let wk = b.weight("k", ty, shape.kv_dim(), dim, &kb).unwrap();
        let wv = b.weight("v", ty, shape.kv_dim(), dim, &vb).unwrap();
        // Without and with q/k/v biases (Qwen2): the stacked [bq; bk; bv] is added inside
        // rope_store, the apart ones by add_bias.
        for with_bias in [false, true] {
            let (bq, bk, bv) = (rng.vec(shape.q_dim(), 1.0), rng.vec(shape.kv_dim(), 1.0), rng.vec(shape.kv_dim(), 1.0));
            let vector = |name: &str, v: &[f32]| b.weight(name, GgmlType::F32, 1, v.len(), &f32_bytes(v)).unwrap();
            let stacked_bias = vector("qkv bias", &[bq.clone(), bk.clone(), bv.clone()].concat());
            let (wbq, wbk, wbv) = (vector("bq", &bq), vector("bk", &bk), vector("bv", &bv));
            let mut fused = b.new_cache(1, 16, shape).unwrap();
            let mut plain = b.new_cache(1, 16, shape).unwrap();
            let mut pos = 0;
            for n in [7, 1, 2] {
                let h = b.tensor(n, dim, &rng.vec(n * dim, 2.0)).unwrap();
                let got = b.qkv_attention(&mut fused, 0, pos, &h, &stacked, with_bias.then_some(&stacked_bias), shape, &rope).unwrap();
                let (mut q, mut k, mut v) = (b.matmul(&h, &wq).unwrap(), b.matmul(&h, &wk).unwrap(), b.matmul(&h, &wv).unwrap());
                if with_bias {
                    b.add_bias(&mut q, &wbq).unwrap();
                    b.add_bias(&mut k, &wbk).unwrap();
                    b.add_bias(&mut v, &wbv).unwrap();
                }
                let want = b.rope_attention(&mut plain, 0, pos, &mut q, &mut k, &v, shape, &rope).unwrap();
                let e = rel_err(&b.to_vec(&got).unwrap(), &f64s(&b.to_vec(&want).unwrap()));
                assert!(e <= TOL, "qkv_attention {shape:?} dims {dims} bias {with_bias} pos {pos} n {n}: {e:.2e}");
                pos += n;
            }
        }
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `add_bias` (Qwen2's q/k/v biases) on both backends against the same sums on the host, which
/// f32 addition makes exact: odd sizes, fresh random inputs. The op works in place, so there is
/// no output to poison; every element is checked.
#[test]
fn add_bias_matches_the_host() {
    let mut rng = Rng(1500);
    let b = gpu();
    for (rows, cols) in [(1, 1), (1, 896), (3, 131), (7, 1152), (130, 33)] {
        let x = rng.vec(rows * cols, 3.0);
        let bias = rng.vec(cols, 1.0);
        let mut t = b.tensor(rows, cols, &x).unwrap();
        let w = b.weight("bias", GgmlType::F32, 1, cols, &f32_bytes(&bias)).unwrap();
        b.add_bias(&mut t, &w).unwrap();
        let got = b.to_vec(&t).unwrap();
        let want: Vec<f32> = x.iter().enumerate().map(|(i, v)| v + bias[i % cols]).collect();
        assert_eq!(got, want, "add_bias ({rows}, {cols})");
        // The CPU backend's add_bias gives the same.
        let c = CpuBackend::new(Arc::new(ModelBytes::Owned(f32_bytes(&bias))), 1);
        let mut ct = CpuTensor::new(rows, cols, x.clone()).unwrap();
        let cw = c.weight_at(GgmlType::F32, 1, cols, 0).unwrap();
        c.add_bias(&mut ct, &cw).unwrap();
        assert_eq!(ct.data, want, "cpu add_bias ({rows}, {cols})");
    }
    // A bias of the wrong width is a typed error, not a panic.
    let mut t = b.tensor(2, 8, &rng.vec(16, 1.0)).unwrap();
    let w = b.weight("bias", GgmlType::F32, 1, 7, &f32_bytes(&rng.vec(7, 1.0))).unwrap();
    assert!(b.add_bias(&mut t, &w).is_err());
}

/// The value of a future that is ready at once (natively every GPU readback blocks).
fn ready<T>(f: impl std::future::Future<Output = T>) -> T {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a native readback was pending"),
    }
}

#[test]
fn bad_inputs_are_errors() {
    let b = gpu();
    let wb = random_weights(&mut Rng(900), GgmlType::Q8_0, 4, 32);
    let w = b.weight("w", GgmlType::Q8_0, 4, 32, &wb).unwrap();
    assert!(b.embed(&w, &[4]).is_err(), "token id past the table");
    assert!(b.weight("w", GgmlType::Q8_0, 5, 32, &wb).is_err(), "bytes for the wrong shape");
    assert!(b.weight("w", GgmlType::BF16, 1, 2, &[0; 4]).is_err(), "a format the kernels lack");
    let x = b.tensor(2, 31, &[1.0; 62]).unwrap();
    assert!(b.matmul(&x, &w).is_err(), "inner dimensions differ");
    assert!(b.tensor(2, 3, &[1.0; 5]).is_err());
    let shape = AttnShape { n_heads: 2, n_kv_heads: 1, head_dim: 16, window: None };
    let mut cache = b.new_cache(1, 4, shape).unwrap();
    let q = b.tensor(5, 32, &[0.5; 160]).unwrap();
    let kv = b.tensor(5, 16, &[0.5; 80]).unwrap();
    assert!(b.attention(&mut cache, 0, 0, &q, &kv, &kv, shape).is_err(), "past the context");
    assert!(b.new_cache(1, 4, AttnShape { n_heads: 2, n_kv_heads: 1, head_dim: 15, window: None }).is_err(), "odd head dim");
}
