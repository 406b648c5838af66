//! Causal attention over the f16 KV cache, for one KV head and the query heads that share it.
//!
//! Keys are stored transposed, `(n_kv_heads, head_dim, max_ctx)`, so that eight keys' scores
//! come out of one vector accumulator with no horizontal sums; values are stored by position,
//! `(max_ctx, kv_dim)`. As in llama.cpp's f16 matmuls, q is rounded to f16 before it meets the
//! keys and the probabilities are rounded to f16 before they meet the values.

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use std::arch::wasm32::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use half::f16;

use super::vec;

/// Queries scored together against each loaded block of keys.
const QUERY_TILE: usize = 4;

/// One layer's cache.
pub struct KvLayer {
    /// Keys, `(n_kv_heads, head_dim, max_ctx)`.
    kt: Vec<f16>,
    /// Values, `(max_ctx, kv_dim)`.
    v: Vec<f16>,
    /// No key or value stored so far is infinite or NaN: the wasm kernels may then convert f16
    /// with three instructions instead of fifteen (see `f16x8_scaled`).
    finite: bool,
}

/// The cache geometry shared by every layer.
#[derive(Debug, Clone, Copy)]
pub struct KvShape {
    pub max_ctx: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

impl KvShape {
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// `len` zeros, or `None` when that memory cannot be had: a cache sized from a hostile config
/// must be an error, not an abort (in wasm, a trap that kills the worker).
fn zeroed(len: usize) -> Option<Vec<f16>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).ok()?;
    v.resize(len, f16::ZERO);
    Some(v)
}

impl KvLayer {
    /// An empty layer, or `None` when its memory cannot be allocated.
    pub fn new(s: KvShape) -> Option<Self> {
        let len = s.max_ctx.checked_mul(s.kv_dim())?;
        Some(KvLayer { kt: zeroed(len)?, v: zeroed(len)?, finite: true })
    }

    /// A layer of shape `to` holding positions `0..len` of this one (shape `s`), or `None`
    /// when its memory cannot be allocated; the caller checked that `len` fits both.
    pub fn fork(&self, s: KvShape, len: usize, to: KvShape) -> Option<Self> {
        let mut out = KvLayer::new(to)?;
        for (dst, src) in out.kt.chunks_exact_mut(to.max_ctx).zip(self.kt.chunks_exact(s.max_ctx)) {
            dst[..len].copy_from_slice(&src[..len]);
        }
        let n = len * s.kv_dim();
        out.v[..n].copy_from_slice(&self.v[..n]);
        out.finite = self.finite;
        Some(out)
    }

    /// Keys, `(n_kv_heads, head_dim, max_ctx)`.
    pub(super) fn keys(&self) -> &[f16] {
        &self.kt
    }

    /// Values, `(max_ctx, kv_dim)`.
    pub(super) fn values(&self) -> &[f16] {
        &self.v
    }

    /// Stores `k`, `v` `(n, kv_dim)` at positions `pos..pos + n` (the caller checked the range).
    pub fn store(&mut self, s: KvShape, pos: usize, k: &[f32], v: &[f32]) {
        let kv_dim = s.kv_dim();
        for (t, row) in k.chunks_exact(kv_dim).enumerate() {
            for (c, &x) in row.iter().enumerate() {
                // c = g * head_dim + d, so (g, d, p) is at c * max_ctx + p.
                let h = f16::from_f32(x);
                self.finite &= h.is_finite();
                self.kt[c * s.max_ctx + pos + t] = h;
            }
        }
        let dst = &mut self.v[pos * kv_dim..pos * kv_dim + v.len()];
        for (d, &x) in dst.iter_mut().zip(v) {
            *d = f16::from_f32(x);
            self.finite &= d.is_finite();
        }
    }
}

/// The work of one task: KV head `g`, query heads `heads`, tokens `tokens` of the batch.
pub struct Task<'a> {
    pub layer: &'a KvLayer,
    pub shape: KvShape,
    pub g: usize,
    pub heads: std::ops::Range<usize>,
    pub tokens: std::ops::Range<usize>,
    /// Position of the batch's first token.
    pub pos: usize,
    /// Sliding window: token at position p sees `p + 1 - w ..= p` (see `AttnShape::window`).
    pub window: Option<usize>,
    /// Queries of the whole batch, `(n, n_heads * head_dim)`.
    pub q: &'a [f32],
    pub q_dim: usize,
}

