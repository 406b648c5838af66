//! GGML block formats: sizes, and the reference dequantization every kernel is tested against.
//!
//! A tensor of type T with `n` elements is `n / T::block_size()` blocks of `T::type_size()` bytes,
//! little-endian, laid out row after row. The reference code here is plain scalar Rust, written for
//! clarity; the fast paths live in `backend::cpu::kernels`.

use crate::error::{Error, Result};

/// The `ggml_type` ids a GGUF file may name. Types nib can read the size of but not compute with
/// (Q2_K, Q3_K) still parse, so that a model using them gets a clear "unsupported" error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    BF16,
}

impl GgmlType {
    /// The type for a `ggml_type` id, or `None` for ids nib does not know.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            9 => Self::Q8_1,
            10 => Self::Q2K,
            11 => Self::Q3K,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            15 => Self::Q8K,
            30 => Self::BF16,
            _ => return None,
        })
    }

    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q8_1 => 9,
            Self::Q2K => 10,
            Self::Q3K => 11,
            Self::Q4K => 12,
            Self::Q5K => 13,
            Self::Q6K => 14,
            Self::Q8K => 15,
            Self::BF16 => 30,
        }
    }

    /// Elements per block.
    pub const fn block_size(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 | Self::Q8_1 => 32,
            Self::Q2K | Self::Q3K | Self::Q4K | Self::Q5K | Self::Q6K | Self::Q8K => 256,
        }
    }

    /// Bytes per block.
    pub const fn type_size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => 34,
            Self::Q8_1 => 36,
            Self::Q2K => 84,
            Self::Q3K => 110,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
            Self::Q8K => 292,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q8_0 => "Q8_0",
            Self::Q8_1 => "Q8_1",
            Self::Q2K => "Q2_K",
            Self::Q3K => "Q3_K",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
            Self::Q8K => "Q8_K",
            Self::BF16 => "BF16",
        }
    }

    /// Bytes taken by `n_elements` values, or `None` if `n_elements` is not a whole number of
    /// blocks or the size overflows.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let bs = self.block_size() as u64;
        if !n_elements.is_multiple_of(bs) {
            return None;
        }
        (n_elements / bs).checked_mul(self.type_size() as u64)
    }
}

