//! wasm32 simd128 kernels (compiled in when the build enables `+simd128`; wasm has no run-time
//! feature detection).
//!
//! Same tiling and algebra as `avx2.rs`. simd128 has no u8 × i8 multiply-add, so quants are
//! widened to i16 and multiplied with `i32x4_dot_i16x8`; each activation block is widened once
//! per tile and reused by every row, each weight block once and reused by every token. Built with
//! `+relaxed-simd` as well (the browser's second module, see xtask/src/web.rs), 4-bit blocks
//! take relaxed-simd's i8 × i7 dot instead (`block_dot`): about half the instructions, the same
//! exact integer sums; so does Q8_0 decode (the output projection), with the activations' signs
//! moved onto the weights (`SignedActs`). No FMA (relaxed madd may or may not fuse), so the scale step is a
//! multiply and an add. f16 scales
//! are converted with a branch-light bit trick (`f16_to_f32`) rather than `half`'s generic path.
//! Batch invariance as in `avx2.rs`: decode and the token tiles run the same f32 operations per
//! (row, token), block after block (`acc += (d_w·d_x)·Σq_w·q_x`, then `acc += m_w·s_x`).
//!
//! Safety: the raw pointers come from a validated [`Job`] (see mod.rs): rows `0..rows` of
//! `row_bytes`, tokens `0..n` of `k` quants, scales (k / 32, n), outputs `t * out_stride + r`.

use core::arch::wasm32::*;

use super::acts::ActsData;
use super::{Format, Job};

use super::tags::{block_bytes, Q4K, Q4_0, Q4_1, Q5K, Q5_0, Q5_1, Q6K, Q8_0};

/// Rows per prefill tile (× 4 tokens): each widened activation block serves this many rows.
const PREFILL_RM: usize = 4;

