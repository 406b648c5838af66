//! f32 vector helpers for the CPU backend's non-matmul ops: axpy over f16 values for attention,
//! softmax, SiLU, RMSNorm, LayerNorm and GELU. Each has a portable version and an AVX2+FMA version chosen at run
//! time (wasm builds with simd128 get theirs from LLVM's auto-vectorisation of the portable code,
//! except where it leaves calls per element: exp (softmax, SiLU), the max and the f16 rounding
//! of attention's probabilities have simd128 versions, without relaxed-simd so that both wasm
//! builds compute the same bits).
//! All functions assume equal lengths; callers slice their inputs to match.

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use std::arch::wasm32::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use half::f16;

/// Whether this CPU has AVX2, FMA and F16C: the same detection the matmul kernels use.
#[cfg(target_arch = "x86_64")]
pub fn has_avx2() -> bool {
    super::kernels::Isa::best() == super::kernels::Isa::Avx2
}

/// y[i] += a·x[i] with `x` in f16 (the KV cache's values).
pub fn axpy_f16(y: &mut [f32], a: f32, x: &[f16]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2, FMA and F16C were detected.
        return unsafe { axpy_f16_avx2(y, a, x) };
    }
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x.to_f32();
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn axpy_f16_avx2(y: &mut [f32], a: f32, x: &[f16]) {
    let n = y.len().min(x.len());
    let (py, px) = (y.as_mut_ptr(), x.as_ptr());
    let va = _mm256_set1_ps(a);
    let mut i = 0;
    while i + 8 <= n {
        let xv = _mm256_cvtph_ps(_mm_loadu_si128(px.add(i) as *const __m128i));
        _mm256_storeu_ps(py.add(i), _mm256_fmadd_ps(va, xv, _mm256_loadu_ps(py.add(i))));
        i += 8;
    }
    while i < n {
        *py.add(i) += a * (*px.add(i)).to_f32();
        i += 1;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum256(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// In place: x ← exp(x − max) / Σ exp(x − max).
pub fn softmax(x: &mut [f32]) {
    let max = max(x);
    if !max.is_finite() {
        return;
    }
    let sum = exp_shifted(x, max);
    if sum > 0.0 {
        let inv = 1.0 / sum;
        x.iter_mut().for_each(|v| *v *= inv);
    }
}

/// The four f32 lanes of `v`.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn lanes(v: v128) -> [f32; 4] {
    [f32x4_extract_lane::<0>(v), f32x4_extract_lane::<1>(v), f32x4_extract_lane::<2>(v), f32x4_extract_lane::<3>(v)]
}

/// The largest value of x, ignoring NaNs (−∞ if none), as `fold(f32::NEG_INFINITY, f32::max)`.
fn max(x: &[f32]) -> f32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let (x, m) = {
        let mut chunks = x.chunks_exact(4);
        let mut m = f32x4_splat(f32::NEG_INFINITY);
        for c in &mut chunks {
            // SAFETY: `c` holds four f32. `pmax(m, v)` is `m < v ? v : m`: a NaN never replaces m.
            m = f32x4_pmax(m, unsafe { v128_load(c.as_ptr().cast()) });
        }
        (chunks.remainder(), lanes(m).into_iter().fold(f32::NEG_INFINITY, f32::max))
    };
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let m = f32::NEG_INFINITY;
    x.iter().copied().fold(m, f32::max)
}

/// x ← exp(x − shift); returns Σ x.
fn exp_shifted(x: &mut [f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { exp_shifted_avx2(x, shift) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let (x, mut sum) = {
        let vs = f32x4_splat(shift);
        let mut acc = f32x4_splat(0.0);
        let mut chunks = x.chunks_exact_mut(4);
        for c in &mut chunks {
            // SAFETY: `c` holds four f32.
            unsafe {
                let e = exp128(f32x4_sub(v128_load(c.as_ptr().cast()), vs));
                v128_store(c.as_mut_ptr().cast(), e);
                acc = f32x4_add(acc, e);
            }
        }
        let l = lanes(acc);
        (chunks.into_remainder(), (l[0] + l[1]) + (l[2] + l[3]))
    };
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - shift).exp();
        sum += *v;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_shifted_avx2(x: &mut [f32], shift: f32) -> f32 {
    let n = x.len();
    let p = x.as_mut_ptr();
    let vs = _mm256_set1_ps(shift);
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        let e = exp256(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), vs));
        _mm256_storeu_ps(p.add(i), e);
        acc = _mm256_add_ps(acc, e);
        i += 8;
    }
    let mut sum = hsum256(acc);
    while i < n {
        *p.add(i) = (*p.add(i) - shift).exp();
        sum += *p.add(i);
        i += 1;
    }
    sum
}