/// Reference dequantization of `data` (whole blocks of type `ty`) into `out`, which must hold
/// exactly the number of elements the blocks encode.
///
/// Layouts (ggml, little-endian; `d`, `m` are IEEE f16):
/// - F32 / F16 / BF16: one value per element. BF16 is the high half of an f32.
/// - Q8_0 (34 bytes / 32 values): `d`, then 32 `i8` quants `q[j]`; value `j` = `q[j] * d`.
/// - Q4_0 (18 bytes / 32 values): `d`, then 16 bytes; byte `j` holds value `j` in its low nibble
///   and value `j + 16` in its high nibble; value = `(nibble - 8) * d`.
/// - Q4_1 (20 bytes / 32 values): `d`, `m`, then 16 bytes packed as in Q4_0; value = `nibble * d + m`.
/// - Q5_0 (22 bytes / 32 values): `d`, a u32 `qh`, then 16 bytes of nibbles as in Q4_0; bit `j`
///   of `qh` is the fifth bit (16) of value `j`; value = `(q - 16) * d`.
/// - Q5_1 (24 bytes / 32 values): `d`, `m`, `qh`, 16 bytes as Q5_0; value = `q * d + m`.
/// - Q4_K (144 bytes / 256 values): `d`, `dmin`, 12 bytes of eight 6-bit (scale, min) pairs
///   ([`scale_min_k4`]), 128 bytes of nibbles: 64-value chunk `c` takes bytes `32c..32c + 32`, low
///   nibbles for sub-block `2c`, high for `2c + 1`; value = `(d·sc)·q - dmin·m` per 32-value
///   sub-block.
/// - Q5_K (176 bytes / 256 values): as Q4_K with 32 bytes `qh` after the scales: bit `s` of
///   `qh[l]` is the fifth bit (16) of value `l` of sub-block `s`.
/// - Q6_K (210 bytes / 256 values): 128 bytes `ql`, 64 bytes `qh`, 16 `i8` scales, then `d` (at
///   byte 208, so blocks are not 4-byte aligned). Per 128-value half `h`, group `g` (0..4) of 32:
///   low 4 bits from `ql[64h + 32(g % 2) + l]` (nibble `g / 2`), high 2 from `qh[32h + l] >> 2g`;
///   value = `(d·sc[i / 16])·(q - 32)`.
///
/// The arithmetic is the one `gguf-py` uses (one f32 product, then one f32 sum for Q4_1, no fused
/// multiply-add; the K-quants multiply `d` by the sub-block scale first), so results are
/// bit-identical to `gguf.quants.dequantize`.
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<()> {
    let (bs, ts) = (ty.block_size(), ty.type_size());
    let n_blocks = data.len() / ts;
    if !data.len().is_multiple_of(ts) || n_blocks.checked_mul(bs) != Some(out.len()) {
        return Err(Error::InvalidArgument(format!(
            "dequantize {}: {} bytes do not encode exactly {} values ({} bytes per {} values)",
            ty.name(),
            data.len(),
            out.len(),
            ts,
            bs
        )));
    }
    let blocks = data.chunks_exact(ts).zip(out.chunks_exact_mut(bs));
    match ty {
        GgmlType::F32 => blocks.for_each(|(b, o)| o[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        GgmlType::F16 => blocks.for_each(|(b, o)| o[0] = f16_at(b, 0)),
        GgmlType::BF16 => {
            blocks.for_each(|(b, o)| o[0] = half::bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
        }
        GgmlType::Q8_0 => blocks.for_each(|(b, o)| dequantize_q8_0(b, o)),
        GgmlType::Q4_0 => blocks.for_each(|(b, o)| dequantize_q4_0(b, o)),
        GgmlType::Q4_1 => blocks.for_each(|(b, o)| dequantize_q4_1(b, o)),
        GgmlType::Q5_0 => blocks.for_each(|(b, o)| dequantize_q5(b, o, false)),
        GgmlType::Q5_1 => blocks.for_each(|(b, o)| dequantize_q5(b, o, true)),
        GgmlType::Q4K => blocks.for_each(|(b, o)| dequantize_q4_k(b, o)),
        GgmlType::Q5K => blocks.for_each(|(b, o)| dequantize_q5_k(b, o)),
        GgmlType::Q6K => blocks.for_each(|(b, o)| dequantize_q6_k(b, o)),
        // The other K-quants get their own `dequantize_*` block function here when a model needs them.
        _ => return Err(Error::Unsupported(format!("dequantize: block format {}", ty.name()))),
    }
    Ok(())
}

/// The little-endian f16 at `b[at..at + 2]`, as f32. Callers pass blocks of the right size.
#[inline]
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    match b.get(at..at + 2) {
        Some(&[lo, hi]) => half::f16::from_bits(u16::from_le_bytes([lo, hi])).to_f32(),
        _ => f32::NAN,
    }
}

/// One Q8_0 block (34 bytes) into 32 values.
fn dequantize_q8_0(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 0);
    for (o, &q) in out.iter_mut().zip(&block[2..]) {
        *o = (q as i8) as f32 * d;
    }
}

/// One Q4_0 block (18 bytes) into 32 values.
fn dequantize_q4_0(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 0);
    let (lo, hi) = out.split_at_mut(16);
    for ((l, h), &q) in lo.iter_mut().zip(hi.iter_mut()).zip(&block[2..]) {
        *l = ((q & 0x0F) as i32 - 8) as f32 * d;
        *h = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

/// One Q4_1 block (20 bytes) into 32 values.
fn dequantize_q4_1(block: &[u8], out: &mut [f32]) {
    let (d, m) = (f16_at(block, 0), f16_at(block, 2));
    let (lo, hi) = out.split_at_mut(16);
    for ((l, h), &q) in lo.iter_mut().zip(hi.iter_mut()).zip(&block[4..]) {
        *l = (q & 0x0F) as f32 * d + m;
        *h = (q >> 4) as f32 * d + m;
    }
}

/// One Q5_0 block (22 bytes) or, `with_min`, Q5_1 block (24 bytes) into 32 values.
fn dequantize_q5(block: &[u8], out: &mut [f32], with_min: bool) {
    let d = f16_at(block, 0);
    let at = if with_min { 4 } else { 2 };
    let qh = u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]]);
    for (j, o) in out.iter_mut().enumerate() {
        *o = match with_min {
            false => (q5_at(&block[at + 4..], qh, j) as i32 - 16) as f32 * d,
            true => q5_at(&block[at + 4..], qh, j) as f32 * d + f16_at(block, 2),
        };
    }
}

/// Value `j` (0..32) of a Q5_0/Q5_1 block's quants (0..32): nibble from `qs`, fifth bit from `qh`.
#[inline]
pub(crate) fn q5_at(qs: &[u8], qh: u32, j: usize) -> u8 {
    let nib = if j < 16 { qs[j] & 0x0F } else { qs[j - 16] >> 4 };
    nib | ((((qh >> j) & 1) as u8) << 4)
}

/// The 6-bit (scale, min) of sub-block `j` (0..8) from a Q4_K/Q5_K block's 12 scale bytes
/// (ggml's `get_scale_min_k4`): sub-blocks 0..4 in the low 6 bits of bytes `j` and `j + 4`,
/// sub-blocks 4..8 in the nibbles of byte `j + 4` plus the top 2 bits of bytes `j - 4` and `j`.
#[inline]
pub(crate) fn scale_min_k4(scales: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        ((scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4), (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4))
    }
}

