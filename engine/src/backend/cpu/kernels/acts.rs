//! Activations prepared for a matmul: kept in f32 for float weights, or quantized to 8-bit blocks
//! exactly as ggml's x86 `quantize_row_q8_0` / `quantize_row_q8_1` do, so nib's logits stay close
//! to llama.cpp's.
//!
//! Quantization of a block of 32 values: `amax = max |x|`, `d = amax / 127`,
//! `q = round_ties_even(x · (127 / amax))` (0 when amax = 0); the stored scale is `d` rounded to
//! f16 (ggml keeps it as f16). ggml's scalar reference divides by `d` and rounds half away from
//! zero instead; its AVX2 path (the one llama.cpp runs here) is the one copied, and the two differ
//! only on exact ties and last-bit differences of `x / d`.
//!
//! K-quant weights take Q8_K activations (ggml's `quantize_row_q8_K_ref`, which x86 runs too):
//! blocks of 256, `max` = the first value of largest magnitude (sign kept), `iscale = -127 / max`,
//! `q = min(127, round_ties_even(iscale · x))`, scale `d = 1 / iscale` kept in f32, and the sum
//! of each 16 quants (`bsums`), which the kernels use for the K-quants' min and offset terms.

use super::{Format, Isa};
use crate::error::{Error, Result};

/// Activations x (n, k) prepared once per matmul for a weight type, as ggml does: quantized to
/// Q8_1 blocks for Q4_1 weights, Q8_0 blocks for Q4_0/Q8_0 weights, kept f32 for F32/F16/BF16.
pub struct Acts {
    pub(super) n: usize,
    pub(super) k: usize,
    pub(super) data: ActsData,
}

/// Which ggml block the quantized activations stand for; they differ only in `s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Q8Kind {
    /// `s = f16(d) · Σq`, exact in f32 (used by the Q4_0 kernel's `-8·d_w·s` term).
    Q8_0,
    /// `s = f16(d_unrounded · Σq)`, rounded to f16 like ggml's `block_q8_1.s`.
    Q8_1,
}

pub(super) enum ActsData {
    /// x itself, (n, k).
    F32(Vec<f32>),
    /// `qs` (n, k): the quants, token after token. `d` and `s` are (k / 32, n): block-major, so
    /// that the prefill kernel loads the scales of consecutive tokens with one load.
    Q8 { kind: Q8Kind, qs: Vec<i8>, d: Vec<f32>, s: Vec<f32> },
    /// Q8_K: `qs` (n, k); `d` (k / 256, n), block-major as above; `bsums` (n, k / 16), the sum
    /// of each 16 quants, token after token.
    Q8K { qs: Vec<i8>, d: Vec<f32>, bsums: Vec<i16> },
}