pub(super) fn matmul(format: Format, job: &Job, acts: &ActsData, out: &mut [f32]) {
    match acts {
        ActsData::F32(x) => match format {
            Format::F32 => float_matmul(job, x, out),
            // f16/bf16 weights: no model nib ships multiplies with them; the scalar path is enough.
            _ => super::scalar::matmul(format, job, acts, out),
        },
        ActsData::Q8 { qs, d, s, .. } => {
            let p = Tile {
                w: job.w.as_ptr(),
                w_last: job.w.len().saturating_sub(1),
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
            // SAFETY: `p` describes a validated job (module note).
            unsafe {
                match format {
                    Format::Q4_0 => q_matmul::<Q4_0>(&p, job.rows),
                    Format::Q4_1 => q_matmul::<Q4_1>(&p, job.rows),
                    Format::Q5_0 => q5_matmul::<Q5_0>(&p, job.rows),
                    Format::Q5_1 => q5_matmul::<Q5_1>(&p, job.rows),
                    _ => q_matmul::<Q8_0>(&p, job.rows),
                }
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
            // SAFETY: `p` describes a validated job (module note).
            unsafe {
                match format {
                    Format::Q4K => k_matmul::<Q4K>(&p, job.rows),
                    Format::Q5K => k_matmul::<Q5K>(&p, job.rows),
                    _ => k_matmul::<Q6K>(&p, job.rows),
                }
            }
        }
    }
}

/// Raw views of a validated K-quant job, as in `avx2.rs`: Q8_K activations, `nb` super-blocks
/// per row, `d` (nb, n), `bsums` (n, k / 16).
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

/// A K-quant super-block unpacked for the integer dot (as `avx2.rs`'s `KBlock`): `q[g]` the 16
/// values of group `g` as unsigned bytes (Q6_K: `q + 32`), `sc[g]` their scale, the scales and
/// mins per 16 values as i16x8 pairs, and the f16 `d`, `dmin`.
struct KBlock {
    q: [v128; 16],
    sc: [i16; 16],
    sc16: [v128; 2],
    mins16: [v128; 2],
    d: f32,
    dmin: f32,
}

unsafe fn k_matmul<const F: u8>(p: &KTile, rows: usize) {
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

/// out[t][r] for row `r` and tokens `t0..t0 + RN` (RN ≤ 4; decode is RN = 1): each super-block
/// unpacked once, dotted with every token's block. Per lane (token) and super-block the float
/// step is `acc += (d_w·d_x)·isum`, then (Q4_K, Q5_K) `acc += (dmin_w·d_x)·(-msum)`, whatever
/// RN: batch-invariant.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // t indexes several arrays and pointers at once
unsafe fn k_tile<const F: u8, const RN: usize>(p: &KTile, r: usize, t0: usize) {
    let block_bytes = block_bytes(F);
    let mut acc = f32x4_splat(0.0);
    for b in 0..p.nb {
        let kb = k_unpack::<F>(p.w.add(r * p.row_bytes + b * block_bytes));
        // Group g's weights times its scale as i16x8 pairs (|q·sc| ≤ 63·128 fits).
        let scaled: [v128; 32] = if RN > 1 { scaled(&kb.q, kb.sc) } else { [i16x8_splat(0); 32] };
        let mut isum = [i32x4_splat(0); 4];
        let mut msum = [i32x4_splat(0); 4];
        for t in 0..RN {
            let a = p.qs.add((t0 + t) * p.k + b * 256);
            let mut s = i32x4_splat(0);
            if RN == 1 {
                // One token: widen each group as it is used, scale its i32 sums.
                for g in 0..16 {
                    let (q, av) = (kb.q[g], v128_load(a.add(16 * g).cast()));
                    let dot = i32x4_add(
                        i32x4_dot_i16x8(u16x8_extend_low_u8x16(q), i16x8_extend_low_i8x16(av)),
                        i32x4_dot_i16x8(u16x8_extend_high_u8x16(q), i16x8_extend_high_i8x16(av)),
                    );
                    s = i32x4_add(s, i32x4_mul(dot, i32x4_splat(kb.sc[g] as i32)));
                }
            } else {
                // Several tokens: the scaled, widened weights once for all of them (the same
                // exact integers).
                for g in 0..16 {
                    let av = v128_load(a.add(16 * g).cast());
                    s = i32x4_add(s, i32x4_dot_i16x8(scaled[2 * g], i16x8_extend_low_i8x16(av)));
                    s = i32x4_add(s, i32x4_dot_i16x8(scaled[2 * g + 1], i16x8_extend_high_i8x16(av)));
                }
            }
            let bs = p.bsums.add((t0 + t) * (p.k / 16) + b * 16);
            let bs = [v128_load(bs.cast()), v128_load(bs.add(8).cast())];
            if F == Q6K {
                // Σ sc·Σ (q - 32)·a = Σ sc·Σ q·a - 32·Σ sc·Σ a, with Σ a per 16 from Q8_K.
                let corr = i32x4_add(i32x4_dot_i16x8(kb.sc16[0], bs[0]), i32x4_dot_i16x8(kb.sc16[1], bs[1]));
                s = i32x4_sub(s, i32x4_shl(corr, 5));
            } else {
                msum[t] = i32x4_add(i32x4_dot_i16x8(kb.mins16[0], bs[0]), i32x4_dot_i16x8(kb.mins16[1], bs[1]));
            }
            isum[t] = s;
        }
        let dx = load4::<RN>(p.d.add(b * p.n + t0));
        acc = f32x4_add(acc, f32x4_mul(f32x4_mul(f32x4_splat(kb.d), dx), f32x4_convert_i32x4(transpose_add(isum))));
        if F != Q6K {
            let neg = i32x4_neg(transpose_add(msum));
            acc = f32x4_add(acc, f32x4_mul(f32x4_mul(f32x4_splat(kb.dmin), dx), f32x4_convert_i32x4(neg)));
        }
    }
    let mut v = [0f32; 4];
    v128_store(v.as_mut_ptr().cast(), acc);
    for t in 0..RN {
        *p.out.add((t0 + t) * p.out_stride + r) = v[t];
    }
}

/// Groups of 16 unsigned bytes widened to i16x8 pairs and multiplied by their group's scale.
#[inline(always)]
fn scaled(q: &[v128; 16], sc: [i16; 16]) -> [v128; 32] {
    core::array::from_fn(|i| {
        let g = i / 2;
        let wide = if i % 2 == 0 { u16x8_extend_low_u8x16(q[g]) } else { u16x8_extend_high_u8x16(q[g]) };
        i16x8_mul(wide, i16x8_splat(sc[g]))
    })
}

/// The super-block at `blk` unpacked (see [`KBlock`]).
#[inline(always)]
unsafe fn k_unpack<const F: u8>(blk: *const u8) -> KBlock {
    let low = u8x16_splat(0x0F);
    let mut q = [u8x16_splat(0); 16];
    let ld = |off: usize| v128_load(blk.add(off).cast());
    if F == Q6K {
        let three = u8x16_splat(3);
        for h in 0..2 {
            for j in 0..2 {
                // Values 128h + 32g + 16j + (0..16) of group g: nibble g / 2 of ql, bits 2g of qh.
                let (ql0, ql1, qh) = (ld(64 * h + 16 * j), ld(64 * h + 32 + 16 * j), ld(128 + 32 * h + 16 * j));
                let hi = |g: u32| u8x16_shl(v128_and(u8x16_shr(qh, 2 * g), three), 4);
                q[8 * h + j] = v128_or(v128_and(ql0, low), hi(0));
                q[8 * h + 2 + j] = v128_or(v128_and(ql1, low), hi(1));
                q[8 * h + 4 + j] = v128_or(u8x16_shr(ql0, 4), hi(2));
                q[8 * h + 6 + j] = v128_or(u8x16_shr(ql1, 4), hi(3));
            }
        }
        let scales = ld(192);
        let sc: [i8; 16] = core::mem::transmute(scales);
        return KBlock {
            q,
            sc: sc.map(|s| s as i16),
            sc16: [i16x8_extend_low_i8x16(scales), i16x8_extend_high_i8x16(scales)],
            mins16: [i16x8_splat(0); 2],
            d: f16_to_f32(read_u16(blk.add(208))),
            dmin: 0.0,
        };
    }
    let (scales, mins) = super::k4_scales_mins(core::slice::from_raw_parts(blk.add(4), 12));
    let qs = if F == Q5K { 48 } else { 16 };
    for c in 0..4 {
        for j in 0..2 {
            // Sub-block 2c: low nibbles of bytes 32c.., sub-block 2c + 1: the high ones.
            let raw = ld(qs + 32 * c + 16 * j);
            q[4 * c + j] = v128_and(raw, low);
            q[4 * c + 2 + j] = u8x16_shr(raw, 4);
        }
    }
    if F == Q5K {
        let (qh, one) = ([ld(16), ld(32)], u8x16_splat(1));
        for g in 0..16 {
            let bit = v128_and(u8x16_shr(qh[g % 2], (g / 2) as u32), one);
            q[g] = v128_or(q[g], u8x16_shl(bit, 4));
        }
    }
    // Each sub-block's min twice: one per 16 values, as the per-16 sums come.
    let m8 = v128_load64_zero(mins.as_ptr().cast());
    let dup = i8x16_shuffle::<0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7>(m8, m8);
    KBlock {
        q,
        sc: core::array::from_fn(|g| scales[g / 2] as i16),
        sc16: [i16x8_splat(0); 2],
        mins16: [u16x8_extend_low_u8x16(dup), u16x8_extend_high_u8x16(dup)],
        d: f16_to_f32(read_u16(blk)),
        dmin: f16_to_f32(read_u16(blk.add(2))),
    }
}

struct Tile {
    w: *const u8,
    /// Offset of the last weight byte: the read-ahead in `decode` and `tile` stays within the slice.
    w_last: usize,
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

unsafe fn q_matmul<const F: u8>(p: &Tile, rows: usize) {
    let mut r = 0;
    if p.n == 1 {
        while r + 4 <= rows {
            decode::<F, 4>(p, r);
            r += 4;
        }
        // The same arithmetic per lane as above (and as `tile`), so a row's result does not
        // depend on how the caller splits rows between threads or tokens between calls.
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

unsafe fn token_tiles<const F: u8, const RM: usize>(p: &Tile, r0: usize) {
    let mut t = 0;
    while t + 4 <= p.n {
        tile::<F, RM, 4>(p, r0, t);
        t += 4;
    }
    match p.n - t {
        3 => tile::<F, RM, 3>(p, r0, t),
        2 => tile::<F, RM, 2>(p, r0, t),
        1 => tile::<F, RM, 1>(p, r0, t),
        _ => {}
    }
}

/// Decode (one token), rows `r0..r0 + RM` (RM ≤ 4). The rows' scales are converted and
/// multiplied together in one vector (lane = row), which removes most of the scalar work per
/// block that otherwise costs as much as the integer dot products, and the rows' integer sums
/// are reduced together (`transpose_add`), so one float step per block serves four rows. That
/// step is, per lane, exactly `tile`'s per lane: `acc += (d_w·d_x)·Σq_w·q_x`, then
/// `acc += m_w·s_x`; a token's outputs do not depend on how many tokens share the call.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // r indexes several arrays at once
unsafe fn decode<const F: u8, const RM: usize>(p: &Tile, r0: usize) {
    let block_bytes = block_bytes(F);
    let low = u8x16_splat(0x0F);
    // Lane = row; lanes past RM are computed on row r0 and never stored.
    let mut acc = f32x4_splat(0.0);
    // Lanes past RM repeat row r0 (read, never stored).
    let rows = [0, 1, 2, 3].map(|r| p.w.add((r0 + if r < RM { r } else { 0 }) * p.row_bytes));
    // Decode streams the weights from memory. The 4 interleaved rows defeat the hardware
    // prefetcher (4 KiB pages, strided accesses) and wasm has no prefetch instruction, so the
    // loop read one cache line at a time, latency-bound. Instead, each block step reads one byte
    // of every cache line of its share of the tile three tiles ahead (rows r0 + 3·RM .. r0 + 4·RM, which
    // are contiguous): those misses overlap with this tile's arithmetic.
    let ahead = (r0 + 3 * RM) * p.row_bytes;
    for b in 0..p.nb {
        let blk = rows.map(|row| row.add(b * block_bytes));
        let share = ahead + b * RM * block_bytes;
        for line in (0..RM * block_bytes).step_by(64) {
            core::ptr::read_volatile(p.w.add((share + line).min(p.w_last)));
        }
        // (d, m) of the four rows: f16 d in the low half of each lane, m (Q4_1) in the high half.
        let dm = if F == Q4_1 {
            let w = blk.map(|b| b.cast::<u32>().read_unaligned());
            u32x4(w[0], w[1], w[2], w[3])
        } else {
            let w = blk.map(|b| read_u16(b) as u32);
            u32x4(w[0], w[1], w[2], w[3])
        };
        let dw = f16x4_to_f32(dm);
        let scale = f32x4_mul(dw, f32x4_splat(*p.d.add(b)));
        let a = p.qs.add(b * 32);
        let (x0, x1) = (v128_load(a.cast()), v128_load(a.add(16).cast()));
        let mut isum = [i32x4_splat(0); 4];
        #[cfg(target_feature = "relaxed-simd")]
        if F == Q8_0 {
            let x = SignedActs::new(x0, x1);
            for r in 0..RM {
                isum[r] = x.dot(v128_load(blk[r].add(2).cast()), v128_load(blk[r].add(18).cast()));
            }
        }
        if F != Q8_0 || !cfg!(target_feature = "relaxed-simd") {
            let a16 = operand::<F>(x0, x1);
            for r in 0..RM {
                let (lo, hi) = match F {
                    Q4_1 | Q4_0 => {
                        let raw = v128_load(blk[r].add(if F == Q4_1 { 4 } else { 2 }).cast());
                        (v128_and(raw, low), u8x16_shr(raw, 4))
                    }
                    _ => (v128_load(blk[r].add(2).cast()), v128_load(blk[r].add(18).cast())),
                };
                isum[r] = block_dot::<F>(&operand::<F>(lo, hi), &a16);
            }
        }
        acc = f32x4_add(acc, f32x4_mul(scale, f32x4_convert_i32x4(transpose_add(isum))));
        if F != Q8_0 {
            let mw = if F == Q4_1 { f16x4_to_f32(u32x4_shr(dm, 16)) } else { f32x4_mul(dw, f32x4_splat(-8.0)) };
            acc = f32x4_add(acc, f32x4_mul(mw, f32x4_splat(*p.s.add(b))));
        }
    }
    let mut v = [0f32; 4];
    v128_store(v.as_mut_ptr().cast(), acc);
    for r in 0..RM {
        *p.out.add(r0 + r) = v[r];
    }
}

/// Four f16 (low 16 bits of each u32 lane) → f32, as `f16_to_f32` does one.
#[inline(always)]
fn f16x4_to_f32(h: v128) -> v128 {
    let em = v128_and(h, u32x4_splat(0x7FFF));
    let sign = i32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16);
    let shifted = i32x4_shl(em, 13);
    let finite = f32x4_mul(shifted, f32x4_splat(f32::from_bits(0x7780_0000)));
    let special = v128_or(shifted, u32x4_splat(0x7F80_0000));
    let mag = v128_bitselect(special, finite, i32x4_ge(em, i32x4_splat(0x7C00)));
    v128_or(mag, sign)
}

/// Scalar f16 bits → f32: normals and subnormals by one exact multiply by 2^112, inf/NaN apart.
#[inline(always)]
fn f16_to_f32(h: u16) -> f32 {
    let em = (h & 0x7FFF) as u32;
    let sign = ((h & 0x8000) as u32) << 16;
    let mag = if em >= 0x7C00 {
        f32::from_bits((em << 13) | 0x7F80_0000)
    } else {
        f32::from_bits(em << 13) * f32::from_bits(0x7780_0000)
    };
    f32::from_bits(mag.to_bits() | sign)
}

#[inline(always)]
unsafe fn read_u16(p: *const u8) -> u16 {
    p.cast::<u16>().read_unaligned()
}

/// out[t][r] for rows `r0..r0 + RM` and tokens `t0..t0 + RN` (RN ≤ 4). The four tokens' integer
/// sums of a row are reduced together by a transpose-add, so the float step (convert, scale by
/// `d_w · d_x` with the four tokens' `d_x` loaded as one vector, add `m_w · s_x`) runs once per
/// row and block instead of once per (row, token), and each row needs one accumulator.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // r and t index several arrays and pointers at once
unsafe fn tile<const F: u8, const RM: usize, const RN: usize>(p: &Tile, r0: usize, t0: usize) {
    let block_bytes = block_bytes(F);
    let low = u8x16_splat(0x0F);
    // Lane t = token t0 + t.
    let mut acc = [f32x4_splat(0.0); RM];
    // A few tokens (candidates decoded together): the weights stream from memory once, during
    // the first token tile; read ahead as `decode` does.
    let stream = t0 == 0 && p.n <= 8;
    let ahead = (r0 + 3 * RM) * p.row_bytes;
    for b in 0..p.nb {
        if stream {
            let share = ahead + b * RM * block_bytes;
            for line in (0..RM * block_bytes).step_by(64) {
                core::ptr::read_volatile(p.w.add((share + line).min(p.w_last)));
            }
        }
        let dx = load4::<RN>(p.d.add(b * p.n + t0));
        let sx = if F != Q8_0 { load4::<RN>(p.s.add(b * p.n + t0)) } else { f32x4_splat(0.0) };
        // Each token's block as four i16x8 (elements 0..8, 8..16, 16..24, 24..32).
        let mut a16 = [[i16x8_splat(0); 4]; RN];
        for t in 0..RN {
            let a = p.qs.add((t0 + t) * p.k + b * 32);
            a16[t] = operand::<F>(v128_load(a.cast()), v128_load(a.add(16).cast()));
        }
        for r in 0..RM {
            let blk = p.w.add((r0 + r) * p.row_bytes + b * block_bytes);
            let dw = f16_to_f32(read_u16(blk));
            let (lo, hi, mw) = match F {
                Q4_1 => {
                    let raw = v128_load(blk.add(4).cast());
                    (v128_and(raw, low), u8x16_shr(raw, 4), f16_to_f32(read_u16(blk.add(2))))
                }
                Q4_0 => {
                    let raw = v128_load(blk.add(2).cast());
                    (v128_and(raw, low), u8x16_shr(raw, 4), -8.0 * dw)
                }
                _ => (v128_load(blk.add(2).cast()), v128_load(blk.add(18).cast()), 0.0),
            };
            let w = operand::<F>(lo, hi);
            let mut isum = [i32x4_splat(0); 4];
            for t in 0..RN {
                isum[t] = block_dot::<F>(&w, &a16[t]);
            }
            let sums = f32x4_convert_i32x4(transpose_add(isum));
            acc[r] = f32x4_add(acc[r], f32x4_mul(f32x4_mul(f32x4_splat(dw), dx), sums));
            if F != Q8_0 {
                acc[r] = f32x4_add(acc[r], f32x4_mul(f32x4_splat(mw), sx));
            }
        }
    }
    for r in 0..RM {
        let mut v = [0f32; 4];
        v128_store(v.as_mut_ptr().cast(), acc[r]);
        for t in 0..RN {
            *p.out.add((t0 + t) * p.out_stride + r0 + r) = v[t];
        }
    }
}

/// Whether this build runs `F`'s blocks through relaxed-simd's i8 × i7 dot product: the 4-bit
/// formats, whose nibbles are 7-bit (Q8_0's signed weights are not).
const fn relaxed<const F: u8>() -> bool {
    cfg!(target_feature = "relaxed-simd") && (F == Q4_0 || F == Q4_1)
}

/// 32 quants of one block, values 0..16 in `lo` and 16..32 in `hi` (i8, or u8 below 16), as
/// [`block_dot`] takes them: widened to four i16x8 for `i32x4_dot_i16x8`, or (relaxed) as they are.
/// Widened once per block and shared: activations by every row, weights by every token.
#[inline(always)]
fn operand<const F: u8>(lo: v128, hi: v128) -> [v128; 4] {
    if relaxed::<F>() {
        [lo, hi, lo, hi]
    } else {
        [i16x8_extend_low_i8x16(lo), i16x8_extend_high_i8x16(lo), i16x8_extend_low_i8x16(hi), i16x8_extend_high_i8x16(hi)]
    }
}

/// Σ q_w·q_x over one block of 32, as four i32 lanes (to be added by [`transpose_add`]), from
/// the weights' and the activations' [`operand`]s. The sum is exact either way, so relaxed and
/// plain builds give the same results bit for bit.
#[inline(always)]
fn block_dot<const F: u8>(w: &[v128; 4], a: &[v128; 4]) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    if relaxed::<F>() {
        // i8 activations × nibbles (0..16: 7-bit, so every engine computes the same), adjacent
        // products summed in i16: |Σ| ≤ 4·128·15 < 2¹⁵ after the add, so nothing saturates.
        let p = i16x8_add(i16x8_relaxed_dot_i8x16_i7x16(a[0], w[0]), i16x8_relaxed_dot_i8x16_i7x16(a[1], w[1]));
        return i32x4_extadd_pairwise_i16x8(p);
    }
    i32x4_add(
        i32x4_add(i32x4_dot_i16x8(w[0], a[0]), i32x4_dot_i16x8(w[1], a[1])),
        i32x4_add(i32x4_dot_i16x8(w[2], a[2]), i32x4_dot_i16x8(w[3], a[3])),
    )
}

/// A Q8_0 activation block for relaxed-simd's i8 × i7 dot, whose second operand must be 7-bit:
/// the sign moves onto the weight. `w ^ m` with `m = x < 0 ? -1 : 0` is `w` or `-w - 1` (never
/// overflows, -128 ↔ 127), so `Σ (w ^ m)·|x| = Σ w·x - Σ_{x<0} |x|`, and `fix` adds that back:
/// the exact integer sum, as the simd128 build's i16 path gives it, for any weights. |x| ≤ 127:
/// the activation quantizer never writes -128.
#[cfg(target_feature = "relaxed-simd")]
struct SignedActs {
    abs: [v128; 2],
    neg: [v128; 2],
    /// Σ_{x<0} |x| spread over four i32 lanes.
    fix: v128,
}

#[cfg(target_feature = "relaxed-simd")]
impl SignedActs {
    #[inline(always)]
    fn new(lo: v128, hi: v128) -> Self {
        let zero = i8x16_splat(0);
        let (abs, neg) = ([i8x16_abs(lo), i8x16_abs(hi)], [i8x16_lt(lo, zero), i8x16_lt(hi, zero)]);
        let (one, ones) = (i8x16_splat(1), i16x8_splat(1));
        let fix = i32x4_add(
            i32x4_dot_i16x8(i16x8_relaxed_dot_i8x16_i7x16(v128_and(neg[0], one), abs[0]), ones),
            i32x4_dot_i16x8(i16x8_relaxed_dot_i8x16_i7x16(v128_and(neg[1], one), abs[1]), ones),
        );
        SignedActs { abs, neg, fix }
    }

    /// Σ w·x over the block (weights 0..16 in `lo`, 16..32 in `hi`) as four i32 lanes. Each i16
    /// lane holds two products, |Σ| ≤ 2·128·127 < 2¹⁵: nothing saturates. The i16 pairs are
    /// widened by a dot with ones, not `extadd_pairwise`: LLVM fuses that and the add into
    /// `i32x4.relaxed_dot_i8x16_i7x16_add_s`, whose sums with negative `w ^ m` came out wrong
    /// in Node 20's V8 (the kernel test caught it).
    #[inline(always)]
    fn dot(&self, lo: v128, hi: v128) -> v128 {
        let ones = i16x8_splat(1);
        let p0 = i16x8_relaxed_dot_i8x16_i7x16(v128_xor(lo, self.neg[0]), self.abs[0]);
        let p1 = i16x8_relaxed_dot_i8x16_i7x16(v128_xor(hi, self.neg[1]), self.abs[1]);
        i32x4_add(i32x4_add(i32x4_dot_i16x8(p0, ones), i32x4_dot_i16x8(p1, ones)), self.fix)
    }
}

/// `[Σ v[0], Σ v[1], Σ v[2], Σ v[3]]` (each over its four lanes).
#[inline(always)]
fn transpose_add(v: [v128; 4]) -> v128 {
    let ab = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(v[0], v[1]), i32x4_shuffle::<2, 6, 3, 7>(v[0], v[1]));
    let cd = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(v[2], v[3]), i32x4_shuffle::<2, 6, 3, 7>(v[2], v[3]));
    i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(ab, cd), i32x4_shuffle::<2, 3, 6, 7>(ab, cd))
}

/// `N` ≤ 4 consecutive f32 from `p` into the low lanes, zeros above.
#[inline(always)]
unsafe fn load4<const N: usize>(p: *const f32) -> v128 {
    if N == 4 {
        v128_load(p.cast())
    } else {
        let mut v = [0f32; 4];
        for (i, v) in v.iter_mut().enumerate().take(N) {
            *v = *p.add(i);
        }
        v128_load(v.as_ptr().cast())
    }
}

/// f32 weights against f32 activations, one (row, token) dot at a time.
fn float_matmul(job: &Job, x: &[f32], out: &mut [f32]) {
    for (r, wrow) in job.w.chunks_exact(job.row_bytes).take(job.rows).enumerate() {
        for (t, xrow) in x.chunks_exact(job.k).enumerate() {
            let (mut a0, mut a1) = (f32x4_splat(0.0), f32x4_splat(0.0));
            let mut i = 0;
            // SAFETY: i + 8 ≤ k: 8 f32 from row `r` (k * 4 bytes) and from `xrow` (k values).
            unsafe {
                while i + 8 <= job.k {
                    let w = wrow.as_ptr().add(i * 4);
                    let xp = xrow.as_ptr().add(i);
                    a0 = f32x4_add(a0, f32x4_mul(v128_load(w.cast()), v128_load(xp.cast())));
                    a1 = f32x4_add(a1, f32x4_mul(v128_load(w.add(16).cast()), v128_load(xp.add(4).cast())));
                    i += 8;
                }
            }
            let v = f32x4_add(a0, a1);
            let mut sum = (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v))
                + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v));
            for (b, &xv) in wrow[i * 4..].chunks_exact(4).zip(&xrow[i..]) {
                sum += f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * xv;
            }
            if let Some(o) = out.get_mut(t * job.out_stride + r) {
                *o = sum;
            }
        }
    }
}