impl Task<'_> {
    /// The first position a token seeing `len` positions attends to (its window's start).
    pub fn first_visible(&self, len: usize) -> usize {
        self.window.map_or(0, |w| len.saturating_sub(w))
    }
}

/// Runs a task; `write(t, h)` gives the `head_dim` outputs of token `t`, head `h`.
pub fn attend<'o>(task: &Task, mut write: impl FnMut(usize, usize) -> Option<&'o mut [f32]>) -> Option<()> {
    let (hd, s) = (task.shape.head_dim, task.shape);
    // (token, head) pairs of this task, each with its query rounded to f16 and its key count.
    let pairs: Vec<(usize, usize)> = task.tokens.clone().flat_map(|t| task.heads.clone().map(move |h| (t, h))).collect();
    let mut queries: Vec<f32> = pairs.iter().flat_map(|&(t, h)| &task.q[t * task.q_dim + h * hd..t * task.q_dim + (h + 1) * hd]).copied().collect();
    vec::round_f16(&mut queries);
    let len_max = task.pos + task.tokens.end;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut probs = vec![0f32; pairs.len() * len_max];
    let kt = &task.layer.kt[task.g * hd * s.max_ctx..(task.g + 1) * hd * s.max_ctx];
    for (i, chunk) in queries.chunks(QUERY_TILE * hd).enumerate() {
        let out = &mut probs[i * QUERY_TILE * len_max..(i * QUERY_TILE * len_max + chunk.len() / hd * len_max)];
        scores(kt, s.max_ctx, hd, chunk, len_max, out, task.layer.finite);
    }
    for (p, &(t, _)) in probs.chunks_exact_mut(len_max).zip(&pairs) {
        let len = task.pos + t + 1;
        let first = task.first_visible(len);
        p[first..len].iter_mut().for_each(|x| *x *= scale);
        vec::softmax(&mut p[first..len]);
        vec::round_f16(&mut p[first..len]);
        p[..first].fill(0.0);
        p[len..].fill(0.0);
    }
    let v = &task.layer.v;
    for (i, chunk) in probs.chunks(QUERY_TILE * len_max).enumerate() {
        let nq = chunk.len() / len_max;
        let mut outs: Vec<&mut [f32]> = Vec::with_capacity(nq);
        for &(t, h) in &pairs[i * QUERY_TILE..i * QUERY_TILE + nq] {
            let o = write(t, h)?;
            if o.len() != hd {
                return None;
            }
            outs.push(o);
        }
        weighted_values(v, s.kv_dim(), task.g * hd, hd, chunk, len_max, &mut outs, task.layer.finite);
    }
    Some(())
}