/// One Q4_K block (144 bytes) into 256 values.
fn dequantize_q4_k(block: &[u8], out: &mut [f32]) {
    let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
    let (scales, qs) = (&block[4..16], &block[16..144]);
    for (s, o) in out.chunks_exact_mut(32).enumerate() {
        let (sc, m) = scale_min_k4(scales, s);
        let (ds, ms) = (d * sc as f32, dmin * m as f32);
        for (o, &q) in o.iter_mut().zip(&qs[32 * (s / 2)..]) {
            *o = ds * ((q >> (4 * (s % 2))) & 0x0F) as f32 - ms;
        }
    }
}

/// One Q5_K block (176 bytes) into 256 values.
fn dequantize_q5_k(block: &[u8], out: &mut [f32]) {
    let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
    let (scales, qh, qs) = (&block[4..16], &block[16..48], &block[48..176]);
    for (s, o) in out.chunks_exact_mut(32).enumerate() {
        let (sc, m) = scale_min_k4(scales, s);
        let (ds, ms) = (d * sc as f32, dmin * m as f32);
        for ((o, &q), &h) in o.iter_mut().zip(&qs[32 * (s / 2)..]).zip(qh) {
            let q = ((q >> (4 * (s % 2))) & 0x0F) | (((h >> s) & 1) << 4);
            *o = ds * q as f32 - ms;
        }
    }
}

/// One Q6_K block (210 bytes) into 256 values.
fn dequantize_q6_k(block: &[u8], out: &mut [f32]) {
    let (ql, qh, scales, d) = (&block[..128], &block[128..192], &block[192..208], f16_at(block, 208));
    for (i, o) in out.iter_mut().enumerate() {
        *o = d * (scales[i / 16] as i8) as f32 * q6_at(ql, qh, i) as f32;
    }
}

/// Value `i` (0..256) of a Q6_K block's quants, `q - 32` in -32..32.
#[inline]
pub(crate) fn q6_at(ql: &[u8], qh: &[u8], i: usize) -> i32 {
    let (h, g, l) = (i / 128, i % 128 / 32, i % 32);
    let lo = (ql[64 * h + 32 * (g % 2) + l] >> (4 * (g / 2))) & 0x0F;
    let hi = (qh[32 * h + l] >> (2 * g)) & 3;
    (lo | (hi << 4)) as i32 - 32
}

/// Reference quantization of `src` (whole blocks) to `ty`, appended to `out`: the arithmetic of
/// gguf-py's `quants.py` (ggml's reference `quantize_row_*_ref`), all in f32, so blocks are
/// bit-identical to `gguf.quants.quantize`. Used to quantize Hugging Face weights on load.
pub fn quantize(ty: GgmlType, src: &[f32], out: &mut Vec<u8>) -> Result<()> {
    let bs = ty.block_size();
    if !src.len().is_multiple_of(bs) {
        return Err(Error::InvalidArgument(format!("quantize {}: {} values are not whole blocks of {bs}", ty.name(), src.len())));
    }
    match ty {
        GgmlType::Q8_0 => src.chunks_exact(bs).for_each(|b| quantize_q8_0(b, out)),
        GgmlType::Q4_0 => src.chunks_exact(bs).for_each(|b| quantize_q4_0(b, out)),
        _ => return Err(Error::Unsupported(format!("quantize to {}", ty.name()))),
    }
    Ok(())
}

/// numpy's `np_roundf` of quants.py: round half away from zero, as `roundf`.
fn round_half_away(x: f32) -> f32 {
    let a = x.abs();
    let floored = a.floor();
    let b = floored + (2.0 * (a - floored)).floor();
    if x < 0.0 { -b } else { b }
}

/// One Q8_0 block: `d = max|x| / 127`, `q = round(x / d)` (via the f32 reciprocal).
fn quantize_q8_0(block: &[f32], out: &mut Vec<u8>) {
    let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
    let d = amax / 127.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
    out.extend(block.iter().map(|&x| round_half_away(x * id) as i8 as u8));
}

/// One Q4_0 block: `d = x_max / -8` where `x_max` is the first value of largest magnitude,
/// `q = min(15, trunc(x / d + 8.5))`; value `j` in the low nibble of byte `j`, `j + 16` high.
fn quantize_q4_0(block: &[f32], out: &mut Vec<u8>) {
    let mut max = block.first().copied().unwrap_or(0.0);
    for &x in block {
        if x.abs() > max.abs() {
            max = x;
        }
    }
    let d = max / -8.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
    let q = |x: f32| ((x * id + 8.5).trunc() as u8).min(15);
    let (lo, hi) = block.split_at(block.len() / 2);
    out.extend(lo.iter().zip(hi).map(|(&l, &h)| q(l) | (q(h) << 4)));
}
