//! Portable kernels: the fallback where no SIMD path exists, and the reference the SIMD kernels
//! are tested against. Same algebra as the SIMD kernels (see mod.rs), one (row, token) at a time.

use super::acts::ActsData;
use super::{Format, Job};
use crate::quant::{f16_at, q5_at, q6_at, scale_min_k4};

pub(super) fn matmul(format: Format, job: &Job, acts: &ActsData, out: &mut [f32]) {
    let rows = job.w.chunks_exact(job.row_bytes).take(job.rows);
    match acts {
        ActsData::F32(x) => {
            for (r, wrow) in rows.enumerate() {
                for (t, xrow) in x.chunks_exact(job.k).enumerate() {
                    if let Some(o) = out.get_mut(t * job.out_stride + r) {
                        *o = dot_float(format, wrow, xrow);
                    }
                }
            }
        }
        ActsData::Q8 { qs, d, s, .. } => {
            let n = job.n;
            for (r, wrow) in rows.enumerate() {
                for (t, xq) in qs.chunks_exact(job.k).enumerate() {
                    // This token's scales: every n-th value from t.
                    let dx = d.iter().skip(t).step_by(n);
                    let sx = s.iter().skip(t).step_by(n);
                    if let Some(o) = out.get_mut(t * job.out_stride + r) {
                        *o = dot_q8(format, wrow, xq, dx, sx);
                    }
                }
            }
        }
        ActsData::Q8K { qs, d, bsums } => {
            let n = job.n;
            for (r, wrow) in rows.enumerate() {
                for (t, (xq, sums)) in qs.chunks_exact(job.k).zip(bsums.chunks_exact(job.k / 16)).enumerate() {
                    let dx = d.iter().skip(t).step_by(n);
                    if let Some(o) = out.get_mut(t * job.out_stride + r) {
                        *o = dot_q8k(format, wrow, xq, sums, dx);
                    }
                }
            }
        }
    }
}

/// dot(W row of K-quant super-blocks, x row of Q8_K blocks with scales `dx` and per-16 sums).
fn dot_q8k<'a>(format: Format, w: &[u8], xq: &[i8], bsums: &[i16], dx: impl Iterator<Item = &'a f32>) -> f32 {
    let mut acc = 0f32;
    let bytes = format.ggml().type_size();
    for (((wb, xb), sums), &dx) in w.chunks_exact(bytes).zip(xq.chunks_exact(256)).zip(bsums.chunks_exact(16)).zip(dx) {
        let (isum, msum) = k_sums(format, wb, xb, sums);
        let (d, dmin) = k_scales(format, wb);
        acc += d * dx * isum as f32;
        acc += dmin * dx * -msum as f32;
    }
    acc
}

/// A K-quant super-block's `(d, dmin)` (f16 in the block; Q6_K has no dmin: 0).
pub(super) fn k_scales(format: Format, wb: &[u8]) -> (f32, f32) {
    match format {
        Format::Q6K => (f16_at(wb, 208), 0.0),
        _ => (f16_at(wb, 0), f16_at(wb, 2)),
    }
}

/// One super-block's exact integer sums against Q8_K quants `a` (256) and their per-16 sums:
/// `(Σ_sub sc·Σ q·a, Σ_sub m·Σ a)` for Q4_K/Q5_K, `(Σ_16 sc·Σ (q - 32)·a, 0)` for Q6_K.
pub(super) fn k_sums(format: Format, wb: &[u8], a: &[i8], bsums: &[i16]) -> (i32, i32) {
    if format == Format::Q6K {
        let (ql, qh, scales) = (&wb[..128], &wb[128..192], &wb[192..208]);
        let isum = (0..16)
            .map(|g| {
                let dot: i32 = (16 * g..16 * g + 16).map(|i| q6_at(ql, qh, i) * a[i] as i32).sum();
                (scales[g] as i8) as i32 * dot
            })
            .sum();
        return (isum, 0);
    }
    let (mut isum, mut msum) = (0, 0);
    for s in 0..8 {
        let (sc, m) = scale_min_k4(&wb[4..16], s);
        let qs = &wb[if format == Format::Q5K { 48 } else { 16 } + 32 * (s / 2)..];
        let dot: i32 = (0..32)
            .map(|l| {
                let mut q = (qs[l] >> (4 * (s % 2))) & 0x0F;
                if format == Format::Q5K {
                    q |= ((wb[16 + l] >> s) & 1) << 4;
                }
                q as i32 * a[32 * s + l] as i32
            })
            .sum();
        isum += sc as i32 * dot;
        msum += m as i32 * (bsums[2 * s] as i32 + bsums[2 * s + 1] as i32);
    }
    (isum, msum)
}

/// dot(W row in f32/f16/bf16, x row).
fn dot_float(format: Format, w: &[u8], x: &[f32]) -> f32 {
    match format {
        Format::F32 => w.chunks_exact(4).zip(x).map(|(b, &x)| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * x).sum(),
        Format::F16 => w.chunks_exact(2).zip(x).map(|(b, &x)| f16_at(b, 0) * x).sum(),
        _ => w
            .chunks_exact(2)
            .zip(x)
            .map(|(b, &x)| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16) * x)
            .sum(),
    }
}

/// dot(W row of Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 blocks, x row of Q8 blocks with scales `dx` and sums `sx`).
fn dot_q8<'a>(
    format: Format,
    w: &[u8],
    xq: &[i8],
    dx: impl Iterator<Item = &'a f32>,
    sx: impl Iterator<Item = &'a f32>,
) -> f32 {
    let mut acc = 0f32;
    let mut acc_m = 0f32;
    let bytes = format.ggml().type_size();
    for (((wb, xb), &dx), &sx) in w.chunks_exact(bytes).zip(xq.chunks_exact(32)).zip(dx).zip(sx) {
        let dw = f16_at(wb, 0);
        let (isum, m) = match format {
            Format::Q8_0 => (wb[2..].iter().zip(xb).map(|(&q, &a)| (q as i8) as i32 * a as i32).sum(), 0.0),
            Format::Q4_0 => (q4_dot(&wb[2..], xb), -8.0 * dw),
            Format::Q5_0 => (q5_dot(&wb[2..], xb), -16.0 * dw),
            Format::Q5_1 => (q5_dot(&wb[4..], xb), f16_at(wb, 2)),
            _ => (q4_dot(&wb[4..], xb), f16_at(wb, 2)),
        };
        acc += dw * dx * isum as f32;
        acc_m += m * sx;
    }
    acc + acc_m
}

/// Σ nibble_j · a_j over one block: byte j holds element j (low nibble) and j + 16 (high).
fn q4_dot(qs: &[u8], a: &[i8]) -> i32 {
    let (lo, hi) = a.split_at(16);
    qs.iter().zip(lo.iter().zip(hi)).map(|(&q, (&l, &h))| (q & 0x0F) as i32 * l as i32 + (q >> 4) as i32 * h as i32).sum()
}

/// Σ q_j · a_j over one Q5 block: `b` starts at the u32 `qh`, then the nibbles as in Q4.
fn q5_dot(b: &[u8], a: &[i8]) -> i32 {
    let qh = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    a.iter().enumerate().map(|(j, &x)| q5_at(&b[4..], qh, j) as i32 * x as i32).sum()
}