/// Same as `acts::quantize_q8_scalar` (ggml's x86 scheme), four lanes at a time; bit-identical.
pub(super) fn quantize_q8(x: &[f32], qs: &mut [i8], d: &mut [f32], sums: &mut [i32]) {
    let blocks = x.chunks_exact(32).zip(qs.chunks_exact_mut(32));
    for ((xb, qb), (d, sum)) in blocks.zip(d.iter_mut().zip(sums.iter_mut())) {
        // SAFETY: xb has 32 f32 (8 loads of 4), qb 32 bytes (2 stores of 16).
        unsafe {
            let p = xb.as_ptr();
            let mut v = [f32x4_splat(0.0); 8];
            for (i, v) in v.iter_mut().enumerate() {
                *v = v128_load(p.add(4 * i).cast());
            }
            let mut m = f32x4_abs(v[0]);
            for vi in &v[1..] {
                m = f32x4_pmax(m, f32x4_abs(*vi));
            }
            let amax = f32x4_extract_lane::<0>(m)
                .max(f32x4_extract_lane::<1>(m))
                .max(f32x4_extract_lane::<2>(m).max(f32x4_extract_lane::<3>(m)));
            *d = amax / 127.0;
            let id = f32x4_splat(if amax != 0.0 { 127.0 / amax } else { 0.0 });
            let mut q = [i32x4_splat(0); 8];
            for (q, vi) in q.iter_mut().zip(v) {
                *q = i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(vi, id)));
            }
            let s = i32x4_add(
                i32x4_add(i32x4_add(q[0], q[1]), i32x4_add(q[2], q[3])),
                i32x4_add(i32x4_add(q[4], q[5]), i32x4_add(q[6], q[7])),
            );
            *sum = i32x4_extract_lane::<0>(s)
                + i32x4_extract_lane::<1>(s)
                + i32x4_extract_lane::<2>(s)
                + i32x4_extract_lane::<3>(s);
            let lo = i8x16_narrow_i16x8(i16x8_narrow_i32x4(q[0], q[1]), i16x8_narrow_i32x4(q[2], q[3]));
            let hi = i8x16_narrow_i16x8(i16x8_narrow_i32x4(q[4], q[5]), i16x8_narrow_i32x4(q[6], q[7]));
            v128_store(qb.as_mut_ptr().cast(), lo);
            v128_store(qb.as_mut_ptr().add(16).cast(), hi);
        }
    }
}

