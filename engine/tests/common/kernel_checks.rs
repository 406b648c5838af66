//! The GPU kernel property checks that run both natively on lavapipe (engine/tests/gpu_kernels.rs)
//! and in headless Chromium's WebGPU on SwiftShader (kernel-check/, driven by
//! web/test/browser/kernels.test.mjs): one shape and seed grid, one reference each. Fresh
//! random inputs (never zeros), shapes that are not multiples of any tile, outputs poisoned
//! with NaN before each kernel writes them (the backend's `set_poison`). Every check reads back
//! through `to_vec_async`, the only readback the browser has; natively it is ready at once.
//!
//! The references: matmul and embedding against the reference dequantization (`quant`) times
//! x in f64; RMSNorm in f64; RoPE, SwiGLU and add against the CPU backend; attention against
//! an f64 softmax over the same q and f16-rounded keys and values (in both variants where the
//! device has shader-f16); argmax and top-k against
//! `sample`'s, and sampling from the GPU's top-k against the CPU sampler on the whole row.
#![allow(dead_code)]

use std::sync::Arc;

use nib_engine::backend::cpu::{CpuBackend, CpuTensor};
use nib_engine::backend::gpu::{ops, GpuBackend, Tuning};
use nib_engine::backend::{AttnShape, Backend, Rope};
use nib_engine::gguf::ModelBytes;
use nib_engine::quant::{dequantize, GgmlType};
use nib_engine::sample::{self, Sampler, SamplerConfig};

use super::random::{self, random_weights, Rng};

/// ‖gpu − ref‖ / ‖ref‖ allowed on the f32 paths.
pub const TOL: f64 = 1e-4;

/// Every weight format the kernels read.
pub const FORMATS: [GgmlType; 10] =
    [GgmlType::F32, GgmlType::F16, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K];

/// Seeds that once failed stay here as regression cases (none so far): (seed, format, rows, k, n).
const REGRESSION_MATMULS: [(u64, GgmlType, usize, usize, usize); 0] = [];

/// The worst error of each named check, in the order first met.
#[derive(Default, Debug)]
pub struct Report(pub Vec<(String, f64)>);

impl Report {
    fn note(&mut self, name: &str, e: f64) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, w)) => *w = w.max(e),
            None => self.0.push((name.to_string(), e)),
        }
    }

    pub fn worst(&self, prefix: &str) -> f64 {
        self.0.iter().filter(|(n, _)| n.starts_with(prefix)).map(|(_, e)| *e).fold(0.0, f64::max)
    }
}

pub type Check = Result<(), String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

pub fn rel_err(got: &[f32], want: &[f64]) -> Result<f64, String> {
    if got.len() != want.len() {
        return Err(format!("{} values, {} expected", got.len(), want.len()));
    }
    if !got.iter().all(|x| x.is_finite()) {
        return Err("non-finite output (poison left unwritten?)".into());
    }
    let d: f64 = got.iter().zip(want).map(|(g, w)| (*g as f64 - w).powi(2)).sum::<f64>().sqrt();
    let n: f64 = want.iter().map(|w| w * w).sum::<f64>().sqrt();
    Ok(d / n)
}

fn within(what: String, e: f64, tol: f64) -> Result<f64, String> {
    if e <= tol {
        Ok(e)
    } else {
        Err(format!("{what}: rel err {e:.2e} > {tol:.0e}"))
    }
}

pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

pub fn cpu() -> CpuBackend {
    CpuBackend::new(Arc::new(ModelBytes::Owned(Vec::new())), 1)
}

/// The matmul grid: (format, k, rows, n). n = 1..=4 run the matrix-vector kernel, larger n the
/// tiled one (tiles of 64 × 64); k is one block and several, odd for the 1-value formats; the
/// K-quants' 256-value super-blocks (Q6_K's 210-byte blocks put every other row off word
/// alignment). Seeds count up from 1 in this order.
pub fn matmul_grid() -> Vec<(GgmlType, usize, usize, usize)> {
    let mut grid = Vec::new();
    for ty in FORMATS {
        let (ks, shapes): (&[usize], &[(usize, usize)]) = match ty.block_size() {
            1 => (&[37, 130], &[(1, 1), (7, 1), (65, 1), (33, 3), (130, 5), (67, 33), (9, 70), (129, 131)]),
            256 => (&[256, 768], &[(1, 1), (7, 1), (65, 2), (33, 3), (130, 5), (67, 33), (129, 131)]),
            _ => (&[32, 96, 576], &[(1, 1), (7, 1), (65, 1), (33, 3), (130, 5), (67, 33), (9, 70), (129, 131)]),
        };
        for &k in ks {
            for &(rows, n) in shapes {
                grid.push((ty, k, rows, n));
            }
        }
    }
    grid
}