/// The vector exps' constants: the input range (beyond it exp under- or overflows f32), ln2
/// split in two so that n·ln2_hi is exact (ln2_hi has 16 significant bits), and exp(r)'s Taylor
/// polynomial for |r| ≤ ln2/2, highest degree first.
#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
mod expf {
    pub const RANGE: (f32, f32) = (-87.33, 88.37);
    pub const LN2_HI: f32 = 0.693_145_75;
    pub const LN2_LO: f32 = 1.428_606_8e-6;
    pub const POLY: [f32; 7] = [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0];
}

/// exp(x) for 8 lanes, within about 2 ulp of `f32::exp` on [-87, 88]: x = n·ln2 + r with
/// |r| ≤ ln2/2, exp(r) by a degree-6 polynomial, 2ⁿ put into the exponent bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp256(x: __m256) -> __m256 {
    let x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(expf::RANGE.1)), _mm256_set1_ps(expf::RANGE.0));
    let n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(expf::LN2_HI), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(expf::LN2_LO), r);
    let mut q = _mm256_set1_ps(expf::POLY[0]);
    for c in &expf::POLY[1..] {
        q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(*c));
    }
    let bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    _mm256_mul_ps(q, _mm256_castsi256_ps(bits))
}

/// [`exp256`] for 4 lanes without FMA (relaxed-simd's may or may not fuse): the same range
/// reduction and polynomial.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn exp128(x: v128) -> v128 {
    let x = f32x4_pmax(f32x4_pmin(x, f32x4_splat(expf::RANGE.1)), f32x4_splat(expf::RANGE.0));
    let n = f32x4_nearest(f32x4_mul(x, f32x4_splat(std::f32::consts::LOG2_E)));
    let r = f32x4_sub(x, f32x4_mul(n, f32x4_splat(expf::LN2_HI)));
    let r = f32x4_sub(r, f32x4_mul(n, f32x4_splat(expf::LN2_LO)));
    let mut q = f32x4_splat(expf::POLY[0]);
    for c in &expf::POLY[1..] {
        q = f32x4_add(f32x4_mul(q, r), f32x4_splat(*c));
    }
    let bits = i32x4_shl(i32x4_add(i32x4_trunc_sat_f32x4(n), i32x4_splat(127)), 23);
    f32x4_mul(q, bits)
}

/// x ← x rounded to f16 and back (round to nearest even), as `f16::from_f32(x).to_f32()`.
pub fn round_f16(x: &mut [f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let x = {
        let mut chunks = x.chunks_exact_mut(4);
        for c in &mut chunks {
            // SAFETY: `c` holds four f32.
            unsafe {
                let v = v128_load(c.as_ptr().cast());
                if let Some(r) = round_f16x4(v) {
                    v128_store(c.as_mut_ptr().cast(), r);
                } else {
                    c.iter_mut().for_each(|x| *x = f16::from_f32(*x).to_f32());
                }
            }
        }
        chunks.into_remainder()
    };
    x.iter_mut().for_each(|x| *x = f16::from_f32(*x).to_f32());
}

/// Four f32 rounded to f16 precision, or `None` if a lane is beyond f16's largest finite value
/// (or inf/NaN), left to `half`. f16 normals (|x| ≥ 2⁻¹⁴) keep 10 mantissa bits: the bits
/// rounded to nearest even with integer adds; below that f16 has a fixed step of 2⁻²⁴, which
/// `(|x| + 0.5) − 0.5` rounds to (the sum lies in [0.5, 1), where f32's step is 2⁻²⁴).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn round_f16x4(x: v128) -> Option<v128> {
    let a = f32x4_abs(x);
    if !u32x4_all_true(f32x4_lt(a, f32x4_splat(65504.0))) {
        return None;
    }
    let odd = v128_and(u32x4_shr(a, 13), u32x4_splat(1));
    let normal = v128_and(i32x4_add(i32x4_add(a, u32x4_splat(0xfff)), odd), u32x4_splat(!0x1fff));
    let small = f32x4_sub(f32x4_add(a, f32x4_splat(0.5)), f32x4_splat(0.5));
    let r = v128_bitselect(small, normal, f32x4_lt(a, f32x4_splat(f32::from_bits(0x3880_0000)))); // 2⁻¹⁴
    Some(v128_or(r, v128_and(x, u32x4_splat(0x8000_0000))))
}

