//! x86_64 kernels for AVX2 + FMA + F16C, chosen at run time.
//!
//! Quantized weights run through register tiles of `RM` weight rows × `RN` tokens. Per block and
//! (row, token) pair the integer work is `maddubs` (u8 × i8 → i16 pairs) and `madd` with ones
//! (→ i32); Q8_0 weights first move their sign onto the activations (`sign`), as ggml does.
//! - Decode (n = 1, `decode::<F, 4>`): four rows share each activation block; their integer sums
//!   are reduced together (lane = row) and scaled in one float step per block. The weights
//!   stream from memory, and the four interleaved rows defeat the hardware prefetcher, so every
//!   cache line of the tile `PREFETCH_TILES` ahead is prefetched: this took Q4_1 decode from
//!   10.4 to 6.4 ms/token here.
//! - n > 1 (`prefill_tile::<F, 4, 4>`): each unpacked weight block serves four tokens and each
//!   activation block four rows; the four tokens' sums of a row are reduced together, so the
//!   float step runs once per row and block (lanes = tokens), with the four tokens' `d_x` and
//!   `s_x` loaded side by side (block-major layout of `Acts`).
//!
//! Batch invariance: the integer sum of a block is exact whatever its reduction order, and both
//! paths then run the same f32 operations per (row, token), block after block:
//! `acc = fma(d_w · d_x, f32(Σ q_w·q_x), acc)`, then (Q4_0, Q4_1) `acc = fma(m_w, s_x, acc)`. An
//! output is therefore bit-identical whether its token comes alone, in a batch, or in any tile
//! position, and whatever row range the call covers (tested in tests/kernels.rs).
//!
//! Safety: every function here needs AVX2, FMA and F16C (checked by the caller through
//! `Isa::check`), and the raw pointers in [`Tile`] come from a validated [`Job`]: rows `0..rows`
//! of `row_bytes` each, tokens `0..n` of `k` quants, scales (k / 32, n), and outputs
//! `t * out_stride + r` for `t < n`, `r < rows`.

use std::arch::x86_64::*;

use super::acts::ActsData;
use super::{Format, Job};

use super::tags::{block_bytes, Q4K, Q4_0, Q4_1, Q5K, Q5_0, Q5_1, Q6K, Q8_0};

/// Rows per n > 1 tile (× 4 tokens): 4 measured best (2: 360, 3 and 4: 383 tok/s on Q4_1).
const PREFILL_RM: usize = 4;

/// How many decode tiles ahead to prefetch.
const PREFETCH_TILES: usize = 2;

/// Up to this many tokens, a matmul streams its weights from memory and prefetches them; beyond
/// it, weights are reused across token tiles and stay in cache.
const STREAM_MAX_TOKENS: usize = 8;

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn matmul(format: Format, job: &Job, acts: &ActsData, out: &mut [f32]) {
    match acts {
        ActsData::F32(x) => match format {
            Format::F32 => float_matmul::<0>(job, x, out),
            Format::F16 => float_matmul::<1>(job, x, out),
            _ => float_matmul::<2>(job, x, out),
        },
        ActsData::Q8 { qs, d, s, .. } => {
            let p = Tile {
                w: job.w.as_ptr(),
                row_bytes: job.row_bytes,
                nb: job.k / 32,
                qs: qs.as_ptr(),
                k: job.k,
                d: d.as_ptr(),
                s: s.as_ptr(),
                n: job.n,
                out: out.as_mut_ptr(),
                out_stride: job.out_stride,
            };
            match format {
                Format::Q4_0 => q_matmul::<Q4_0>(&p, job.rows),
                Format::Q4_1 => q_matmul::<Q4_1>(&p, job.rows),
                Format::Q5_0 => q_matmul::<Q5_0>(&p, job.rows),
                Format::Q5_1 => q_matmul::<Q5_1>(&p, job.rows),
                _ => q_matmul::<Q8_0>(&p, job.rows),
            }
        }
        ActsData::Q8K { qs, d, bsums } => {
            let p = KTile {
                w: job.w.as_ptr(),
                row_bytes: job.row_bytes,
                nb: job.k / 256,
                qs: qs.as_ptr(),
                k: job.k,
                d: d.as_ptr(),
                bsums: bsums.as_ptr(),
                n: job.n,
                out: out.as_mut_ptr(),
                out_stride: job.out_stride,
            };
            match format {
                Format::Q4K => k_matmul::<Q4K>(&p, job.rows),
                Format::Q5K => k_matmul::<Q5K>(&p, job.rows),
                _ => k_matmul::<Q6K>(&p, job.rows),
            }
        }
    }
}

