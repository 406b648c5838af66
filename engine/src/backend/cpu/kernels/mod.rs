//! CPU matmul kernels over GGML blocks, read in place from the model file.
//!
//! `out = x · Wᵀ` for a weight matrix W (rows, cols) stored as GGML blocks and activations x
//! (n, k = cols) in f32. As in ggml, the activations are prepared once per matmul ([`prepare`]):
//! quantized to 8-bit blocks for quantized weights (Q8_1 for Q4_1, Q8_0 for Q4_0 and Q8_0), so the
//! inner loop is an integer dot product per 32-element block, scaled by `d_w · d_x` in f32.
//!
//! Every kernel computes, per block `b` of 32 values,
//! `d_w[b]·d_x[b]·Σ q_w·q_x  +  m_w[b]·s_x[b]`, with `s_x = d_x·Σ q_x`.
//! Q4_1 stores `m_w` in the block; Q4_0 has nibbles `q - 8`, which is the same sum with
//! unsigned nibbles and `m_w = -8·d_w` (saves the sign fix-ups ggml does per block); Q8_0 has
//! no `m` term. Q5_0 and Q5_1 are Q4_0 and Q4_1 with a fifth bit per quant (`qh`): unsigned
//! quants 0..32, `m_w = -16·d_w` for Q5_0 (Q8_0 activations), stored `m_w` for Q5_1 (Q8_1).
//!
//! K-quant weights (Q4_K, Q5_K, Q6_K: 256-value super-blocks of 32- or 16-value sub-blocks with
//! their own 6- or 8-bit scales) take Q8_K activations (256 values, f32 `d`, per-16 sums), as in
//! ggml. Per super-block the kernels compute two exact integers, `Σ_sub sc·Σ q_w·q_x` (Q6_K with
//! its `q - 32` folded in through the per-16 sums) and, for Q4_K/Q5_K, `Σ_sub m·Σ q_x`; then
//! `acc += (d_w·d_x)·isum` and `acc += (dmin_w·d_x)·(-msum)`.
//!
//! Prefill (n > 1) runs a register-tiled kernel: each weight block, once unpacked, is used for
//! several tokens, and each activation block for several rows (see `avx2.rs`).
//!
//! Batch invariance: within one instruction set, every path (decode, the n > 1 tiles, remainder
//! rows and tokens) computes an output with the same f32 operations in the same order, so a
//! token's outputs are bit-identical whether it is evaluated alone, in a batch of any size or
//! position, or in any row range. Activations are re-quantized to 8 bits before every matmul,
//! so a last-bit difference could flip a rounding and grow through the layers; with this,
//! prefill and token-by-token decode give the same logits. Different instruction sets may
//! differ from each other (FMA or not, reduction order).
//!
//! Instruction sets: a scalar fallback (also the test reference), AVX2+FMA+F16C chosen at run time
//! on x86_64, and simd128 on wasm32 when compiled with `+simd128`.

mod acts;
mod scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;

use std::ops::Range;
use std::sync::OnceLock;

pub use acts::Acts;
use acts::{ActsData, Q8Kind};

use crate::error::{Error, Result};
use crate::quant::GgmlType;

/// A weight matrix (rows, cols) of GGML blocks, row after row, borrowed from the model file (zero-copy).
#[derive(Clone, Copy, Debug)]
pub struct QMatrix<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl<'a> QMatrix<'a> {
    /// Checks that `ty` has a kernel, that `cols` is a whole number of blocks and that `data`
    /// holds exactly `rows` rows of them.
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: &'a [u8]) -> Result<Self> {
        if kernel_format(ty).is_none() {
            return Err(Error::Unsupported(format!("matmul with {} weights", ty.name())));
        }
        let expected = row_bytes(ty, cols).and_then(|rb| rb.checked_mul(rows));
        if expected != Some(data.len()) {
            return Err(Error::InvalidArgument(format!(
                "QMatrix {} ({rows}, {cols}): {} bytes, expected {} (cols must be a multiple of {})",
                ty.name(),
                data.len(),
                expected.map_or("an overflow".into(), |e| e.to_string()),
                ty.block_size()
            )));
        }
        Ok(Self { ty, rows, cols, data })
    }

    /// Bytes per row; whole blocks, checked in `new`.
    fn row_bytes(&self) -> usize {
        self.cols / self.ty.block_size() * self.ty.type_size()
    }
}

/// Bytes in one row of `cols` values of type `ty`, if `cols` is a whole number of blocks.
fn row_bytes(ty: GgmlType, cols: usize) -> Option<usize> {
    let bs = ty.block_size();
    if !cols.is_multiple_of(bs) {
        return None;
    }
    (cols / bs).checked_mul(ty.type_size())
}

/// The weight formats the kernels handle, and the activation format each one needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