/// out[i] = silu(gate[i]) · up[i], silu(g) = g / (1 + e^(−g)).
pub fn silu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { silu_mul_avx2(gate, up, out) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let (gate, up, out) = {
        let n = out.len().min(gate.len()).min(up.len());
        let mut chunks = out[..n].chunks_exact_mut(4);
        for (i, o) in (&mut chunks).enumerate() {
            // SAFETY: 4i + 4 <= n, the length of all three slices' prefixes used.
            unsafe {
                let g = v128_load(gate.as_ptr().add(4 * i).cast());
                let s = f32x4_div(g, f32x4_add(f32x4_splat(1.0), exp128(f32x4_neg(g))));
                v128_store(o.as_mut_ptr().cast(), f32x4_mul(s, v128_load(up.as_ptr().add(4 * i).cast())));
            }
        }
        let done = n - chunks.into_remainder().len();
        (&gate[done..], &up[done..], &mut out[done..])
    };
    for ((o, g), u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + (-g).exp()) * u;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_mul_avx2(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let n = out.len().min(gate.len()).min(up.len());
    let (pg, pu, po) = (gate.as_ptr(), up.as_ptr(), out.as_mut_ptr());
    let one = _mm256_set1_ps(1.0);
    let mut i = 0;
    while i + 8 <= n {
        let g = _mm256_loadu_ps(pg.add(i));
        let e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), g));
        let s = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_storeu_ps(po.add(i), _mm256_mul_ps(s, _mm256_loadu_ps(pu.add(i))));
        i += 8;
    }
    while i < n {
        let g = *pg.add(i);
        *po.add(i) = g / (1.0 + (-g).exp()) * *pu.add(i);
        i += 1;
    }
}

/// out = x / sqrt(mean(x²) + eps) · w.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    // Summed in f64, as ggml does, so that long rows lose nothing.
    let ss: f64 = x.iter().map(|v| (*v as f64) * (*v as f64)).sum();
    let mean = (ss / x.len().max(1) as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, x), w) in out.iter_mut().zip(x).zip(w) {
        *o = x * scale * w;
    }
}

/// out = (x − mean) / sqrt(var + eps) · w + b, as ggml's `norm` then `mul` and `add`: the mean and
/// the variance summed in f64.
pub fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len().max(1) as f64;
    let mean = (x.iter().map(|&v| v as f64).sum::<f64>() / n) as f32;
    let var = (x.iter().map(|&v| ((v - mean) * (v - mean)) as f64).sum::<f64>() / n) as f32;
    let scale = 1.0 / (var + eps).sqrt();
    for (((o, x), w), b) in out.iter_mut().zip(x).zip(w).zip(b) {
        *o = (x - mean) * scale * w + b;
    }
}

/// GELU, tanh approximation: 0.5·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²))), with ggml's cut-offs
/// (x ≤ −10 → 0, x ≥ 10 → x) where the curve equals them in f32 anyway.
pub fn gelu(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044_715;
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + COEF_A * x * x)).tanh())
    }
}

/// [`gelu`] as ggml's CPU computes it: a table indexed by the input rounded to f16, holding
/// outputs rounded to f16.
pub fn gelu_f16(x: f32) -> f32 {
    if x <= -10.0 || x >= 10.0 {
        return gelu(x);
    }
    f16::from_f32(gelu(f16::from_f32(x).to_f32())).to_f32()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 8.0 - 4.0
            })
            .collect()
    }

    #[test]
    fn simd_matches_portable() {
        for n in [1, 7, 8, 15, 16, 17, 64, 100, 577] {
            let a = data(n, n as u32);
            let b = data(n, n as u32 + 99);

            let mut s = a.clone();
            softmax(&mut s);
            let max = a.iter().copied().fold(f32::MIN, f32::max);
            let z: f64 = a.iter().map(|v| ((v - max) as f64).exp()).sum();
            for i in 0..n {
                let want = ((a[i] - max) as f64).exp() / z;
                assert!((s[i] as f64 - want).abs() < 2e-6 * (1.0 + want), "softmax n={n} i={i}");
            }

            let h: Vec<f16> = b.iter().map(|v| f16::from_f32(*v)).collect();
            let mut y = a.clone();
            axpy_f16(&mut y, -1.5, &h);
            for i in 0..n {
                assert!((y[i] - (a[i] - 1.5 * h[i].to_f32())).abs() < 1e-5);
            }

            let mut o = vec![f32::NAN; n];
            silu_mul(&a, &b, &mut o);
            for i in 0..n {
                let g = a[i] as f64;
                let want = g / (1.0 + (-g).exp()) * b[i] as f64;
                assert!((o[i] as f64 - want).abs() < 1e-5 * (1.0 + want.abs()), "silu n={n} i={i}");
            }
        }
    }
}