/// Raw views of a validated K-quant job: as [`Tile`], with Q8_K activations (`nb` super-blocks
/// per row, `d` (nb, n), `bsums` (n, k / 16)).
struct KTile {
    w: *const u8,
    row_bytes: usize,
    nb: usize,
    qs: *const i8,
    k: usize,
    d: *const f32,
    bsums: *const i16,
    n: usize,
    out: *mut f32,
    out_stride: usize,
}

/// A K-quant super-block unpacked for the integer dot product: 256 quants as unsigned bytes
/// (`q[c]` holds values `32c..32c + 32`), the scale of each chunk's two halves of 16 as i16
/// lanes (`sc[c]`: lanes 0..8 the first half, 8..16 the second, matching `maddubs`' output),
/// the mins per 16 values (Q4_K/Q5_K, each sub-block's min twice), and the f16 `d`, `dmin`.
/// Q6_K's quants are stored as `q + 32` (0..64); the kernel takes `32·Σ sc·Σa` back off.
struct KBlock {
    q: [__m256i; 8],
    sc: [__m256i; 8],
    sc16: __m256i,
    mins16: __m256i,
    d: f32,
    dmin: f32,
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k_matmul<const F: u8>(p: &KTile, rows: usize) {
    if p.n == 1 {
        let mut r = 0;
        while r + 4 <= rows {
            k_decode::<F, 4>(p, r);
            r += 4;
        }
        while r < rows {
            k_decode::<F, 1>(p, r);
            r += 1;
        }
        return;
    }
    for r in 0..rows {
        let mut t = 0;
        while t + 4 <= p.n {
            k_tile::<F, 4>(p, r, t);
            t += 4;
        }
        match p.n - t {
            3 => k_tile::<F, 3>(p, r, t),
            2 => k_tile::<F, 2>(p, r, t),
            1 => k_tile::<F, 1>(p, r, t),
            _ => {}
        }
    }
}

/// One unpacked super-block against one token's Q8_K block at `a` (256 quants) with its per-16
/// sums `bs`: (8 lanes summing to `Σ sc·Σ q·a`, Q6_K's offset taken off; 8 lanes summing to
/// `Σ m·Σ a`, zero for Q6_K). Exact integers.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k_dot<const F: u8>(kb: &KBlock, a: *const i8, bs: __m256i) -> (__m256i, __m256i) {
    let mut s = _mm256_setzero_si256();
    for c in 0..8 {
        let prod = _mm256_maddubs_epi16(kb.q[c], _mm256_loadu_si256(a.add(32 * c).cast()));
        s = _mm256_add_epi32(s, _mm256_madd_epi16(prod, kb.sc[c]));
    }
    if F == Q6K {
        // Σ sc·Σ (q - 32)·a = Σ sc·Σ q·a - 32·Σ sc·Σ a, with Σ a per 16 from Q8_K.
        (_mm256_sub_epi32(s, _mm256_slli_epi32::<5>(_mm256_madd_epi16(kb.sc16, bs))), _mm256_setzero_si256())
    } else {
        (s, _mm256_madd_epi16(kb.mins16, bs))
    }
}