/// Q5_0/Q5_1 weights (Gemma 3's fallback for narrow Q4_K_M tensors): row by row, each block
/// unpacked once and dotted with up to four tokens. Per (row, token) and block the float step
/// is `acc += (d_w·d_x)·Σq_w·q_x`, then `acc += m_w·s_x` (Q5_0: `m_w = -16·d_w`), whatever n:
/// batch-invariant.
unsafe fn q5_matmul<const F: u8>(p: &Tile, rows: usize) {
    for r in 0..rows {
        let mut t = 0;
        while t < p.n {
            let rn = (p.n - t).min(4);
            q5_tile::<F>(p, r, t, rn);
            t += rn;
        }
    }
}

/// out[t][r] for row `r` and tokens `t0..t0 + rn` (rn ≤ 4) of Q5_0/Q5_1 weights.
#[inline(always)]
unsafe fn q5_tile<const F: u8>(p: &Tile, r: usize, t0: usize, rn: usize) {
    let block_bytes = block_bytes(F);
    let mut acc = [0f32; 4];
    for b in 0..p.nb {
        let blk = p.w.add(r * p.row_bytes + b * block_bytes);
        let dw = f16_to_f32(read_u16(blk));
        let (qh, mw) = if F == Q5_1 { (blk.add(4), f16_to_f32(read_u16(blk.add(2)))) } else { (blk.add(2), -16.0 * dw) };
        let (lo, hi) = q5_unpack(qh);
        let w = [i16x8_extend_low_u8x16(lo), i16x8_extend_high_u8x16(lo), i16x8_extend_low_u8x16(hi), i16x8_extend_high_u8x16(hi)];
        for (t, acc) in acc.iter_mut().enumerate().take(rn) {
            let a = p.qs.add((t0 + t) * p.k + b * 32);
            let (a0, a1) = (v128_load(a.cast()), v128_load(a.add(16).cast()));
            let s = i32x4_add(
                i32x4_add(i32x4_dot_i16x8(w[0], i16x8_extend_low_i8x16(a0)), i32x4_dot_i16x8(w[1], i16x8_extend_high_i8x16(a0))),
                i32x4_add(i32x4_dot_i16x8(w[2], i16x8_extend_low_i8x16(a1)), i32x4_dot_i16x8(w[3], i16x8_extend_high_i8x16(a1))),
            );
            let isum = i32x4_extract_lane::<0>(s) + i32x4_extract_lane::<1>(s) + i32x4_extract_lane::<2>(s) + i32x4_extract_lane::<3>(s);
            let (dx, sx) = (*p.d.add(b * p.n + t0 + t), *p.s.add(b * p.n + t0 + t));
            *acc += (dw * dx) * isum as f32;
            *acc += mw * sx;
        }
    }
    for (t, v) in acc.iter().enumerate().take(rn) {
        *p.out.add((t0 + t) * p.out_stride + r) = *v;
    }
}

/// A Q5 block's quants (0..32) from its u32 `qh` at `qh` and the nibbles after it: values
/// 0..16, then 16..32, as u8x16; bit j of `qh` is value j's fifth bit.
#[inline(always)]
unsafe fn q5_unpack(qh: *const u8) -> (v128, v128) {
    let raw = v128_load(qh.add(4).cast());
    let bits = u32x4_splat(qh.cast::<u32>().read_unaligned());
    let mask = u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
    let fifth = |lo_byte: u8| {
        let spread = u8x16_swizzle(bits, u8x16(lo_byte, lo_byte, lo_byte, lo_byte, lo_byte, lo_byte, lo_byte, lo_byte, lo_byte + 1, lo_byte + 1, lo_byte + 1, lo_byte + 1, lo_byte + 1, lo_byte + 1, lo_byte + 1, lo_byte + 1));
        v128_and(u8x16_eq(v128_and(spread, mask), mask), u8x16_splat(0x10))
    };
    (v128_or(v128_and(raw, u8x16_splat(0x0F)), fifth(0)), v128_or(u8x16_shr(raw, 4), fifth(2)))
}
