//! The arithmetic of [`Precision::Reference`](super::Precision::Reference): what the GPU backend
//! computes, without its rounding, so that the GPU can be tested against the CPU like with like.
//!
//! The default CPU path does llama.cpp's arithmetic: activations quantized to 8 bits inside the
//! quantized matmuls and attention probabilities rounded to f16. That moves logits by tenths
//! (as much as llama.cpp's own batch-1 vs batch-512 spread), which would hide any GPU error below
//! it. Here instead:
//! - matmul: each weight row dequantized once ([`quant::dequantize`], exact for every block
//!   format but Q4_1, whose `nibble·d + m` is rounded once to f32), times the **f32**
//!   activations, summed in f64 and rounded once to f32 (the products of two f32 are exact in
//!   f64, so the result is within an ulp of the exact dot product whatever the order of the sum);
//! - attention: q as it is (f32, as the GPU's attention.wgsl takes it), scores, softmax and the
//!   weighted sum of values in f64 over the same f16 KV cache, rounded once to f32;
//!   probabilities never rounded.
//!
//! Every output is computed on its own with the same operations, so this path is batch-invariant
//! too. It is several times slower than the default kernels: a test reference, not a product.

use std::ops::Range;


use super::attention::Task;
use super::kernels::QMatrix;
use crate::error::{Error, Result};
use crate::quant;

/// `Σ a[i]·b[i]` in f64 (four partial sums, so the loop is not one long dependency chain).
fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..4 {
            acc[i] += x[i] as f64 * y[i] as f64;
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(&x, &y)| x as f64 * y as f64).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// out (n, rows.len()), row-major: `out[t * rows.len() + (r - rows.start)] = W[r, :] · x[t, :]`,
/// for x (n, w.cols) in f32; the signature of [`super::kernels::matmul`] without the prepared
/// activations.
pub fn matmul(w: &QMatrix, x: &[f32], rows: Range<usize>, out: &mut [f32]) -> Result<()> {
    let bad = |what: String| Error::InvalidArgument(format!("reference matmul: {what}"));
    let k = w.cols;
    if k == 0 || !x.len().is_multiple_of(k) {
        return Err(bad(format!("x has {} values, not rows of {k}", x.len())));
    }
    let n = x.len() / k;
    let rb = w.ty.bytes_for(k as u64).map(|b| b as usize).ok_or_else(|| bad(format!("rows of {k} are not whole blocks")))?;
    if rows.start > rows.end || rows.end > w.rows || rows.end.checked_mul(rb).is_none_or(|e| e > w.data.len()) {
        return Err(bad(format!("rows {rows:?} outside the ({}, {k}) weight", w.rows)));
    }
    let width = rows.len();
    if out.len() != n * width {
        return Err(bad(format!("out has {} values, needs ({n}, {width})", out.len())));
    }
    let mut wrow = vec![0f32; k];
    for (i, r) in rows.enumerate() {
        quant::dequantize(w.ty, &w.data[r * rb..(r + 1) * rb], &mut wrow)?;
        for (t, xt) in x.chunks_exact(k).enumerate() {
            out[t * width + i] = dot_f64(&wrow, xt) as f32;
        }
    }
    Ok(())
}

/// [`super::attention::attend`] in f64, with the probabilities kept unrounded: for each
/// (token, query head) of the task, softmax(q·kᵀ / √head_dim) · v over positions `0..=pos + t`
/// (within the task's window).
pub fn attend<'o>(task: &Task, mut write: impl FnMut(usize, usize) -> Option<&'o mut [f32]>) -> Option<()> {
    let (hd, s) = (task.shape.head_dim, task.shape);
    let (kv_dim, max_ctx) = (s.kv_dim(), s.max_ctx);
    let kt = task.layer.keys().get(task.g * hd * max_ctx..(task.g + 1) * hd * max_ctx)?;
    let v = task.layer.values();
    let scale = 1.0 / (hd as f64).sqrt();
    let mut q = vec![0f64; hd];
    let mut p = Vec::new();
    let mut o = vec![0f64; hd];
    for t in task.tokens.clone() {
        let len = task.pos + t + 1;
        if len > max_ctx {
            return None;
        }
        for h in task.heads.clone() {
            let qs = task.q.get(t * task.q_dim + h * hd..t * task.q_dim + (h + 1) * hd)?;
            q.iter_mut().zip(qs).for_each(|(d, &x)| *d = x as f64);
            // Scores, key-major over the transposed keys: p[j] += q[d]·k[d][j].
            p.clear();
            p.resize(len, 0f64);
            for (d, &qd) in q.iter().enumerate() {
                for (pj, kj) in p.iter_mut().zip(&kt[d * max_ctx..d * max_ctx + len]) {
                    *pj += qd * kj.to_f64();
                }
            }
            // Outside a sliding window a position weighs nothing.
            let first = task.first_visible(len);
            let m = p[first..].iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x * scale));
            let mut z = 0f64;
            p[..first].fill(0.0);
            for x in p[first..].iter_mut() {
                *x = (*x * scale - m).exp();
                z += *x;
            }
            o.fill(0.0);
            for (j, &pj) in p.iter().enumerate() {
                let row = v.get(j * kv_dim + task.g * hd..j * kv_dim + (task.g + 1) * hd)?;
                o.iter_mut().zip(row).for_each(|(o, x)| *o += pj * x.to_f64());
            }
            let out = write(t, h)?;
            if out.len() != hd {
                return None;
            }
            out.iter_mut().zip(&o).for_each(|(y, x)| *y = (x / z) as f32);
        }
    }
    Some(())
}