impl Format {
    fn ggml(self) -> GgmlType {
        match self {
            Format::F32 => GgmlType::F32,
            Format::F16 => GgmlType::F16,
            Format::BF16 => GgmlType::BF16,
            Format::Q4_0 => GgmlType::Q4_0,
            Format::Q4_1 => GgmlType::Q4_1,
            Format::Q5_0 => GgmlType::Q5_0,
            Format::Q5_1 => GgmlType::Q5_1,
            Format::Q8_0 => GgmlType::Q8_0,
            Format::Q4K => GgmlType::Q4K,
            Format::Q5K => GgmlType::Q5K,
            Format::Q6K => GgmlType::Q6K,
        }
    }
}

/// The quantized formats as const-generic tags of the SIMD kernels, so one tile body serves the
/// three 32-value formats and one the three K-quants.
#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
mod tags {
    use crate::quant::GgmlType;

    pub const Q4_0: u8 = 0;
    pub const Q4_1: u8 = 1;
    pub const Q8_0: u8 = 2;
    pub const Q4K: u8 = 3;
    pub const Q5K: u8 = 4;
    pub const Q6K: u8 = 5;
    pub const Q5_0: u8 = 6;
    pub const Q5_1: u8 = 7;

    /// Bytes per block of the format a tag names.
    pub const fn block_bytes(tag: u8) -> usize {
        match tag {
            Q4_0 => GgmlType::Q4_0.type_size(),
            Q4_1 => GgmlType::Q4_1.type_size(),
            Q4K => GgmlType::Q4K.type_size(),
            Q5K => GgmlType::Q5K.type_size(),
            Q6K => GgmlType::Q6K.type_size(),
            Q5_0 => GgmlType::Q5_0.type_size(),
            Q5_1 => GgmlType::Q5_1.type_size(),
            _ => GgmlType::Q8_0.type_size(),
        }
    }
}

fn kernel_format(ty: GgmlType) -> Option<Format> {
    Some(match ty {
        GgmlType::F32 => Format::F32,
        GgmlType::F16 => Format::F16,
        GgmlType::BF16 => Format::BF16,
        GgmlType::Q4_0 => Format::Q4_0,
        GgmlType::Q4_1 => Format::Q4_1,
        GgmlType::Q5_0 => Format::Q5_0,
        GgmlType::Q5_1 => Format::Q5_1,
        GgmlType::Q8_0 => Format::Q8_0,
        GgmlType::Q4K => Format::Q4K,
        GgmlType::Q5K => Format::Q5K,
        GgmlType::Q6K => Format::Q6K,
        _ => return None,
    })
}

/// An instruction set the kernels are written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust; the reference the SIMD kernels are tested against.
    Scalar,
    /// x86_64 with AVX2, FMA and F16C (checked at run time).
    Avx2,
    /// wasm32 built with `-C target-feature=+simd128`.
    Simd128,
}

impl Isa {
    /// The fastest instruction set this machine runs, detected once.
    pub fn best() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| {
            [Isa::Avx2, Isa::Simd128].into_iter().find(|isa| isa.available()).unwrap_or(Isa::Scalar)
        })
    }

    /// Whether this machine (and this build) can run kernels for `self`.
    pub fn available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
            }
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    fn check(self) -> Result<()> {
        if self.available() {
            Ok(())
        } else {
            Err(Error::Unsupported(format!("{self:?} kernels on this machine")))
        }
    }
}

/// Prepares activations x (n, k), row-major, for a matmul with weights of type `ty`.
pub fn prepare(ty: GgmlType, x: &[f32], n: usize, k: usize) -> Result<Acts> {
    prepare_with(Isa::best(), ty, x, n, k)
}

/// [`prepare`] with a chosen instruction set (tests compare them).
pub fn prepare_with(isa: Isa, ty: GgmlType, x: &[f32], n: usize, k: usize) -> Result<Acts> {
    isa.check()?;
    let format = kernel_format(ty).ok_or_else(|| Error::Unsupported(format!("matmul with {} weights", ty.name())))?;
    Acts::new(isa, format, x, n, k)
}

/// out (n, rows.len()), row-major: `out[t * rows.len() + (r - rows.start)] = dot(W[r, :], x[t, :])`.
/// Called from several threads at once with disjoint row ranges (the caller splits rows).
pub fn matmul(w: &QMatrix, acts: &Acts, rows: Range<usize>, out: &mut [f32]) -> Result<()> {
    matmul_with(Isa::best(), w, acts, rows, out)
}

/// [`matmul`] with a chosen instruction set (tests compare them).
pub fn matmul_with(isa: Isa, w: &QMatrix, acts: &Acts, rows: Range<usize>, out: &mut [f32]) -> Result<()> {
    let width = rows.len();
    matmul_strided_with(isa, w, acts, rows, out, width)
}

