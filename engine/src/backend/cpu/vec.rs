//! f32 vector helpers for the CPU backend's non-matmul ops: axpy over f16 values for attention,
//! softmax, SiLU and RMSNorm. Each has a portable version and an AVX2+FMA version chosen at run
//! time (wasm builds with simd128 get theirs from LLVM's auto-vectorisation of the portable code).
//! All functions assume equal lengths; callers slice their inputs to match.

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
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return;
    }
    let sum = exp_shifted(x, max);
    if sum > 0.0 {
        let inv = 1.0 / sum;
        x.iter_mut().for_each(|v| *v *= inv);
    }
}

/// x ← exp(x − shift); returns Σ x.
fn exp_shifted(x: &mut [f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { exp_shifted_avx2(x, shift) };
    }
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

/// exp(x) for 8 lanes, within about 2 ulp of `f32::exp` on [-87, 88]: x = n·ln2 + r with
/// |r| ≤ ln2/2, exp(r) by a degree-6 polynomial, 2ⁿ put into the exponent bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp256(x: __m256) -> __m256 {
    let x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.37)), _mm256_set1_ps(-87.33));
    let n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // ln2 split in two so that n·ln2_hi is exact.
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_145_75), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428_606_8e-6), r);
    let mut q = _mm256_set1_ps(1.0 / 720.0);
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0 / 120.0));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0 / 24.0));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0 / 6.0));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(0.5));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0));
    let bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    _mm256_mul_ps(q, _mm256_castsi256_ps(bits))
}

/// out[i] = silu(gate[i]) · up[i], silu(g) = g / (1 + e^(−g)).
pub fn silu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { silu_mul_avx2(gate, up, out) };
    }
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
/// GELU with the tanh approximation, in ggml's f32 arithmetic (`ggml_gelu_f32`).
pub fn gelu(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const GELU_COEF_A: f32 = 0.044715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)).tanh())
}

pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    // Summed in f64, as ggml does, so that long rows lose nothing.
    let ss: f64 = x.iter().map(|v| (*v as f64) * (*v as f64)).sum();
    let mean = (ss / x.len().max(1) as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, x), w) in out.iter_mut().zip(x).zip(w) {
        *o = x * scale * w;
    }
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