/// Decode (n = 1): rows `r0..r0 + RM` (RM ≤ 4) with lane = row, so one reduction and one float
/// step per super-block serve four rows. Per lane the float operations are `k_tile`'s per lane
/// (`fma(d_w·d_x, isum, acc)`, then `fma(dmin_w·d_x, -msum, acc)`): batch-invariant. The rows
/// stream from memory, interleaved, so the tile `PREFETCH_TILES` ahead is prefetched as in
/// `decode`.
#[inline]
#[allow(clippy::needless_range_loop)] // r indexes several arrays at once
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k_decode<const F: u8, const RM: usize>(p: &KTile, r0: usize) {
    let block_bytes = block_bytes(F);
    let mut acc = _mm_setzero_ps();
    for b in 0..p.nb {
        let share = p.w.wrapping_add((r0 + PREFETCH_TILES * RM) * p.row_bytes + b * RM * block_bytes);
        for line in (0..RM * block_bytes).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(share.wrapping_add(line).cast());
        }
        let a = p.qs.add(b * 256);
        let bs = _mm256_loadu_si256(p.bsums.add(b * 16).cast());
        let mut isum = [_mm256_setzero_si256(); 4];
        let mut msum = [_mm256_setzero_si256(); 4];
        let (mut dw, mut dmin) = ([0f32; 4], [0f32; 4]);
        for r in 0..RM {
            let kb = k_unpack::<F>(p.w.add((r0 + r) * p.row_bytes + b * block_bytes));
            (isum[r], msum[r]) = k_dot::<F>(&kb, a, bs);
            (dw[r], dmin[r]) = (kb.d, kb.dmin);
        }
        let dx = _mm_set1_ps(*p.d.add(b));
        acc = _mm_fmadd_ps(_mm_mul_ps(_mm_loadu_ps(dw.as_ptr()), dx), _mm_cvtepi32_ps(reduce4(isum)), acc);
        if F != Q6K {
            let neg = _mm_sub_epi32(_mm_setzero_si128(), reduce4(msum));
            acc = _mm_fmadd_ps(_mm_mul_ps(_mm_loadu_ps(dmin.as_ptr()), dx), _mm_cvtepi32_ps(neg), acc);
        }
    }
    let mut v = [0f32; 4];
    _mm_storeu_ps(v.as_mut_ptr(), acc);
    for r in 0..RM {
        *p.out.add(r0 + r) = v[r];
    }
}

/// out[t][r] for row `r` and tokens `t0..t0 + RN` (RN ≤ 4): each super-block is unpacked once
/// and dotted with every token's Q8_K block. Per lane (token) and super-block the float step is
/// `acc = fma(d_w·d_x, isum, acc)`, then (Q4_K, Q5_K) `acc = fma(dmin_w·d_x, -msum, acc)`,
/// whatever RN, and as `k_decode` per row: batch-invariant.
#[inline]
#[allow(clippy::needless_range_loop)] // t indexes several arrays and pointers at once
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k_tile<const F: u8, const RN: usize>(p: &KTile, r: usize, t0: usize) {
    let block_bytes = block_bytes(F);
    let mut acc = _mm_setzero_ps();
    for b in 0..p.nb {
        let kb = k_unpack::<F>(p.w.add(r * p.row_bytes + b * block_bytes));
        let mut isum = [_mm256_setzero_si256(); 4];
        let mut msum = [_mm256_setzero_si256(); 4];
        for t in 0..RN {
            let a = p.qs.add((t0 + t) * p.k + b * 256);
            let bs = _mm256_loadu_si256(p.bsums.add((t0 + t) * (p.k / 16) + b * 16).cast());
            (isum[t], msum[t]) = k_dot::<F>(&kb, a, bs);
        }
        let dx = load4::<RN>(p.d.add(b * p.n + t0));
        acc = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(kb.d), dx), _mm_cvtepi32_ps(reduce4(isum)), acc);
        if F != Q6K {
            let neg = _mm_sub_epi32(_mm_setzero_si128(), reduce4(msum));
            acc = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(kb.dmin), dx), _mm_cvtepi32_ps(neg), acc);
        }
    }
    let mut v = [0f32; 4];
    _mm_storeu_ps(v.as_mut_ptr(), acc);
    for t in 0..RN {
        *p.out.add((t0 + t) * p.out_stride + r) = v[t];
    }
}