/// Like [`matmul`], but token `t`'s outputs start at `out[t * out_stride]`, so a thread can write
/// its columns of the whole (n, out_stride) output in place:
/// `out[t * out_stride + (r - rows.start)] = dot(W[r, :], x[t, :])`; other elements are untouched.
pub fn matmul_strided(w: &QMatrix, acts: &Acts, rows: Range<usize>, out: &mut [f32], out_stride: usize) -> Result<()> {
    matmul_strided_with(Isa::best(), w, acts, rows, out, out_stride)
}

/// [`matmul_strided`] with a chosen instruction set.
pub fn matmul_strided_with(
    isa: Isa,
    w: &QMatrix,
    acts: &Acts,
    rows: Range<usize>,
    out: &mut [f32],
    out_stride: usize,
) -> Result<()> {
    isa.check()?;
    let bad = |what: String| Err(Error::InvalidArgument(format!("matmul: {what}")));
    let format = kernel_format(w.ty).ok_or_else(|| Error::Unsupported(format!("matmul with {} weights", w.ty.name())))?;
    let rb = w.row_bytes();
    if row_bytes(w.ty, w.cols).and_then(|rb| rb.checked_mul(w.rows)) != Some(w.data.len()) {
        return bad(format!("weights hold {} bytes, not ({}, {}) {}", w.data.len(), w.rows, w.cols, w.ty.name()));
    }
    if acts.k != w.cols {
        return bad(format!("activations have k = {}, weights have {} columns", acts.k, w.cols));
    }
    if !acts.suits(format) {
        return bad(format!("activations were not prepared for {} weights", w.ty.name()));
    }
    if rows.start > rows.end || rows.end > w.rows {
        return bad(format!("rows {rows:?} outside 0..{}", w.rows));
    }
    let (n, width) = (acts.n, rows.len());
    if n == 0 || width == 0 {
        return Ok(());
    }
    let needed = (n - 1).checked_mul(out_stride).and_then(|v| v.checked_add(width));
    if out_stride < width || needed.is_none_or(|need| out.len() < need) {
        return bad(format!("out has {} values, stride {out_stride}; needs ({n}, {width})", out.len()));
    }
    // Validated: every row in `rows` lies in `w.data`, `out` holds (n - 1) * out_stride + width values.
    let wdata = &w.data[rows.start * rb..rows.end * rb];
    let job = Job { w: wdata, row_bytes: rb, rows: width, k: w.cols, n, out_stride };
    match (isa, &acts.data) {
        (Isa::Scalar, data) => scalar::matmul(format, &job, data, out),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa.check()` confirmed AVX2, FMA and F16C; `job` and `out` were validated above.
        (Isa::Avx2, data) => unsafe { avx2::matmul(format, &job, data, out) },
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        (Isa::Simd128, data) => simd128::matmul(format, &job, data, out),
        #[allow(unreachable_patterns)]
        _ => return Err(Error::Unsupported(format!("{isa:?} kernels in this build"))),
    }
    Ok(())
}

/// The 6-bit scales and mins of a Q4_K/Q5_K super-block's 8 sub-blocks from its 12 scale bytes
/// (ggml's `utmp` bit shuffle, a few word operations instead of eight `scale_min_k4` calls).
#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn k4_scales_mins(b: &[u8]) -> ([u8; 8], [u8; 8]) {
    const K1: u32 = 0x3f3f_3f3f;
    const K2: u32 = 0x0f0f_0f0f;
    const K3: u32 = 0x0303_0303;
    let word = |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
    let (u0, u1, u2) = (word(0), word(1), word(2));
    let sc_hi = (u2 & K2) | (((u0 >> 6) & K3) << 4);
    let m_hi = ((u2 >> 4) & K2) | (((u1 >> 6) & K3) << 4);
    let join = |lo: u32, hi: u32| ((lo as u64) | ((hi as u64) << 32)).to_le_bytes();
    (join(u0 & K1, sc_hi), join(u1 & K1, m_hi))
}

/// One validated matmul: `w` holds `rows` rows of `row_bytes` bytes (already offset to the first
/// row asked for), `k` values each; the output of token `t`, row `r` goes to `out[t * out_stride + r]`.
struct Job<'a> {
    w: &'a [u8],
    row_bytes: usize,
    rows: usize,
    k: usize,
    n: usize,
    out_stride: usize,
}

impl Acts {
    fn suits(&self, format: Format) -> bool {
        matches!(
            (format, &self.data),
            (Format::F32 | Format::F16 | Format::BF16, ActsData::F32(_))
                | (Format::Q4_1 | Format::Q5_1, ActsData::Q8 { kind: Q8Kind::Q8_1, .. })
                | (Format::Q4_0 | Format::Q5_0 | Format::Q8_0, ActsData::Q8 { kind: Q8Kind::Q8_0, .. })
                | (Format::Q4K | Format::Q5K | Format::Q6K, ActsData::Q8K { .. })
        )
    }
}