/// `out[i][j] = q_i · key_j` for `j < len`; `q` holds up to QUERY_TILE queries of `hd`;
/// `finite`: no key is infinite or NaN.
#[allow(unused_variables)] // `finite` is for wasm
fn scores(kt: &[f16], max_ctx: usize, hd: usize, q: &[f32], len: usize, out: &mut [f32], finite: bool) {
    #[cfg(target_arch = "x86_64")]
    if vec::has_avx2() {
        let nq = q.len() / hd;
        // SAFETY: AVX2/FMA/F16C detected; the kernels index within the slices' bounds.
        unsafe {
            match nq {
                1 => return scores_avx2::<1>(kt, max_ctx, hd, q, len, out),
                2 => return scores_avx2::<2>(kt, max_ctx, hd, q, len, out),
                3 => return scores_avx2::<3>(kt, max_ctx, hd, q, len, out),
                4 => return scores_avx2::<4>(kt, max_ctx, hd, q, len, out),
                _ => {}
            }
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if finite {
        match q.len() / hd {
            1 => return scores_simd128_finite::<1>(kt, max_ctx, hd, q, len, out),
            2 => return scores_simd128_finite::<2>(kt, max_ctx, hd, q, len, out),
            3 => return scores_simd128_finite::<3>(kt, max_ctx, hd, q, len, out),
            4 => return scores_simd128_finite::<4>(kt, max_ctx, hd, q, len, out),
            _ => {}
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    match q.len() / hd {
        1 => return scores_simd128::<1>(kt, max_ctx, hd, q, len, out),
        2 => return scores_simd128::<2>(kt, max_ctx, hd, q, len, out),
        3 => return scores_simd128::<3>(kt, max_ctx, hd, q, len, out),
        4 => return scores_simd128::<4>(kt, max_ctx, hd, q, len, out),
        _ => {}
    }
    for (qi, o) in q.chunks_exact(hd).zip(out.chunks_exact_mut(len)) {
        for (j, o) in o.iter_mut().enumerate() {
            *o = (0..hd).map(|d| qi[d] * kt[d * max_ctx + j].to_f32()).sum();
        }
    }
}

/// Four f16 (the low halves of `h`'s u32 lanes) as f32: the magnitude shifted into an f32's
/// place and scaled by 2¹¹² (exact for normal and subnormal halves alike), infinities and NaNs
/// rebuilt, the sign put back. wasm has no f16 conversion instruction; one value at a time
/// through `half` made attention the bulk of a decode step in the browser.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline]
fn f16x4_to_f32(h: v128) -> v128 {
    let mag = f32x4_mul(u32x4_shl(v128_and(h, u32x4_splat(0x7fff)), 13), f32x4_splat(f32::from_bits(0x7780_0000))); // × 2¹¹²
    let inf_nan = u32x4_eq(v128_and(h, u32x4_splat(0x7c00)), u32x4_splat(0x7c00));
    let special = v128_or(u32x4_splat(0x7f80_0000), u32x4_shl(v128_and(h, u32x4_splat(0x3ff)), 13));
    v128_or(v128_bitselect(special, mag, inf_nan), u32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16))
}

/// Four f16 at `p` as f32.
///
/// # Safety
/// `p` must be valid for reading 8 bytes.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline]
unsafe fn load_f16x4(p: *const f16) -> v128 {
    f16x4_to_f32(u32x4_load_extend_u16x4(p as *const u16))
}

/// [`scores`] four keys at a time, in the scalar path's order of operations per key.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn scores_simd128<const NQ: usize>(kt: &[f16], max_ctx: usize, hd: usize, q: &[f32], len: usize, out: &mut [f32]) {
    let mut j = 0;
    // Blocks of 4 keys (the last may run past `len`, never past the key rows).
    while j < len && j + 4 <= max_ctx && (hd - 1) * max_ctx + j + 4 <= kt.len() {
        let mut acc = [f32x4_splat(0.0); NQ];
        for d in 0..hd {
            // SAFETY: d * max_ctx + j + 4 <= kt.len(), checked for the largest d above.
            let k4 = unsafe { load_f16x4(kt.as_ptr().add(d * max_ctx + j)) };
            for (i, a) in acc.iter_mut().enumerate() {
                *a = f32x4_add(*a, f32x4_mul(f32x4_splat(q[i * hd + d]), k4));
            }
        }
        for (i, a) in acc.iter().enumerate() {
            let n = (len - j).min(4);
            let lanes = [f32x4_extract_lane::<0>(*a), f32x4_extract_lane::<1>(*a), f32x4_extract_lane::<2>(*a), f32x4_extract_lane::<3>(*a)];
            out[i * len + j..i * len + j + n].copy_from_slice(&lanes[..n]);
        }
        j += 4;
    }
    for j in j..len {
        for i in 0..NQ {
            out[i * len + j] = (0..hd).map(|d| q[i * hd + d] * kt[d * max_ctx + j].to_f32()).sum();
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scores_avx2<const NQ: usize>(kt: &[f16], max_ctx: usize, hd: usize, q: &[f32], len: usize, out: &mut [f32]) {
    let mut j = 0;
    // Blocks of 8 keys (the last may run past `len`, never past the key rows).
    while j < len && j + 8 <= max_ctx {
        let mut acc = [_mm256_setzero_ps(); NQ];
        for d in 0..hd {
            let k8 = _mm256_cvtph_ps(_mm_loadu_si128(kt.as_ptr().add(d * max_ctx + j) as *const __m128i));
            for (i, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(_mm256_set1_ps(*q.get_unchecked(i * hd + d)), k8, *a);
            }
        }
        for (i, a) in acc.iter().enumerate() {
            let mut tmp = [0f32; 8];
            _mm256_storeu_ps(tmp.as_mut_ptr(), *a);
            let n = (len - j).min(8);
            out[i * len + j..i * len + j + n].copy_from_slice(&tmp[..n]);
        }
        j += 8;
    }
    for j in j..len {
        for i in 0..NQ {
            out[i * len + j] = (0..hd).map(|d| q[i * hd + d] * kt[d * max_ctx + j].to_f32()).sum();
        }
    }
}

/// `outs[i] = Σ_j p[i][j] · value_j` over the head's `hd` columns starting at `col`; `finite`:
/// no value is infinite or NaN.
#[allow(unused_variables, clippy::too_many_arguments)] // `finite` is for wasm
fn weighted_values(v: &[f16], kv_dim: usize, col: usize, hd: usize, p: &[f32], len: usize, outs: &mut [&mut [f32]], finite: bool) {
    #[cfg(target_arch = "x86_64")]
    if vec::has_avx2() && hd.is_multiple_of(8) {
        // SAFETY: AVX2/FMA/F16C detected; rows j < len lie in the cache, columns in the head.
        unsafe {
            match outs.len() {
                1 => return values_avx2::<1>(v, kv_dim, col, hd, p, len, outs),
                2 => return values_avx2::<2>(v, kv_dim, col, hd, p, len, outs),
                3 => return values_avx2::<3>(v, kv_dim, col, hd, p, len, outs),
                4 => return values_avx2::<4>(v, kv_dim, col, hd, p, len, outs),
                _ => {}
            }
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if finite && hd.is_multiple_of(8) && len.saturating_sub(1) * kv_dim + col + hd <= v.len() && p.len() >= outs.len() * len {
        match outs.len() {
            1 => return values_simd128_finite::<1>(v, kv_dim, col, hd, p, len, outs),
            2 => return values_simd128_finite::<2>(v, kv_dim, col, hd, p, len, outs),
            3 => return values_simd128_finite::<3>(v, kv_dim, col, hd, p, len, outs),
            4 => return values_simd128_finite::<4>(v, kv_dim, col, hd, p, len, outs),
            _ => {}
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if hd.is_multiple_of(4) && len.saturating_sub(1) * kv_dim + col + hd <= v.len() {
        match outs.len() {
            1 => return values_simd128::<1>(v, kv_dim, col, hd, p, len, outs),
            2 => return values_simd128::<2>(v, kv_dim, col, hd, p, len, outs),
            3 => return values_simd128::<3>(v, kv_dim, col, hd, p, len, outs),
            4 => return values_simd128::<4>(v, kv_dim, col, hd, p, len, outs),
            _ => {}
        }
    }
    for (o, pi) in outs.iter_mut().zip(p.chunks_exact(len)) {
        o.fill(0.0);
        for (j, &w) in pi.iter().enumerate() {
            if w != 0.0 {
                vec::axpy_f16(o, w, &v[j * kv_dim + col..j * kv_dim + col + hd]);
            }
        }
    }
}

/// [`weighted_values`] four columns at a time (`hd` a multiple of 4, rows `j < len` in `v`).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn values_simd128<const NQ: usize>(v: &[f16], kv_dim: usize, col: usize, hd: usize, p: &[f32], len: usize, outs: &mut [&mut [f32]]) {
    for c in (0..hd).step_by(4) {
        let mut acc = [f32x4_splat(0.0); NQ];
        for j in 0..len {
            // SAFETY: j * kv_dim + col + c + 4 <= v.len(), checked by the caller for j < len.
            let v4 = unsafe { load_f16x4(v.as_ptr().add(j * kv_dim + col + c)) };
            for (i, a) in acc.iter_mut().enumerate() {
                let w = p[i * len + j];
                if w != 0.0 {
                    *a = f32x4_add(*a, f32x4_mul(f32x4_splat(w), v4));
                }
            }
        }
        for (o, a) in outs.iter_mut().zip(&acc) {
            // SAFETY: each output row holds the head's `hd` columns.
            if o.len() >= c + 4 {
                unsafe { v128_store(o.as_mut_ptr().add(c) as *mut v128, *a) };
            }
        }
    }
}

/// 2¹¹²: a finite f16's bits moved into an f32's place read as that f16 times 2⁻¹¹² (exactly,
/// subnormals included), so the `_finite` kernels scale the other factor by 2¹¹² instead:
/// `(q·2¹¹²)·(k·2⁻¹¹²)` is the same product, rounded the same way, as `q·k`.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
const TWO_112: f32 = f32::from_bits(0x7780_0000);

/// Eight finite f16 as two f32x4, each 2⁻¹¹² times its value (see [`TWO_112`]): the half
/// moved to the top of a lane, shifted down arithmetically (the sign copies into the exponent's
/// top bits, which the mask clears). Three instructions per four values, against fifteen for
/// [`f16x4_to_f32`], which also handles infinities and NaNs.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn f16x8_scaled(h: v128) -> (v128, v128) {
    let zero = i16x8_splat(0);
    let lo = i16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(zero, h);
    let hi = i16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(zero, h);
    let f = |x: v128| v128_and(i32x4_shr(x, 3), u32x4_splat(0x8fff_ffff));
    (f(lo), f(hi))
}

/// [`scores_simd128`] eight keys at a time for a cache with finite keys, keys `j0..len`, the
/// queries scaled by 2¹¹² for [`f16x8_scaled`]: the same sums, bit for bit.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn scores_simd128_blocks<const NQ: usize>(kt: &[f16], max_ctx: usize, hd: usize, q: &[f32], len: usize, out: &mut [f32], j0: usize) {
    if j0 >= len {
        return;
    }
    let qs: Vec<f32> = q[..NQ * hd].iter().map(|x| x * TWO_112).collect();
    let mut j = j0;
    // Blocks of 8 keys (the last may run past `len`, never past the key rows).
    while j < len && j + 8 <= max_ctx && (hd - 1) * max_ctx + j + 8 <= kt.len() {
        let mut acc = [[f32x4_splat(0.0); 2]; NQ];
        for d in 0..hd {
            // SAFETY: d * max_ctx + j + 8 <= kt.len(), checked for the largest d above.
            let (k0, k1) = f16x8_scaled(unsafe { v128_load(kt.as_ptr().add(d * max_ctx + j) as *const v128) });
            for (i, a) in acc.iter_mut().enumerate() {
                // SAFETY: i * hd + d < NQ * hd = qs.len().
                let qv = f32x4_splat(unsafe { *qs.get_unchecked(i * hd + d) });
                a[0] = f32x4_add(a[0], f32x4_mul(qv, k0));
                a[1] = f32x4_add(a[1], f32x4_mul(qv, k1));
            }
        }
        let n = (len - j).min(8);
        for (i, a) in acc.iter().enumerate() {
            let mut lanes = [0f32; 8];
            // SAFETY: two stores of four f32 into eight.
            unsafe {
                v128_store(lanes.as_mut_ptr() as *mut v128, a[0]);
                v128_store(lanes.as_mut_ptr().add(4) as *mut v128, a[1]);
            }
            out[i * len + j..i * len + j + n].copy_from_slice(&lanes[..n]);
        }
        j += 8;
    }
    for j in j..len {
        for i in 0..NQ {
            out[i * len + j] = (0..hd).map(|d| q[i * hd + d] * kt[d * max_ctx + j].to_f32()).sum();
        }
    }
}

/// [`scores`] on a cache with finite keys: [`scores_simd128_blocks`] with the loops swapped for
/// the whole blocks of 8 keys. Key rows are read in order (d after d, each row's keys in
/// order), which the hardware prefetcher follows, where 8 keys across all `hd` rows touch `hd`
/// cache lines `max_ctx` apart; the scores accumulate in `out` (in L1), two rows per pass to
/// halve its loads and stores. Per score the additions run in the same order, d after d from
/// +0: the same sums bit for bit. The last partial block goes to [`scores_simd128_blocks`].
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn scores_simd128_finite<const NQ: usize>(kt: &[f16], max_ctx: usize, hd: usize, q: &[f32], len: usize, out: &mut [f32]) {
    let n8 = len / 8 * 8;
    if n8 == 0 || (hd - 1) * max_ctx + n8 > kt.len() || out.len() < NQ * len || q.len() < NQ * hd {
        return scores_simd128_blocks::<NQ>(kt, max_ctx, hd, q, len, out, 0);
    }
    for i in 0..NQ {
        out[i * len..i * len + n8].fill(0.0);
    }
    let o = out.as_mut_ptr();
    for d in (0..hd).step_by(2) {
        let qa: [v128; NQ] = core::array::from_fn(|i| f32x4_splat(q[i * hd + d] * TWO_112));
        let qb: [v128; NQ] = core::array::from_fn(|i| f32x4_splat(q[i * hd + d + 1] * TWO_112));
        let (ra, rb) = (kt[d * max_ctx..].as_ptr(), kt[(d + 1) * max_ctx..].as_ptr());
        for j in (0..n8).step_by(8) {
            // SAFETY: (d + 1) * max_ctx + j + 8 <= kt.len() (checked for the last row above);
            // i * len + j + 8 <= out.len() for i < NQ, j + 8 <= n8 <= len.
            unsafe {
                let (ka0, ka1) = f16x8_scaled(v128_load(ra.add(j) as *const v128));
                let (kb0, kb1) = f16x8_scaled(v128_load(rb.add(j) as *const v128));
                for i in 0..NQ {
                    let p = o.add(i * len + j);
                    let mut a0 = v128_load(p as *const v128);
                    let mut a1 = v128_load(p.add(4) as *const v128);
                    a0 = f32x4_add(a0, f32x4_mul(qa[i], ka0));
                    a1 = f32x4_add(a1, f32x4_mul(qa[i], ka1));
                    a0 = f32x4_add(a0, f32x4_mul(qb[i], kb0));
                    a1 = f32x4_add(a1, f32x4_mul(qb[i], kb1));
                    v128_store(p as *mut v128, a0);
                    v128_store(p.add(4) as *mut v128, a1);
                }
            }
        }
    }
    scores_simd128_blocks::<NQ>(kt, max_ctx, hd, q, len, out, n8);
}

/// [`values_simd128`] eight columns at a time for a cache with finite values (`hd` a multiple
/// of 8, rows `j < len` in `v`), the probabilities scaled by 2¹¹² for [`f16x8_scaled`]. Zero
/// probabilities are added rather than skipped: `acc + 0·v` is `acc` for a finite `v` (an
/// accumulator that starts at +0 is never −0), so the sums are the same bit for bit.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn values_simd128_finite<const NQ: usize>(v: &[f16], kv_dim: usize, col: usize, hd: usize, p: &[f32], len: usize, outs: &mut [&mut [f32]]) {
    let ps: Vec<f32> = p[..NQ * len].iter().map(|x| x * TWO_112).collect();
    for c in (0..hd).step_by(8) {
        let mut acc = [[f32x4_splat(0.0); 2]; NQ];
        for j in 0..len {
            // SAFETY: j * kv_dim + col + c + 8 <= v.len(), checked by the caller for j < len.
            let (v0, v1) = f16x8_scaled(unsafe { v128_load(v.as_ptr().add(j * kv_dim + col + c) as *const v128) });
            for (i, a) in acc.iter_mut().enumerate() {
                // SAFETY: i * len + j < NQ * len = ps.len().
                let w = f32x4_splat(unsafe { *ps.get_unchecked(i * len + j) });
                a[0] = f32x4_add(a[0], f32x4_mul(w, v0));
                a[1] = f32x4_add(a[1], f32x4_mul(w, v1));
            }
        }
        for (o, a) in outs.iter_mut().zip(&acc) {
            if o.len() >= c + 8 {
                // SAFETY: c + 8 <= o.len().
                unsafe {
                    v128_store(o.as_mut_ptr().add(c) as *mut v128, a[0]);
                    v128_store(o.as_mut_ptr().add(c + 4) as *mut v128, a[1]);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn values_avx2<const NQ: usize>(v: &[f16], kv_dim: usize, col: usize, hd: usize, p: &[f32], len: usize, outs: &mut [&mut [f32]]) {
    for c in (0..hd).step_by(8) {
        let mut acc = [_mm256_setzero_ps(); NQ];
        for j in 0..len {
            let v8 = _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(j * kv_dim + col + c) as *const __m128i));
            for (i, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(_mm256_set1_ps(*p.get_unchecked(i * len + j)), v8, *a);
            }
        }
        for (o, a) in outs.iter_mut().zip(&acc) {
            _mm256_storeu_ps(o.as_mut_ptr().add(c), *a);
        }
    }
}