/// `[Σ v[0], Σ v[1], Σ v[2], Σ v[3]]`, each over its eight i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn reduce4(v: [__m256i; 4]) -> __m128i {
    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
}

/// The super-block at `blk` unpacked (see [`KBlock`]).
#[inline]
#[allow(clippy::needless_range_loop)] // c indexes q and sc together
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k_unpack<const F: u8>(blk: *const u8) -> KBlock {
    let low = _mm256_set1_epi8(0x0F);
    let mut q = [_mm256_setzero_si256(); 8];
    let mut sc = [_mm256_setzero_si256(); 8];
    // f16 → f32 with F16C: the low 4 bytes at `p` as two halves, [h0, h1, 0, 0].
    let halves = |p: *const u8| _mm_cvtph_ps(_mm_cvtsi32_si128(p.cast::<i32>().read_unaligned()));
    if F == Q6K {
        let mask = _mm256_set1_epi8(0x30);
        for h in 0..2 {
            let ql0 = _mm256_loadu_si256(blk.add(64 * h).cast());
            let ql1 = _mm256_loadu_si256(blk.add(64 * h + 32).cast());
            let qh = _mm256_loadu_si256(blk.add(128 + 32 * h).cast());
            // Group g of the half: low 4 bits from a nibble of ql, bits 4..6 from qh >> 2g.
            q[4 * h] = _mm256_or_si256(_mm256_and_si256(ql0, low), _mm256_and_si256(_mm256_slli_epi16::<4>(qh), mask));
            q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(ql1, low), _mm256_and_si256(_mm256_slli_epi16::<2>(qh), mask));
            q[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql0), low), _mm256_and_si256(qh, mask));
            q[4 * h + 3] =
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql1), low), _mm256_and_si256(_mm256_srli_epi16::<2>(qh), mask));
        }
        let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(blk.add(192).cast()));
        // Chunk c: scales 2c and 2c + 1 (one i32 of sc16) into both halves, then the first
        // repeated in the low 128 bits and the second in the high ones.
        let spread = _mm256_setr_epi8(
            0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
        );
        for c in 0..8 {
            sc[c] = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(c as i32)), spread);
        }
        let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(blk.add(208).cast::<u16>().read_unaligned() as i32)));
        return KBlock { q, sc, sc16, mins16: _mm256_setzero_si256(), d, dmin: 0.0 };
    }
    let bytes = std::slice::from_raw_parts(blk.add(4), 12);
    let (scales, mins) = super::k4_scales_mins(bytes);
    let qs = blk.add(if F == Q5K { 48 } else { 16 });
    for c in 0..4 {
        let raw = _mm256_loadu_si256(qs.add(32 * c).cast());
        q[2 * c] = _mm256_and_si256(raw, low);
        q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), low);
    }
    if F == Q5K {
        // Bit c of qh[l] is the fifth bit of value l of sub-block c.
        let qh = _mm256_loadu_si256(blk.add(16).cast());
        let one = _mm256_set1_epi8(1);
        for c in 0..8 {
            let bit = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(c as i32)), one);
            q[c] = _mm256_or_si256(q[c], _mm256_slli_epi16::<4>(bit));
        }
    }
    // Scale c as 16 i16 lanes: byte pair (2c, 2c + 1) of the widened scales, repeated.
    let sc_both = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64(scales.as_ptr().cast())));
    for c in 0..8 {
        sc[c] = _mm256_shuffle_epi8(sc_both, _mm256_set1_epi16((((2 * c + 1) << 8) | (2 * c)) as i16));
    }
    let m = _mm_loadl_epi64(mins.as_ptr().cast());
    let mins16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m, m));
    let dd = halves(blk);
    KBlock { q, sc, sc16: _mm256_setzero_si256(), mins16, d: _mm_cvtss_f32(dd), dmin: _mm_cvtss_f32(_mm_movehdup_ps(dd)) }
}