/// One product `x (n, k) · wᵀ` against the dequantized weights times x in f64.
pub async fn matmul(b: &GpuBackend, seed: u64, ty: GgmlType, rows: usize, k: usize, n: usize) -> Result<f64, String> {
    let mut rng = Rng(seed);
    let wb = random_weights(&mut rng, ty, rows, k);
    let x: Vec<f32> = (0..n)
        .flat_map(|_| {
            let scale = 10f32.powf(rng.unit());
            rng.vec(k, scale)
        })
        .collect();
    let mut wf = vec![0f32; rows * k];
    dequantize(ty, &wb, &mut wf).map_err(err)?;
    let want: Vec<f64> = (0..n)
        .flat_map(|t| {
            let (x, wf) = (&x, &wf);
            (0..rows).map(move |r| (0..k).map(|c| wf[r * k + c] as f64 * x[t * k + c] as f64).sum())
        })
        .collect();
    let w = b.weight("w", ty, rows, k, &wb).map_err(err)?;
    let out = b.matmul(&b.tensor(n, k, &x).map_err(err)?, &w).map_err(err)?;
    if (out.rows, out.cols) != (n, rows) {
        return Err(format!("matmul {ty:?}: output ({}, {})", out.rows, out.cols));
    }
    let what = format!("matmul {ty:?} rows {rows} k {k} n {n} seed {seed} (parts {})", w.n_parts());
    within(what, rel_err(&b.to_vec_async(&out).await.map_err(err)?, &want)?, TOL)
}

/// Every case of [`matmul_grid`] and the regression seeds.
pub async fn matmuls(b: &GpuBackend, report: &mut Report) -> Check {
    for (i, (ty, k, rows, n)) in matmul_grid().into_iter().enumerate() {
        report.note(&format!("matmul {}", ty.name()), matmul(b, i as u64 + 1, ty, rows, k, n).await?);
    }
    for (seed, ty, rows, k, n) in REGRESSION_MATMULS {
        report.note(&format!("matmul {}", ty.name()), matmul(b, seed, ty, rows, k, n).await?);
    }
    Ok(())
}

/// Rows `ids` of a table: dequantization is exact, so bit-identical to the reference.
pub async fn embed(b: &GpuBackend, seed: u64, ty: GgmlType, rows: usize, cols: usize) -> Check {
    let mut rng = Rng(seed);
    let wb = random_weights(&mut rng, ty, rows, cols);
    let mut wf = vec![0f32; rows * cols];
    dequantize(ty, &wb, &mut wf).map_err(err)?;
    let ids: Vec<u32> = [0, rows - 1, 1].into_iter().chain((0..5).map(|_| (rng.next() % rows as u64) as usize)).map(|i| i as u32).collect();
    let w = b.weight("table", ty, rows, cols, &wb).map_err(err)?;
    let got = b.to_vec_async(&b.embed(&w, &ids).map_err(err)?).await.map_err(err)?;
    let want: Vec<f32> = ids.iter().flat_map(|&i| wf[i as usize * cols..(i as usize + 1) * cols].to_vec()).collect();
    if got.iter().map(|x| x.to_bits()).ne(want.iter().map(|x| x.to_bits())) {
        return Err(format!("embed {ty:?} seed {seed} ({} parts): not bit-identical to the reference", w.n_parts()));
    }
    Ok(())
}

/// [`embed`] for every format: 37 rows of an odd width (1-value formats) or several blocks.
pub async fn embeds(b: &GpuBackend, report: &mut Report) -> Check {
    for (i, ty) in FORMATS.into_iter().enumerate() {
        let cols = match ty.block_size() {
            1 => 45,
            256 => 512,
            _ => 96,
        };
        embed(b, 300 + i as u64, ty, 37, cols).await?;
        report.note(&format!("embed {}", ty.name()), 0.0);
    }
    Ok(())
}