impl Acts {
    pub(super) fn new(isa: Isa, format: Format, x: &[f32], n: usize, k: usize) -> Result<Acts> {
        if n.checked_mul(k) != Some(x.len()) {
            return Err(Error::InvalidArgument(format!("prepare: x has {} values, not ({n}, {k})", x.len())));
        }
        let kind = match format {
            Format::F32 | Format::F16 | Format::BF16 => {
                return Ok(Acts { n, k, data: ActsData::F32(x.to_vec()) });
            }
            Format::Q4_1 | Format::Q5_1 => Q8Kind::Q8_1,
            Format::Q4_0 | Format::Q5_0 | Format::Q8_0 => Q8Kind::Q8_0,
            Format::Q4K | Format::Q5K | Format::Q6K => return quantize_q8_k(x, n, k),
        };
        if !k.is_multiple_of(32) {
            return Err(Error::InvalidArgument(format!("prepare: k = {k} is not a multiple of 32")));
        }
        let nb = k / 32;
        let mut qs = vec![0i8; x.len()];
        // Per block, token-major: the unrounded d and Σq.
        let mut d_raw = vec![0f32; n * nb];
        let mut sums = vec![0i32; n * nb];
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `isa` was checked available by the caller; the slices have matching lengths.
            Isa::Avx2 => unsafe { super::avx2::quantize_q8(x, &mut qs, &mut d_raw, &mut sums) },
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => super::simd128::quantize_q8(x, &mut qs, &mut d_raw, &mut sums),
            _ => quantize_q8_scalar(x, &mut qs, &mut d_raw, &mut sums),
        }
        let mut d = vec![0f32; n * nb];
        let mut s = vec![0f32; n * nb];
        for (i, (&dr, &sum)) in d_raw.iter().zip(&sums).enumerate() {
            let (t, b) = (i / nb, i % nb);
            let d16 = round_f16(dr);
            d[b * n + t] = d16;
            s[b * n + t] = match kind {
                Q8Kind::Q8_0 => d16 * sum as f32,
                Q8Kind::Q8_1 => round_f16(dr * sum as f32),
            };
        }
        Ok(Acts { n, k, data: ActsData::Q8 { kind, qs, d, s } })
    }

    /// Tokens (rows of x).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Values per token.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The 8-bit form, for tests and diagnostics: quants (n, k), scales `d` (k / B, n) and
    /// `s = d·Σq` (k / B, n; empty for Q8_K), B = [`Acts::quant_block`]; `None` when the
    /// activations are kept in f32.
    pub fn quants(&self) -> Option<(&[i8], &[f32], &[f32])> {
        match &self.data {
            ActsData::Q8 { qs, d, s, .. } => Some((qs, d, s)),
            ActsData::Q8K { qs, d, .. } => Some((qs, d, &[])),
            ActsData::F32(_) => None,
        }
    }

    /// Values per activation scale: 32 (Q8_0/Q8_1), 256 (Q8_K), 1 (f32).
    pub fn quant_block(&self) -> usize {
        match &self.data {
            ActsData::Q8 { .. } => 32,
            ActsData::Q8K { .. } => 256,
            ActsData::F32(_) => 1,
        }
    }
}

/// `v` rounded to the nearest f16 (ties to even, as F16C does), back in f32.
fn round_f16(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

/// Scalar twin of the SIMD quantizers: `x` (n·nb blocks of 32) into `qs`, plus each block's
/// unrounded `d` and `Σq`.
pub(super) fn quantize_q8_scalar(x: &[f32], qs: &mut [i8], d: &mut [f32], sums: &mut [i32]) {
    let blocks = x.chunks_exact(32).zip(qs.chunks_exact_mut(32));
    for ((xb, qb), (d, sum)) in blocks.zip(d.iter_mut().zip(sums.iter_mut())) {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        *d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        *sum = 0;
        for (q, &v) in qb.iter_mut().zip(xb) {
            // |v · id| ≤ 127 for finite input; `as` saturates otherwise.
            *q = (v * id).round_ties_even() as i8;
            *sum += *q as i32;
        }
    }
}

/// x (n, k) into Q8_K blocks, as ggml's `quantize_row_q8_K_ref` (see the module note). The same
/// scalar code serves every instruction set: it is linear in n·k, the matmul is not.
fn quantize_q8_k(x: &[f32], n: usize, k: usize) -> Result<Acts> {
    if !k.is_multiple_of(256) {
        return Err(Error::InvalidArgument(format!("prepare: k = {k} is not a multiple of 256")));
    }
    let nb = k / 256;
    let mut qs = vec![0i8; x.len()];
    let mut d = vec![0f32; n * nb];
    let mut bsums = vec![0i16; x.len() / 16];
    let blocks = x.chunks_exact(256).zip(qs.chunks_exact_mut(256)).zip(bsums.chunks_exact_mut(16));
    for (i, ((xb, qb), sums)) in blocks.enumerate() {
        let (t, b) = (i / nb, i % nb);
        // The first value of largest magnitude, with its sign (ggml's `if (ax > amax)`).
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in xb {
            if v.abs() > amax {
                (amax, max) = (v.abs(), v);
            }
        }
        if amax == 0.0 {
            continue; // d = 0, quants and sums 0
        }
        let iscale = -127.0 / max;
        for (q, &v) in qb.iter_mut().zip(xb) {
            // |iscale · v| ≤ 127 up to rounding; `as` saturates on anything else.
            *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
        }
        for (sum, q16) in sums.iter_mut().zip(qb.chunks_exact(16)) {
            *sum = q16.iter().map(|&q| q as i16).sum();
        }
        d[b * n + t] = 1.0 / iscale;
    }
    Ok(Acts { n, k, data: ActsData::Q8K { qs, d, bsums } })
}