/// Raw views of a validated job (see the module's safety note).
struct Tile {
    w: *const u8,
    row_bytes: usize,
    nb: usize,
    qs: *const i8,
    k: usize,
    d: *const f32,
    s: *const f32,
    n: usize,
    out: *mut f32,
    out_stride: usize,
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q_matmul<const F: u8>(p: &Tile, rows: usize) {
    let mut r = 0;
    if p.n == 1 {
        while r + 4 <= rows {
            decode::<F, 4>(p, r);
            r += 4;
        }
        while r < rows {
            decode::<F, 1>(p, r);
            r += 1;
        }
        return;
    }
    while r + PREFILL_RM <= rows {
        token_tiles::<F, PREFILL_RM>(p, r);
        r += PREFILL_RM;
    }
    while r < rows {
        token_tiles::<F, 1>(p, r);
        r += 1;
    }
}

/// All tokens for rows `r0..r0 + RM`, four at a time.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn token_tiles<const F: u8, const RM: usize>(p: &Tile, r0: usize) {
    let mut t = 0;
    while t + 4 <= p.n {
        prefill_tile::<F, RM, 4>(p, r0, t);
        t += 4;
    }
    match p.n - t {
        3 => prefill_tile::<F, RM, 3>(p, r0, t),
        2 => prefill_tile::<F, RM, 2>(p, r0, t),
        1 => prefill_tile::<F, RM, 1>(p, r0, t),
        _ => {}
    }
}

/// The n > 1 tile: out[t][r] for rows `r0..r0 + RM` and tokens `t0..t0 + RN` (RN ≤ 4). The four
/// tokens' integer sums of a row are reduced together (`hadd`), so the float step (convert,
/// scale by `d_w · d_x` with the tokens' `d_x` as one vector, add `m_w · s_x`) runs once per row
/// and block instead of once per (row, token), and a row needs a single xmm accumulator, which
/// leaves registers for 4-row tiles. Lane t's arithmetic does not depend on RN or RM, so results
/// do not depend on how rows or tokens are split.
#[inline]
#[allow(clippy::needless_range_loop)] // r and t index several arrays and pointers at once
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn prefill_tile<const F: u8, const RM: usize, const RN: usize>(p: &Tile, r0: usize, t0: usize) {
    let block_bytes = block_bytes(F);
    let low = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    // Lane t = token t0 + t.
    let mut acc = [_mm_setzero_ps(); RM];
    let stream = t0 == 0 && p.n <= STREAM_MAX_TOKENS;
    for b in 0..p.nb {
        if stream {
            // As in `tile`: a few tokens stream the weights once; prefetch ahead.
            let share = p.w.wrapping_add((r0 + PREFETCH_TILES * RM) * p.row_bytes + b * RM * block_bytes);
            for line in (0..RM * block_bytes).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(share.wrapping_add(line).cast());
            }
        }
        let dx = load4::<RN>(p.d.add(b * p.n + t0));
        let sx = if F != Q8_0 { load4::<RN>(p.s.add(b * p.n + t0)) } else { _mm_setzero_ps() };
        let mut a = [_mm256_setzero_si256(); RN];
        for t in 0..RN {
            a[t] = _mm256_loadu_si256(p.qs.add((t0 + t) * p.k + b * 32).cast());
        }
        for r in 0..RM {
            let blk = p.w.add((r0 + r) * p.row_bytes + b * block_bytes);
            let (wq, wsign, dw, mw);
            if F == Q4_1 || F == Q5_1 {
                let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(blk.cast::<i32>().read_unaligned()));
                dw = _mm_broadcastss_ps(dm);
                mw = _mm_permute_ps::<0x55>(dm);
                wq = if F == Q5_1 { q5_quants(blk.add(4), low) } else { nibbles(blk.add(4), low) };
                wsign = wq;
            } else {
                let d = _mm_cvtph_ps(_mm_cvtsi32_si128(blk.cast::<u16>().read_unaligned() as i32));
                dw = _mm_broadcastss_ps(d);
                if F == Q4_0 || F == Q5_0 {
                    mw = _mm_mul_ps(dw, _mm_set1_ps(if F == Q5_0 { -16.0 } else { -8.0 }));
                    wq = if F == Q5_0 { q5_quants(blk.add(2), low) } else { nibbles(blk.add(2), low) };
                    wsign = wq;
                } else {
                    mw = _mm_setzero_ps();
                    wsign = _mm256_loadu_si256(blk.add(2).cast());
                    wq = _mm256_sign_epi8(wsign, wsign);
                }
            }
            let mut isum = [_mm256_setzero_si256(); 4];
            for t in 0..RN {
                let at = if F == Q8_0 { _mm256_sign_epi8(a[t], wsign) } else { a[t] };
                isum[t] = _mm256_madd_epi16(_mm256_maddubs_epi16(wq, at), ones);
            }
            // [Σ isum[0], Σ isum[1], Σ isum[2], Σ isum[3]]
            let h = _mm256_hadd_epi32(_mm256_hadd_epi32(isum[0], isum[1]), _mm256_hadd_epi32(isum[2], isum[3]));
            let sums = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
            acc[r] = _mm_fmadd_ps(_mm_mul_ps(dw, dx), _mm_cvtepi32_ps(sums), acc[r]);
            if F != Q8_0 {
                acc[r] = _mm_fmadd_ps(mw, sx, acc[r]);
            }
        }
    }
    for r in 0..RM {
        let mut v = [0f32; 4];
        _mm_storeu_ps(v.as_mut_ptr(), acc[r]);
        for t in 0..RN {
            *p.out.add((t0 + t) * p.out_stride + r0 + r) = v[t];
        }
    }
}