/// RMSNorm against f64, odd widths; (rows, cols, weight length): whole rows, and per head
/// (Gemma 3's q/k norms: rows of 1024 = 4 heads of 256). A weight that does not divide the row
/// is a typed error.
pub async fn rms_norms(b: &GpuBackend, report: &mut Report) -> Check {
    let mut rng = Rng(400);
    for (rows, cols, d) in [(1, 576, 576), (3, 577, 577), (2, 1000, 1000), (5, 31, 31), (3, 1024, 256), (2, 96, 32)] {
        let x = rng.vec(rows * cols, 3.0);
        let g = rng.vec(d, 1.5);
        let gb: Vec<u8> = g.iter().flat_map(|v| v.to_le_bytes()).collect();
        let w = b.weight("norm", GgmlType::F32, 1, d, &gb).map_err(err)?;
        let got = b.to_vec_async(&b.rms_norm(&b.tensor(rows, cols, &x).map_err(err)?, &w, 1e-5).map_err(err)?).await.map_err(err)?;
        let want: Vec<f64> = x
            .chunks(d)
            .flat_map(|r| {
                let s = 1.0 / (r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / d as f64 + 1e-5).sqrt();
                r.iter().zip(&g).map(move |(v, g)| *v as f64 * s * *g as f64).collect::<Vec<_>>()
            })
            .collect();
        report.note("rms_norm", within(format!("rms_norm ({rows}, {cols}) by {d}"), rel_err(&got, &want)?, TOL)?);
        let c = CpuBackend::new(Arc::new(ModelBytes::Owned(gb)), 1);
        let cw = c.weight_at(GgmlType::F32, 1, d, 0).map_err(err)?;
        let cpu_out = c.rms_norm(&CpuTensor::new(rows, cols, x).map_err(err)?, &cw, 1e-5).map_err(err)?;
        report.note("rms_norm cpu", within(format!("cpu rms_norm ({rows}, {cols}) by {d}"), rel_err(&cpu_out.data, &want)?, TOL)?);
    }
    let w = b.weight("norm", GgmlType::F32, 1, 7, &f32_bytes(&rng.vec(7, 1.0))).map_err(err)?;
    if b.rms_norm(&b.tensor(2, 16, &rng.vec(32, 1.0)).map_err(err)?, &w, 1e-5).is_ok() {
        return Err("rms_norm with a weight of 7 over rows of 16 was not an error".into());
    }
    Ok(())
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub async fn ropes(b: &GpuBackend, report: &mut Report) -> Check {
    let c = cpu();
    let mut rng = Rng(500);
    for (n, heads, hd, dims, pos, neox) in [(1, 9, 64, 64, 0, false), (3, 3, 64, 64, 3000, false), (5, 2, 34, 20, 77, true), (70, 4, 16, 16, 5, false)] {
        let rope = Rope { theta: 100_000.0, dims, neox, freq_scale: 1.0 };
        let x = rng.vec(n * heads * hd, 2.0);
        let mut g = b.tensor(n, heads * hd, &x).map_err(err)?;
        b.rope(&mut g, heads, hd, pos, &rope).map_err(err)?;
        let mut ct = CpuTensor::new(n, heads * hd, x).map_err(err)?;
        c.rope(&mut ct, heads, hd, pos, &rope).map_err(err)?;
        let e = rel_err(&b.to_vec_async(&g).await.map_err(err)?, &f64s(&ct.data))?;
        report.note("rope", within(format!("rope n {n} heads {heads} hd {hd} dims {dims} pos {pos} neox {neox}"), e, TOL)?);
    }
    Ok(())
}

pub async fn swiglus_and_adds(b: &GpuBackend, report: &mut Report) -> Check {
    let c = cpu();
    let mut rng = Rng(600);
    for (rows, cols) in [(1, 1536), (7, 333)] {
        let (gv, uv) = (rng.vec(rows * cols, 6.0), rng.vec(rows * cols, 2.0));
        let (g, u) = (b.tensor(rows, cols, &gv).map_err(err)?, b.tensor(rows, cols, &uv).map_err(err)?);
        let (cg, cu) = (CpuTensor::new(rows, cols, gv).map_err(err)?, CpuTensor::new(rows, cols, uv).map_err(err)?);
        let got = b.to_vec_async(&b.swiglu(&g, &u).map_err(err)?).await.map_err(err)?;
        let e = rel_err(&got, &f64s(&c.swiglu(&cg, &cu).map_err(err)?.data))?;
        report.note("swiglu", within(format!("swiglu ({rows}, {cols})"), e, TOL)?);
        let mut x = g;
        b.add_assign(&mut x, &u).map_err(err)?;
        let mut cx = cg;
        c.add_assign(&mut cx, &cu).map_err(err)?;
        let e = rel_err(&b.to_vec_async(&x).await.map_err(err)?, &f64s(&cx.data))?;
        report.note("add", within(format!("add ({rows}, {cols})"), e, TOL)?);
    }
    Ok(())
}

/// A prefill then decode steps over one layer's cache, against attention in f64. (heads, kv
/// heads, head dim, prefill, decode steps, sliding window): GQA groups, a head dim that is not
/// a multiple of 4, prefills that end inside and across 64-position chunks; windows (Gemma 3's
/// local layers) within a chunk, leaving whole 64-position chunks out, and of one position.
/// Each step runs in both variants where the device has shader-f16 (the cache unpacked from
/// u32 words, or read as f16; both write the same cache, the second time the same values), each
/// within [`TOL`] (both multiply in f32), and the f16 kernel must have been compiled: it ran.
/// Without shader-f16, asking for the f16 variant is an error.
/// Then the same with the attention scratch lowered (`GpuBackend::set_attn_scratch`) so that
/// prefill chunks go through attention in several blocks of query rows (and, below one row's
/// scratch, one row per block), each chunk's dispatches counted: 2 per block.
/// Sets the backend's tuning and scratch limit; give it a backend of its own where tests run in
/// parallel.
pub async fn attentions(b: &GpuBackend, report: &mut Report) -> Check {
    let c = cpu();
    let gpu = b.context();
    let auto = gpu.tuning();
    let variants: Vec<bool> = [false].into_iter().chain(gpu.has_f16().then_some(true)).collect();
    if !gpu.has_f16() && gpu.set_tuning(Tuning { f16: Some(true), ..auto }).is_ok() {
        return Err("f16 attention was accepted on a device without shader-f16".into());
    }
    let mut rng = Rng(700);
    let cases = [(9, 3, 64, 7, 2, None), (6, 2, 34, 70, 3, None), (4, 4, 16, 130, 1, None), (6, 2, 34, 70, 3, Some(16)), (4, 4, 16, 200, 2, Some(64)), (2, 1, 8, 5, 3, Some(1))];
    for (nh, nkv, hd, prefill, steps, window) in cases {
        let shape = AttnShape { n_heads: nh, n_kv_heads: nkv, head_dim: hd, window };
        let chunks: Vec<usize> = std::iter::once(prefill).chain(std::iter::repeat_n(1, steps)).collect();
        attention_steps(b, &c, &mut rng, shape, &chunks, &variants, "", report).await?;
    }
    // Row blocks: (heads, kv heads, head dim, window, rows per block of the first chunk; 0: a
    // limit below one row). Chunks of 150 and 90 rows, then a decode step: the second chunk's
    // rows see more splits, so fewer fit a block; the decode step is one block whatever the limit.
    let chunks = [150, 90, 1];
    for (nh, nkv, hd, window, rows) in [(6, 2, 34, None, 40), (4, 4, 16, Some(40), 40), (2, 1, 8, Some(3), 0)] {
        let shape = AttnShape { n_heads: nh, n_kv_heads: nkv, head_dim: hd, window };
        let row_bytes = |pos: usize, n: usize| (nh * (pos + n).div_ceil(ops::ATTN_CHUNK) * hd * 4) as u64;
        let limit = (rows as u64 * row_bytes(0, chunks[0])).max(1);
        b.set_attn_scratch(limit);
        let dispatches = attention_steps(b, &c, &mut rng, shape, &chunks, &variants, " blocked", report).await?;
        let (mut pos, decode) = (0, dispatches[chunks.len() - 1]);
        for (i, &n) in chunks.iter().enumerate() {
            let fit = (limit / row_bytes(pos, n)).clamp(1, n as u64) as usize;
            let blocks = n.div_ceil(fit);
            if i == 0 && blocks < 3 {
                return Err(format!("attention blocked {shape:?}: {blocks} blocks of the first chunk, meant to be several"));
            }
            if dispatches[i] != decode + 2 * (blocks as u64 - 1) {
                return Err(format!("attention blocked {shape:?} pos {pos} n {n}: {} dispatches, a decode step's {decode} + 2 per further block of {blocks}", dispatches[i]));
            }
            pos += n;
        }
    }
    b.set_attn_scratch(nib_engine::backend::gpu::ATTN_SCRATCH);
    gpu.set_tuning(auto).map_err(err)?;
    if variants.len() > 1 && !gpu.has_kernel(("attention", 1)) {
        return Err("attention's f16 kernel was never compiled: the f16 variant did not run".into());
    }
    Ok(())
}

/// Attention calls of `chunks` rows one after another over fresh caches of one layer, in each
/// of `variants` (f16 or not), against f64 and the CPU backend; reported as "attention" (or
/// "attention f16") + `suffix`. Returns each chunk's dispatches in the last variant's call.
#[allow(clippy::too_many_arguments)]
async fn attention_steps(b: &GpuBackend, c: &CpuBackend, rng: &mut Rng, shape: AttnShape, chunks: &[usize], variants: &[bool], suffix: &str, report: &mut Report) -> Result<Vec<u64>, String> {
    let gpu = b.context();
    let auto = gpu.tuning();
    let total: usize = chunks.iter().sum();
    let mut gc = b.new_cache(2, total + 5, shape).map_err(err)?;
    let mut cc = c.new_cache(2, total + 5, shape).map_err(err)?;
    let (mut ks, mut vs) = (Vec::new(), Vec::new());
    let (mut pos, mut dispatches) = (0, Vec::new());
    for &n in chunks {
        let (q, k, v) = (rng.vec(n * shape.q_dim(), 2.0), rng.vec(n * shape.kv_dim(), 2.0), rng.vec(n * shape.kv_dim(), 1.0));
        ks.extend_from_slice(&k);
        vs.extend_from_slice(&v);
        let want = random::attention_f64(&q, &ks, &vs, pos, n, shape);
        // The CPU backend also rounds q and the probabilities to f16 (ggml's habit): 2e-3.
        let ct = |n: usize, cols: usize, data: Vec<f32>| CpuTensor::new(n, cols, data).map_err(err);
        let cpu_out = c.attention(&mut cc, 1, pos, &ct(n, shape.q_dim(), q.clone())?, &ct(n, shape.kv_dim(), k.clone())?, &ct(n, shape.kv_dim(), v.clone())?, shape).map_err(err)?;
        let mut count = 0;
        for &f16 in variants {
            gpu.set_tuning(Tuning { f16: Some(f16), ..auto }).map_err(err)?;
            let name = format!("{}{suffix}", if f16 { "attention f16" } else { "attention" });
            let t = |n: usize, cols: usize, data: &[f32]| b.tensor(n, cols, data).map_err(err);
            let (qt, kt, vt) = (t(n, shape.q_dim(), &q)?, t(n, shape.kv_dim(), &k)?, t(n, shape.kv_dim(), &v)?);
            let before = gpu.stats().dispatches;
            let got = b.attention(&mut gc, 1, pos, &qt, &kt, &vt, shape).map_err(err)?;
            count = gpu.stats().dispatches - before;
            let got = b.to_vec_async(&got).await.map_err(err)?;
            report.note(&name, within(format!("{name} {shape:?} pos {pos} n {n} vs f64"), rel_err(&got, &want)?, TOL)?);
            report.note(&format!("{name} vs cpu"), within(format!("{name} {shape:?} pos {pos} n {n} vs the CPU backend"), rel_err(&got, &f64s(&cpu_out.data))?, 2e-3)?);
        }
        dispatches.push(count);
        pos += n;
    }
    gpu.set_tuning(auto).map_err(err)?;
    Ok(dispatches)
}

/// The greedy choice on the GPU (argmax + log-sum-exp) against `sample`'s, on the last row.
pub async fn argmaxes(b: &GpuBackend, report: &mut Report) -> Check {
    let mut rng = Rng(800);
    // One slice of 4096 values per workgroup: ties and maxima in different slices.
    for (rows, cols) in [(1, 49152), (1, 151_936), (2, 4097), (3, 1001), (2, 7)] {
        let mut x = rng.vec(rows * cols, 5.0);
        let last = &mut x[(rows - 1) * cols..];
        // A tie for the maximum (the first one wins), and non-finite values to skip.
        let i = (rng.next() % cols as u64) as usize;
        last[i] = 9.0;
        last[cols - 1] = 9.0;
        last[0] = f32::NAN;
        if cols > 3 {
            last[1] = f32::INFINITY;
        }
        let row = &x[(rows - 1) * cols..];
        let want = sample::argmax(row).ok_or("no finite logit")?;
        let t = b.tensor(rows, cols, &x).map_err(err)?;
        let got = b.greedy_async(&b.last_row(&t).map_err(err)?).await.map_err(err)?.ok_or("greedy: none")?;
        let logprob = sample::log_softmax_at(row, want);
        if got.id as usize != want {
            return Err(format!("greedy ({rows}, {cols}): {} vs {want}", got.id));
        }
        let e = (got.logprob - logprob).abs() as f64 / (logprob.abs() as f64).max(1.0);
        report.note("argmax", within(format!("greedy ({rows}, {cols}) log-probability {} vs {logprob}", got.logprob), e, TOL)?);
    }
    let none = b.tensor(1, 3, &[f32::NAN; 3]).map_err(err)?;
    if b.greedy_async(&none).await.map_err(err)?.is_some() {
        return Err("greedy of a row without a finite value".into());
    }
    Ok(())
}

/// Row lengths for the top-k: within one 1024-value chunk, just past one, not multiples of the
/// workgroup, and the vocabularies of SmolLM2 (49152) and Qwen2.5 (151936).
pub const TOP_K_LENS: [usize; 6] = [7, 300, 1025, 4099, 49152, 151936];

/// The GPU's top-k of the last row of a 2-row tensor against `sample::top_k_finite`: the same
/// ids and logits, in the same order, ties included (a tie for the maximum, and one across the
/// k-th place), the same finite count, the sums within [`TOL`]. Then sampling: the token the
/// sampler draws from the GPU's candidates equals the CPU sampler's draw from the whole row
/// for the same seed, with the log-probability within [`TOL`]; with top-p alone it does unless
/// the nucleus is not within the candidates (`None`: the caller reads the row back).
pub async fn top_ks(b: &GpuBackend, report: &mut Report) -> Check {
    let mut rng = Rng(1400);
    let mut nucleus_draws = 0;
    for len in TOP_K_LENS {
        for (k, temp) in [(1, 0.7), (5, 1.0), (40, 0.8), (64, 0.2)] {
            // A peaked row, as a language model's: a few logits well above the rest.
            let mut x = rng.vec(len, 6.0);
            for _ in 0..12 {
                let j = (rng.next() % len as u64) as usize;
                x[j] += 10.0 + rng.unit();
            }
            let i = (rng.next() % len as u64) as usize;
            x[i] = 7.0;
            x[len - 1] = 7.0;
            if len > 3 {
                x[0] = f32::NAN;
                x[1] = f32::NEG_INFINITY;
                x[2] = f32::INFINITY;
            }
            // Ties straddling the k-th place.
            let kth = sample::top_k_finite(&x, k, 1.0).tokens.last().map_or(0.0, |t| t.1);
            for _ in 0..3 {
                let j = (rng.next() % len as u64) as usize;
                if x[j].is_finite() {
                    x[j] = kth;
                }
            }
            let other = rng.vec(len, 3.0);
            let t = b.tensor(2, len, &[other, x.clone()].concat()).map_err(err)?;
            let got = b.top_k_async(&t, k, temp).await.map_err(err)?;
            let want = sample::top_k_finite(&x, k, temp);
            let what = format!("top-k {k} of {len} at temperature {temp}");
            if got.tokens != want.tokens || got.finite != want.finite {
                return Err(format!("{what}: {:?} ({} finite) vs {:?} ({} finite)", &got.tokens[..got.tokens.len().min(8)], got.finite, &want.tokens[..want.tokens.len().min(8)], want.finite));
            }
            let e = ((got.sum - want.sum) / want.sum).abs().max(((got.sum_t - want.sum_t) / want.sum_t).abs());
            report.note("top_k", within(format!("{what}: sums {} {} vs {} {}", got.sum, got.sum_t, want.sum, want.sum_t), e, TOL)?);
            // Top-p alone samples from the most candidates a backend selects.
            let most = b.top_k_async(&t, sample::MAX_TOP_K, temp).await.map_err(err)?;
            for (top_k, top_p) in [(k, 1.0), (k, 0.9), (0, 0.95)] {
                for seed in 0..8 {
                    let cfg = SamplerConfig { temperature: temp, top_k, top_p, seed };
                    let mut gpu_side = Sampler::new(cfg).map_err(err)?;
                    let Some(g) = gpu_side.sample_top(if top_k > 0 { &got } else { &most }).map_err(err)? else {
                        if top_k > 0 {
                            return Err(format!("{what}: no draw from the candidates of a top-k"));
                        }
                        continue;
                    };
                    nucleus_draws += (top_k == 0) as usize;
                    let c = Sampler::new(cfg).map_err(err)?.sample(&x).map_err(err)?;
                    if g.id != c.id {
                        return Err(format!("{what}: {cfg:?} drew {} from the GPU's candidates, the CPU {}", g.id, c.id));
                    }
                    let e = (g.logprob - c.logprob).abs() as f64 / (c.logprob.abs() as f64).max(1.0);
                    report.note("top_k sampled", within(format!("{what}: {cfg:?} log-probability {} vs {}", g.logprob, c.logprob), e, TOL)?);
                }
            }
        }
    }
    if nucleus_draws == 0 {
        return Err("top-p alone never drew from the GPU's candidates".into());
    }
    let none = b.tensor(1, 5, &[f32::NAN, f32::INFINITY, f32::NAN, f32::NEG_INFINITY, f32::NAN]).map_err(err)?;
    let got = b.top_k_async(&none, 3, 1.0).await.map_err(err)?;
    if !got.tokens.is_empty() || got.finite != 0 {
        return Err(format!("top-k of a row without a finite value: {got:?}"));
    }
    Ok(())
}

/// Every matvec variant (`Tuning`: rows per 32 lanes, lane sums in workgroup memory or in
/// subgroups where the adapter has them, x in f32 or in 8 bits, a quarter or a whole block per
/// lane), each on row counts around a workgroup's rows with the last group partly empty. With
/// x in f32: plain products against the f64 reference, the fused GLU and SwiGLU-input products
/// against the unfused ones. With x in 8 bits (matvec_q8, rows of 1 to 256 blocks, more than
/// 32 for the wide variant's loop): against the CPU backend, which quantizes x the same way
/// (ggml's Q8_0 / Q8_1); the f32 sums run in another order, and amax / 127 is not correctly
/// rounded on a GPU (WGSL allows 2.5 ULP for a division), so a value next to a rounding
/// boundary may quantize one step apart and Q4_1's d · Σq round to the next f16: up to 1.4e-3
/// on an H100 (Q4_1, whose minimum term can be large next to a row's sum), 3e-7 on lavapipe.
/// The same with x handed over in 8 bits by the norm before the product (`add_rms_norm_before`,
/// all rows and the last row of them), against the CPU backend on the norm's output.
/// Sets the backend's tuning back afterwards.
pub async fn matvec_variants(b: &GpuBackend, report: &mut Report) -> Check {
    let gpu = b.context();
    let auto = gpu.tuning();
    let mut rng = Rng(5000);
    for sg in [None].into_iter().chain(auto.subgroup.map(Some)) {
        for per in [1u32, 2, 4] {
            let r = per as usize;
            gpu.set_tuning(Tuning { subgroup: sg, matvec_rows: Some(per), matvec_q8: Some(false), ..auto }).map_err(err)?;
            for ty in FORMATS {
                let k = match ty.block_size() {
                    256 => 512,
                    1 => 37,
                    _ => 96,
                };
                for (rows, n) in [(1, 1), (7, 2), (8 * r + 3, 1), (33, 4), (70, 3)] {
                    report.note("matvec variants", matmul(b, rng.next(), ty, rows, k, n).await?);
                }
                for (f, n) in [(13, 1), (4 * r + 1, 3)] {
                    let what = format!("{ty:?} ({f}, {k}) n {n}, {per} rows, subgroups {sg:?}");
                    let (gb, ub) = (random_weights(&mut rng, ty, f, k), random_weights(&mut rng, ty, f, k));
                    let stacked = b.weight("gate+up", ty, 2 * f, k, &[gb.clone(), ub.clone()].concat()).map_err(err)?;
                    let (gate, up) = (b.weight("gate", ty, f, k, &gb).map_err(err)?, b.weight("up", ty, f, k, &ub).map_err(err)?);
                    let h = b.tensor(n, k, &rng.vec(n * k, 2.0)).map_err(err)?;
                    let got = b.to_vec_async(&b.glu(&h, &stacked).map_err(err)?).await.map_err(err)?;
                    let (gh, uh) = (b.matmul(&h, &gate).map_err(err)?, b.matmul(&h, &up).map_err(err)?);
                    let want = b.to_vec_async(&b.swiglu(&gh, &uh).map_err(err)?).await.map_err(err)?;
                    report.note("matvec variants, glu", within(format!("glu {what}"), rel_err(&got, &f64s(&want))?, TOL)?);
                    let u = b.tensor(n, k, &rng.vec(n * k, 2.0)).map_err(err)?;
                    let got = b.to_vec_async(&b.swiglu_matmul(&h, &u, &gate).map_err(err)?).await.map_err(err)?;
                    let want = b.to_vec_async(&b.matmul(&b.swiglu(&h, &u).map_err(err)?, &gate).map_err(err)?).await.map_err(err)?;
                    report.note("matvec variants, swiglu input", within(format!("swiglu_matmul {what}"), rel_err(&got, &f64s(&want))?, TOL)?);
                }
            }
            for (wide, ty) in [false, true].into_iter().flat_map(|w| [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0].map(|t| (w, t))) {
                gpu.set_tuning(Tuning { subgroup: sg, matvec_rows: Some(per), matvec_q8: Some(true), matvec_wide: Some(wide), ..auto }).map_err(err)?;
                for (rows, k, n) in [(37, 32, 1), (8 * r + 3, 96, 1), (70, 576, 3), (33, 896, 4), (300, 96, 1), (9, 1312, 2), (5, ops::MATVEC_Q8_MAX_K, 2)] {
                    let wb = random_weights(&mut rng, ty, rows, k);
                    let scale = 10f32.powf(rng.unit());
                    let x = rng.vec(n * k, scale);
                    let c = CpuBackend::new(Arc::new(ModelBytes::Owned(wb.clone())), 1);
                    let cw = c.weight_at(ty, rows, k, 0).map_err(err)?;
                    let want = c.matmul(&CpuTensor::new(n, k, x.clone()).map_err(err)?, &cw).map_err(err)?.data;
                    let w = b.weight("w", ty, rows, k, &wb).map_err(err)?;
                    let out = b.matmul(&b.tensor(n, k, &x).map_err(err)?, &w).map_err(err)?;
                    let what = format!("matvec_q8 {ty:?} ({rows}, {k}) n {n}, {per} rows, subgroups {sg:?}, wide {wide}");
                    report.note("matvec 8-bit x vs CPU", within(what.clone(), rel_err(&b.to_vec_async(&out).await.map_err(err)?, &f64s(&want))?, 5e-3)?);
                    // x handed over in 8 bits by the norm before the product, for all n rows and
                    // for the last (as a prompt's logits take it): against the CPU backend on the
                    // norm's output as the GPU wrote it.
                    let g = b.weight("norm", GgmlType::F32, 1, k, &f32_bytes(&rng.vec(k, 1.5))).map_err(err)?;
                    let mut xt = b.tensor(n, k, &x).map_err(err)?;
                    let h = b.add_rms_norm_before(&mut xt, &b.tensor(n, k, &rng.vec(n * k, scale)).map_err(err)?, &g, 1e-5, &w).map_err(err)?;
                    let last = b.last_row(&h).map_err(err)?;
                    for (h, n) in [(&h, n), (&last, 1)] {
                        if !h.has_x8() {
                            return Err(format!("{what}: the norm before it did not write x in 8 bits"));
                        }
                        let hv = b.to_vec_async(h).await.map_err(err)?;
                        let want = c.matmul(&CpuTensor::new(n, k, hv).map_err(err)?, &cw).map_err(err)?.data;
                        let got = b.to_vec_async(&b.matmul(h, &w).map_err(err)?).await.map_err(err)?;
                        report.note("matvec 8-bit x given vs CPU", within(format!("{what}, x given, {n} rows"), rel_err(&got, &f64s(&want))?, 5e-3)?);
                    }
                }
            }
        }
    }
    gpu.set_tuning(auto).map_err(err)?;
    Ok(())
}

/// Every check above, in order.
pub async fn all(b: &GpuBackend) -> Result<Report, String> {
    let mut report = Report::default();
    matmuls(b, &mut report).await?;
    embeds(b, &mut report).await?;
    rms_norms(b, &mut report).await?;
    ropes(b, &mut report).await?;
    swiglus_and_adds(b, &mut report).await?;
    attentions(b, &mut report).await?;
    argmaxes(b, &mut report).await?;
    top_ks(b, &mut report).await?;
    matvec_variants(b, &mut report).await?;
    Ok(report)
}