/// `N` ≤ 4 consecutive f32 from `p` into the low lanes, zeros above.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load4<const N: usize>(p: *const f32) -> __m128 {
    if N == 4 {
        _mm_loadu_ps(p)
    } else {
        let mut v = [0f32; 4];
        for (i, v) in v.iter_mut().enumerate().take(N) {
            *v = *p.add(i);
        }
        _mm_loadu_ps(v.as_ptr())
    }
}

/// Decode (n = 1): rows `r0..r0 + RM` (RM ≤ 4) for the one token. The rows' integer sums are
/// reduced together (`hadd`, lane = row) and the float step is then, per lane and block, exactly
/// `prefill_tile`'s per lane: `acc = fma(d_w·d_x, Σq_w·q_x, acc)`, then `acc = fma(m_w, s_x, acc)`.
/// So a token's output does not depend on how many tokens share the call (batch-invariant).
/// The rows' f16 scales are converted together, one vector per block.
#[inline]
#[allow(clippy::needless_range_loop)] // r indexes several arrays and pointers at once
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn decode<const F: u8, const RM: usize>(p: &Tile, r0: usize) {
    let block_bytes = block_bytes(F);
    let low = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    // Lane r = row r0 + r; lanes past RM stay zero and are never stored.
    let mut acc = _mm_setzero_ps();
    for b in 0..p.nb {
        // Decode streams the weights once from memory, and the interleaved rows defeat the
        // hardware prefetcher: prefetch every cache line of this step's share of the tile
        // PREFETCH_TILES ahead (its rows are contiguous). Prefetch never faults, so running
        // past the last row is harmless.
        let share = p.w.wrapping_add((r0 + PREFETCH_TILES * RM) * p.row_bytes + b * RM * block_bytes);
        for line in (0..RM * block_bytes).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(share.wrapping_add(line).cast());
        }
        let a = _mm256_loadu_si256(p.qs.add(b * 32).cast());
        let mut isum = [_mm256_setzero_si256(); 4];
        // f16 scales of the rows: (d, m) pairs for Q4_1, d for the others.
        let mut h = [0u32; 4];
        for r in 0..RM {
            let blk = p.w.add((r0 + r) * p.row_bytes + b * block_bytes);
            let (wq, at) = match F {
                Q4_1 => (nibbles(blk.add(4), low), a),
                Q4_0 => (nibbles(blk.add(2), low), a),
                Q5_1 => (q5_quants(blk.add(4), low), a),
                Q5_0 => (q5_quants(blk.add(2), low), a),
                _ => {
                    // |w| · (a with w's sign) = w · a, within maddubs' i16 range.
                    let w = _mm256_loadu_si256(blk.add(2).cast());
                    (_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
                }
            };
            h[r] = if F == Q4_1 || F == Q5_1 { blk.cast::<u32>().read_unaligned() } else { blk.cast::<u16>().read_unaligned() as u32 };
            isum[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(wq, at), ones);
        }
        // [Σ isum[0], Σ isum[1], Σ isum[2], Σ isum[3]]
        let hs = _mm256_hadd_epi32(_mm256_hadd_epi32(isum[0], isum[1]), _mm256_hadd_epi32(isum[2], isum[3]));
        let sums = _mm_add_epi32(_mm256_castsi256_si128(hs), _mm256_extracti128_si256::<1>(hs));
        let (dw, mw);
        if F == Q4_1 || F == Q5_1 {
            // [d0, m0, d1, m1 | d2, m2, d3, m3]
            let dm = _mm256_cvtph_ps(_mm_setr_epi32(h[0] as i32, h[1] as i32, h[2] as i32, h[3] as i32));
            let (lo, hi) = (_mm256_castps256_ps128(dm), _mm256_extractf128_ps::<1>(dm));
            dw = _mm_shuffle_ps::<0b10_00_10_00>(lo, hi);
            mw = _mm_shuffle_ps::<0b11_01_11_01>(lo, hi);
        } else {
            let hd = _mm_setr_epi16(h[0] as i16, h[1] as i16, h[2] as i16, h[3] as i16, 0, 0, 0, 0);
            dw = _mm_cvtph_ps(hd);
            // Q4_0: m_w = -8·d_w (Q5_0: -16·d_w), as `prefill_tile` computes it; Q8_0 has no m term.
            mw = match F {
                Q4_0 => _mm_mul_ps(dw, _mm_set1_ps(-8.0)),
                Q5_0 => _mm_mul_ps(dw, _mm_set1_ps(-16.0)),
                _ => _mm_setzero_ps(),
            };
        }
        acc = _mm_fmadd_ps(_mm_mul_ps(dw, _mm_set1_ps(*p.d.add(b))), _mm_cvtepi32_ps(sums), acc);
        if F != Q8_0 {
            acc = _mm_fmadd_ps(mw, _mm_set1_ps(*p.s.add(b)), acc);
        }
    }
    let mut v = [0f32; 4];
    _mm_storeu_ps(v.as_mut_ptr(), acc);
    for r in 0..RM {
        *p.out.add(r0 + r) = v[r];
    }
}

/// 16 bytes of packed nibbles → 32 bytes: elements 0..16 (low nibbles), then 16..32 (high).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles(qs: *const u8, low: __m256i) -> __m256i {
    let raw = _mm_loadu_si128(qs.cast());
    _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16::<4>(raw), raw), low)
}

/// A Q5_0/Q5_1 block's 32 quants (0..32) in value order: the nibbles at `qh + 4` (as
/// [`nibbles`]), with bit j of the u32 at `qh` as value j's fifth bit (ggml's
/// `bytes_from_bits_32`: each byte keeps its bit of the broadcast word).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_quants(qh: *const u8, low: __m256i) -> __m256i {
    let bits = _mm256_set1_epi32(qh.cast::<i32>().read_unaligned());
    let spread = _mm256_shuffle_epi8(bits, _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0));
    let set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe)), _mm256_set1_epi64x(-1));
    _mm256_or_si256(nibbles(qh.add(4), low), _mm256_and_si256(set, _mm256_set1_epi8(0x10)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// Float weights (F = 0: f32, 1: f16, 2: bf16) against f32 activations, one (row, token) dot
/// at a time; no model nib ships has float matrices on its hot path.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn float_matmul<const F: u8>(job: &Job, x: &[f32], out: &mut [f32]) {
    let elem = if F == 0 { 4 } else { 2 };
    let k = job.k;
    for r in 0..job.rows {
        let w = job.w.as_ptr().add(r * job.row_bytes);
        for t in 0..job.n {
            let xp = x.as_ptr().add(t * k);
            let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = 0;
            while i + 16 <= k {
                a0 = _mm256_fmadd_ps(load_float::<F>(w, i), _mm256_loadu_ps(xp.add(i)), a0);
                a1 = _mm256_fmadd_ps(load_float::<F>(w, i + 8), _mm256_loadu_ps(xp.add(i + 8)), a1);
                i += 16;
            }
            if i + 8 <= k {
                a0 = _mm256_fmadd_ps(load_float::<F>(w, i), _mm256_loadu_ps(xp.add(i)), a0);
                i += 8;
            }
            let mut sum = hsum(_mm256_add_ps(a0, a1));
            while i < k {
                let b = w.add(i * elem);
                let wv = match F {
                    0 => b.cast::<f32>().read_unaligned(),
                    1 => half::f16::from_bits(b.cast::<u16>().read_unaligned()).to_f32(),
                    _ => f32::from_bits((b.cast::<u16>().read_unaligned() as u32) << 16),
                };
                sum += wv * *xp.add(i);
                i += 1;
            }
            *out.as_mut_ptr().add(t * job.out_stride + r) = sum;
        }
    }
}

/// 8 weights from element `i` of a float row, as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_float<const F: u8>(w: *const u8, i: usize) -> __m256 {
    match F {
        0 => _mm256_loadu_ps(w.add(i * 4).cast()),
        1 => _mm256_cvtph_ps(_mm_loadu_si128(w.add(i * 2).cast())),
        _ => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(w.add(i * 2).cast())))),
    }
}

/// ggml's x86 `quantize_row_q8_0/1`, block by block: `x` (whole blocks of 32) into `qs`, plus
/// each block's unrounded `d = amax / 127` and `Σq`. Bit-identical to `acts::quantize_q8_scalar`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_q8(x: &[f32], qs: &mut [i8], d: &mut [f32], sums: &mut [i32]) {
    let sign = _mm256_set1_ps(-0.0);
    // packs works within 128-bit lanes; this puts the 8 groups of 4 bytes back in order.
    let perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let blocks = x.chunks_exact(32).zip(qs.chunks_exact_mut(32));
    for ((xb, qb), (d, sum)) in blocks.zip(d.iter_mut().zip(sums.iter_mut())) {
        let p = xb.as_ptr();
        let v = [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)), _mm256_loadu_ps(p.add(16)), _mm256_loadu_ps(p.add(24))];
        let mut m = _mm256_andnot_ps(sign, v[0]);
        for vi in &v[1..] {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, *vi));
        }
        let m4 = _mm_max_ps(_mm256_extractf128_ps::<1>(m), _mm256_castps256_ps128(m));
        let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
        *d = amax / 127.0;
        let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        let mut q = [_mm256_setzero_si256(); 4];
        for (q, vi) in q.iter_mut().zip(v) {
            *q = _mm256_cvtps_epi32(_mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(vi, id)));
        }
        let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        *sum = _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s)));
        let packed = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256(qb.as_mut_ptr().cast(), _mm256_permutevar8x32_epi32(packed, perm));
    }
}
