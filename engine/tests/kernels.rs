//! Property tests of the CPU matmul kernels against the reference dequantization.
//!
//! Every case draws fresh random weights and activations from its own seed (never zeros),
//! poisons the output with NaN, and checks, with relative errors ‖out − ref‖₂ / ‖ref‖₂ over the
//! whole (n, rows) output:
//! - each instruction set against `dequantize(W) · x̂` in f64, x̂ being the 8-bit activations the
//!   kernel was given: ‖out − ref‖ ≤ 1e-5 · ‖Σ|terms|‖ (isolates the kernel from the quantization
//!   scheme; measured against Σ|terms| because Q4_1's m·s terms cancel most of the main terms);
//! - each instruction set against `dequantize(W) · x` with the exact f32 activations: ≤ 1e-2
//!   where activations are quantized to 8 bits (ggml's scheme; measured 4e-3 to 6e-3 on these
//!   data) once the output has ≥ 64 values and k ≥ 256 (on fewer or shorter dot products the
//!   ratio is dominated by one or two outputs and is noise; the check above still covers them);
//!   ≤ 2e-2 for the K-quants' Q8_K activations (one scale per 256 values); ≤ 1e-5 for f32
//!   activations;
//! - every SIMD kernel against the scalar kernel, ‖simd − scalar‖ ≤ 1e-5 · ‖Σ|terms|‖ (same
//!   integer sums, only the f32 summation order differs), and SIMD activation quantization
//!   bit-identical to the scalar one;
//! - row sub-ranges and a strided output, with untouched elements still NaN.
//! - batch invariance: within each instruction set, a full-batch matmul equals bit for bit the
//!   same tokens evaluated one at a time, in odd splits, and over split row ranges (prefill and
//!   token-by-token decode must give identical logits).
//!
//! A case that ever failed goes into `REGRESSION_CASES` and stays there.
//!
//! The reference arithmetic (`Precision::Reference`, what the GPU backend is tested against):
//! its matmul element by element within an f32 rounding of `dequantize(W) · x` in f64, its
//! attention within an f32 rounding of an f64 softmax over the same f16-rounded q, keys and
//! values (the default path, which rounds probabilities to f16, must miss that bound); both
//! through the backend on 2 threads, and bit for bit batch-invariant.

use std::sync::Arc;

use nib_engine::backend::cpu::kernels::{
    matmul_strided_with, matmul_with, prepare_with, Isa, QMatrix,
};
use nib_engine::backend::cpu::{reference, vec, CpuBackend, CpuTensor, Precision};
use nib_engine::backend::{AttnShape, Backend};
use nib_engine::gguf::ModelBytes;
use nib_engine::quant::{dequantize, GgmlType};

#[path = "common/random.rs"]
mod random;
use random::{random_weights, Rng};

/// Cases (seed, type, rows, k, n) that once failed. These five failed the test's first
/// tolerance design, not the kernels: a norm-relative bound on a few outputs near zero, and on
/// Q4_1 where the m·s terms cancel most of the main terms (hence the bounds relative to Σ|terms|
/// and the ≥ 64-output rule above).
const REGRESSION_CASES: &[(u64, GgmlType, usize, usize, usize)] = &[
    (1592590340, GgmlType::Q4_1, 1, 32, 5),
    (13631489, GgmlType::Q4_1, 576, 576, 1),
    (1592590528, GgmlType::Q8_0, 3, 64, 64),
    (1592590409, GgmlType::Q4_1, 1, 576, 1),
    (1592590630, GgmlType::Q4_0, 1, 32, 64),
];

const TYPES: [GgmlType; 8] =
    [GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q5_0, GgmlType::Q5_1];

/// The K-quants: 256-value super-blocks, so k is a multiple of 256 (they take Q8_K activations).
const K_TYPES: [GgmlType; 3] = [GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K];

/// Random activations (n, k): each token has its own magnitude, and a few outliers as real
/// hidden states do.
fn random_acts(rng: &mut Rng, n: usize, k: usize) -> Vec<f32> {
    let mut x = Vec::with_capacity(n * k);
    for _ in 0..n {
        let scale = 10f32.powf(rng.unit() * 2.0);
        for _ in 0..k {
            let outlier = if rng.next().is_multiple_of(499) { 4.0 } else { 1.0 };
            x.push(rng.unit() * scale * outlier);
        }
    }
    x
}

/// dequantize(W) · x̂ in f64 (n, rows), with x̂ = q · d (one `d` per `qb` values: 32, or 256
/// for Q8_K), plus for Q4_1 and Q5_1 the f16 rounding of s that ggml's Q8_1 carries into the m·s term:
/// m · (s − d·Σq) per block; and Σ|block terms|.
#[allow(clippy::too_many_arguments)]
fn quantized_reference(
    ty: GgmlType,
    wbytes: &[u8],
    wf: &[f32],
    rows: usize,
    k: usize,
    n: usize,
    (q, d, s, qb): (&[i8], &[f32], &[f32], usize),
) -> (Vec<f64>, Vec<f64>) {
    let nb = k / qb;
    let mut out = vec![0f64; n * rows];
    let mut magnitude = vec![0f64; n * rows];
    for t in 0..n {
        for r in 0..rows {
            let (mut sum, mut mag) = (0f64, 0f64);
            for b in 0..nb {
                let dx = d[b * n + t] as f64;
                let qs = &q[t * k + b * qb..t * k + (b + 1) * qb];
                let wrow = &wf[r * k + b * qb..r * k + (b + 1) * qb];
                let block: f64 = wrow.iter().zip(qs).map(|(&w, &q)| w as f64 * q as f64 * dx).sum();
                sum += block;
                mag += block.abs();
                if ty == GgmlType::Q4_1 || ty == GgmlType::Q5_1 {
                    let blk = &wbytes[(r * nb + b) * ty.type_size()..];
                    let m = half::f16::from_le_bytes([blk[2], blk[3]]).to_f64();
                    let qsum: i32 = qs.iter().map(|&q| q as i32).sum();
                    sum += m * (s[b * n + t] as f64 - dx * qsum as f64);
                    mag += (m * s[b * n + t] as f64).abs();
                }
            }
            out[t * rows + r] = sum;
            magnitude[t * rows + r] = mag;
        }
    }
    (out, magnitude)
}

fn diff_norm(a: &[f32], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(&a, &b)| (a as f64 - b).powi(2)).sum::<f64>().sqrt()
}

fn norm(a: &[f64]) -> f64 {
    a.iter().map(|a| a * a).sum::<f64>().sqrt()
}

fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(&a, &b)| (a as f64 - b).powi(2)).sum();
    let den: f64 = b.iter().map(|b| b * b).sum();
    (num / den).sqrt()
}

fn isas() -> Vec<Isa> {
    [Isa::Scalar, Isa::Avx2, Isa::Simd128].into_iter().filter(|i| i.available()).collect()
}

/// One case: every instruction set on (rows, k) weights of `ty` and n tokens.
fn check_case(seed: u64, ty: GgmlType, rows: usize, k: usize, n: usize) {
    let mut rng = Rng(seed);
    let wbytes = random_weights(&mut rng, ty, rows, k);
    let x = random_acts(&mut rng, n, k);
    let w = QMatrix::new(ty, rows, k, &wbytes).unwrap();
    let mut wf = vec![0f32; rows * k];
    dequantize(ty, &wbytes, &mut wf).unwrap();
    // ref (n, rows) in f64.
    let mut reference = vec![0f64; n * rows];
    let mut magnitude = vec![0f64; n * rows];
    for t in 0..n {
        for r in 0..rows {
            let terms = wf[r * k..(r + 1) * k].iter().zip(&x[t * k..(t + 1) * k]).map(|(&w, &x)| w as f64 * x as f64);
            reference[t * rows + r] = terms.clone().sum();
            magnitude[t * rows + r] = terms.map(f64::abs).sum();
        }
    }
    let quantized = !matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16);
    let ctx = format!("seed {seed} {} rows {rows} k {k} n {n}", ty.name());

    let mut scalar_out = Vec::new();
    let mut scalar_quants = None;
    for isa in isas() {
        let acts = prepare_with(isa, ty, &x, n, k).unwrap();
        let mut out = vec![f32::NAN; n * rows];
        matmul_with(isa, &w, &acts, 0..rows, &mut out).unwrap();
        assert!(out.iter().all(|v| v.is_finite()), "{ctx} {isa:?}: unwritten or non-finite output");

        // The kernel itself: against dequantize(W) · x̂ in f64, x̂ being the activations as the
        // kernel sees them (8-bit quants times their f16 scale, and for Q4_1 ggml's f16-rounded
        // s = d·Σq in the m·s term).
        // The bound is relative to the sum of |terms| (f32 rounding scales with it): Q4_1's
        // m·s terms largely cancel the main terms, so the result itself can be far smaller.
        let (exact, magnitude) = match acts.quants() {
            None => (reference.clone(), magnitude.clone()),
            Some((q, d, s)) => quantized_reference(ty, &wbytes, &wf, rows, k, n, (q, d, s, acts.quant_block())),
        };
        let err = diff_norm(&out, &exact) / norm(&magnitude);
        assert!(err <= 1e-5, "{ctx} {isa:?}: error {err:e} (relative to Σ|terms|) against the quantized-activation reference");

        // The scheme's accuracy against the exact f32 activations (measured ~4e-3 to 6e-3 on
        // these data; needs enough outputs for the norm to mean something).
        let err = rel_err(&out, &reference);
        if std::env::var_os("NIB_PRINT_ERR").is_some() {
            println!("ERR {} {isa:?} {err:e} rows {rows} k {k} n {n}", ty.name());
        }
        if !quantized || (rows * n >= 64 && k >= 256) {
            // Q8_K has one scale per 256 values, so one outlier coarsens a whole super-block:
            // measured up to 1.4e-2 on these data (ggml's scheme, not the kernel's error).
            let tol = match acts.quant_block() {
                1 => 1e-5,
                32 => 1e-2,
                _ => 2e-2,
            };
            assert!(err <= tol, "{ctx} {isa:?}: relative error {err:e} > {tol:e} against f32 activations");
        }

        let quants = acts.quants().map(|(q, d, s)| (q.to_vec(), d.to_vec(), s.to_vec()));
        if isa == Isa::Scalar {
            scalar_out = out.clone();
            scalar_quants = quants;
        } else {
            assert!(quants == scalar_quants, "{ctx} {isa:?}: activation quantization differs from scalar");
            let s64: Vec<f64> = scalar_out.iter().map(|&v| v as f64).collect();
            let diff = diff_norm(&out, &s64) / norm(&magnitude);
            assert!(diff <= 1e-5, "{ctx} {isa:?} vs scalar: difference {diff:e} relative to Σ|terms|");
        }

        // A sub-range of rows, written into a wider strided output: only its columns change.
        if rows >= 3 {
            let sub = 1..rows - 1;
            let stride = rows + 2;
            let mut wide = vec![f32::NAN; n * stride];
            matmul_strided_with(isa, &w, &acts, sub.clone(), &mut wide, stride).unwrap();
            for t in 0..n {
                for c in 0..stride {
                    let v = wide[t * stride + c];
                    if c < sub.len() {
                        assert_eq!(v, out[t * rows + sub.start + c], "{ctx} {isa:?}: sub-range t {t} c {c}");
                    } else {
                        assert!(v.is_nan(), "{ctx} {isa:?}: wrote outside its columns at t {t} c {c}");
                    }
                }
            }
            let mut narrow = vec![f32::NAN; n * sub.len()];
            matmul_with(isa, &w, &acts, sub.clone(), &mut narrow).unwrap();
            for t in 0..n {
                assert_eq!(&narrow[t * sub.len()..(t + 1) * sub.len()], &out[t * rows + sub.start..t * rows + sub.end]);
            }
        }
    }
}

/// Every (rows, k, n) of the given row counts and widths, with token counts 1..64.
fn shapes(ks: &[usize], rows: &[usize]) -> Vec<(usize, usize, usize)> {
    let mut v = Vec::new();
    for &k in ks {
        for &r in rows {
            for &n in &[1, 2, 3, 5, 7, 64] {
                v.push((r, k, n));
            }
        }
    }
    v
}

#[test]
fn every_format_and_shape_matches_reference() {
    let mut case = 0u64;
    for ty in TYPES {
        for (rows, k, n) in shapes(&[32, 64, 576, 1536], &[1, 3, 4, 5, 9, 17]) {
            case += 1;
            check_case(0x5EED_0000 + case, ty, rows, k, n);
        }
    }
}

#[test]
fn k_quants_match_reference() {
    let mut case = 0u64;
    for ty in K_TYPES {
        for (rows, k, n) in shapes(&[256, 512, 1536], &[1, 3, 5, 17]) {
            case += 1;
            check_case(0x4B_0000 + case, ty, rows, k, n);
        }
    }
    // A Q4_K_M model's down projection (1536 -> 576) and a 0.5B-shaped one (4864 -> 896).
    for (i, ty) in K_TYPES.into_iter().enumerate() {
        check_case(0x4B_1000 + i as u64, ty, 576, 1536, 13);
        check_case(0x4B_2000 + i as u64, ty, 896, 4864, 1);
    }
}

#[test]
fn default_model_shapes() {
    // A token batch through q (576 → 576), gate (576 → 1536), down (1536 → 576) and a slice of
    // the tied output matrix, with the model's types.
    for (i, (ty, rows, k)) in
        [(GgmlType::Q4_1, 576, 576), (GgmlType::Q4_1, 1536, 576), (GgmlType::Q4_1, 576, 1536), (GgmlType::Q8_0, 1000, 576)]
            .into_iter()
            .enumerate()
    {
        for n in [1, 13] {
            check_case(0xD0_0000 + i as u64 * 100 + n as u64, ty, rows, k, n);
        }
    }
}

#[test]
fn gemma3_shapes() {
    // Gemma 3 270M's Q5_0 q (640 → 1024) and gate (640 → 2048), one token and a batch.
    for (i, (ty, rows, k)) in [(GgmlType::Q5_0, 1024, 640), (GgmlType::Q5_0, 2048, 640)].into_iter().enumerate() {
        for n in [1, 13] {
            check_case(0x6E_0000 + i as u64 * 100 + n as u64, ty, rows, k, n);
        }
    }
}

#[test]
fn regression_cases() {
    for &(seed, ty, rows, k, n) in REGRESSION_CASES {
        check_case(seed, ty, rows, k, n);
    }
}

/// `matmul` of tokens `ts` (their own `prepare`), rows `rows`, as (ts.len(), rows.len()).
fn run_part(isa: Isa, w: &QMatrix, x: &[f32], k: usize, ts: std::ops::Range<usize>, rows: std::ops::Range<usize>) -> Vec<f32> {
    let acts = prepare_with(isa, w.ty, &x[ts.start * k..ts.end * k], ts.len(), k).unwrap();
    let mut out = vec![f32::NAN; ts.len() * rows.len()];
    matmul_with(isa, w, &acts, rows, &mut out).unwrap();
    out
}

/// Every instruction set on (rows, k) weights of `ty` and n tokens: the whole batch in one call
/// against, bit for bit, token splits (each token alone, 0..3 + 3..n, 0..1 + 1..6 + 6..n,
/// 0..5 + 5..n) and row splits (one call per row range, written strided into the full output).
fn check_batch_invariance(seed: u64, ty: GgmlType, rows: usize, k: usize, n: usize) {
    let mut rng = Rng(seed);
    let wbytes = random_weights(&mut rng, ty, rows, k);
    let x = random_acts(&mut rng, n, k);
    let w = QMatrix::new(ty, rows, k, &wbytes).unwrap();
    let ctx = format!("seed {seed} {} rows {rows} k {k} n {n}", ty.name());
    let same = |a: f32, b: f32| a.to_bits() == b.to_bits();
    for isa in isas() {
        // full (n, rows)
        let full = run_part(isa, &w, &x, k, 0..n, 0..rows);
        assert!(full.iter().all(|v| v.is_finite()), "{ctx} {isa:?}: unwritten output");
        let alone: Vec<usize> = (1..n).collect();
        for cuts in [alone, vec![3], vec![1, 6], vec![5]] {
            let bounds: Vec<usize> =
                std::iter::once(0).chain(cuts.into_iter().filter(|&c| c < n)).chain(std::iter::once(n)).collect();
            for ts in bounds.windows(2).map(|p| p[0]..p[1]) {
                let part = run_part(isa, &w, &x, k, ts.clone(), 0..rows);
                for (i, (&a, &b)) in part.iter().zip(&full[ts.start * rows..ts.end * rows]).enumerate() {
                    let (t, r) = (ts.start + i / rows, i % rows);
                    assert!(same(a, b), "{ctx} {isa:?}: tokens {ts:?} alone give {a:e}, the batch {b:e} at token {t} row {r}");
                }
            }
        }
        // Row splits, for the batch and for a single token (the decode path).
        for cut in [1, 3, 5] {
            if cut >= rows {
                continue;
            }
            for ts in [0..n, n - 1..n] {
                let acts = prepare_with(isa, ty, &x[ts.start * k..ts.end * k], ts.len(), k).unwrap();
                let mut out = vec![f32::NAN; ts.len() * rows];
                matmul_strided_with(isa, &w, &acts, 0..cut, &mut out, rows).unwrap();
                matmul_strided_with(isa, &w, &acts, cut..rows, &mut out[cut..], rows).unwrap();
                for (i, (&a, &b)) in out.iter().zip(&full[ts.start * rows..ts.end * rows]).enumerate() {
                    let (t, r) = (ts.start + i / rows, i % rows);
                    assert!(same(a, b), "{ctx} {isa:?}: rows split at {cut}, tokens {ts:?}: {a:e} vs batch {b:e} at token {t} row {r}");
                }
            }
        }
    }
}

#[test]
fn batch_invariance_bit_for_bit() {
    let mut case = 0u64;
    for ty in TYPES {
        for &(rows, k) in &[(1, 32), (5, 64), (17, 576), (64, 96)] {
            for n in [2, 3, 4, 5, 8, 9, 13] {
                case += 1;
                check_batch_invariance(0xB1_0000 + case, ty, rows, k, n);
            }
        }
    }
    // The default model's shapes and types, a prompt-sized batch.
    check_batch_invariance(0xB2_0001, GgmlType::Q4_1, 1536, 576, 37);
    check_batch_invariance(0xB2_0002, GgmlType::Q4_1, 576, 1536, 12);
    check_batch_invariance(0xB2_0003, GgmlType::Q8_0, 1003, 576, 11);
    check_batch_invariance(0xB2_0004, GgmlType::Q5_0, 2048, 640, 12);
    check_batch_invariance(0xB2_0005, GgmlType::Q5_1, 1024, 640, 9);
    for (i, ty) in K_TYPES.into_iter().enumerate() {
        for (j, n) in [2, 5, 9, 13].into_iter().enumerate() {
            check_batch_invariance(0xB3_0000 + 16 * i as u64 + j as u64, ty, 7, 512, n);
        }
        check_batch_invariance(0xB4_0000 + i as u64, ty, 576, 1536, 12);
    }
}

#[test]
fn bad_sizes_are_errors() {
    let mut rng = Rng(7);
    let wb = random_weights(&mut rng, GgmlType::Q4_1, 4, 64);
    assert!(QMatrix::new(GgmlType::Q4_1, 4, 64, &wb).is_ok());
    assert!(QMatrix::new(GgmlType::Q4_1, 4, 64, &wb[1..]).is_err());
    assert!(QMatrix::new(GgmlType::Q4_1, 5, 64, &wb).is_err());
    assert!(QMatrix::new(GgmlType::Q4_1, 8, 32, &wb).is_ok());
    assert!(QMatrix::new(GgmlType::Q4_1, 4, 32, &wb).is_err());
    assert!(QMatrix::new(GgmlType::Q4_1, 4, 48, &wb).is_err(), "cols not a multiple of 32");
    assert!(QMatrix::new(GgmlType::Q4_1, usize::MAX, 64, &wb).is_err(), "overflow");
    assert!(QMatrix::new(GgmlType::Q3K, 1, 256, &[0u8; 110]).is_err(), "no kernel for Q3_K");
    assert!(QMatrix::new(GgmlType::Q4K, 1, 256, &[0u8; 144]).is_ok());
    assert!(QMatrix::new(GgmlType::Q6K, 1, 288, &[0u8; 210]).is_err(), "cols not a multiple of 256");
    for isa in isas() {
        let x = random_acts(&mut rng, 2, 288);
        assert!(prepare_with(isa, GgmlType::Q4K, &x, 2, 288).is_err(), "k not a multiple of 256");
    }

    let w = QMatrix::new(GgmlType::Q4_1, 4, 64, &wb).unwrap();
    let x = random_acts(&mut rng, 2, 64);
    for isa in isas() {
        assert!(prepare_with(isa, GgmlType::Q4_1, &x, 2, 63).is_err());
        assert!(prepare_with(isa, GgmlType::Q4_1, &x[..100], 2, 50).is_err(), "k not a multiple of 32");
        assert!(prepare_with(isa, GgmlType::Q4_1, &x, 3, 64).is_err());
        let acts = prepare_with(isa, GgmlType::Q4_1, &x, 2, 64).unwrap();
        let mut out = vec![f32::NAN; 8];
        assert!(matmul_with(isa, &w, &acts, 0..4, &mut out).is_ok());
        assert!(matmul_with(isa, &w, &acts, 0..4, &mut out[..7]).is_err(), "out too short");
        assert!(matmul_with(isa, &w, &acts, 2..5, &mut out).is_err(), "rows past the end");
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 3..1;
        assert!(matmul_with(isa, &w, &acts, backwards, &mut out).is_err());
        assert!(matmul_strided_with(isa, &w, &acts, 0..4, &mut out, 3).is_err(), "stride < width");
        // Activations prepared for another weight type or width.
        let q8_acts = prepare_with(isa, GgmlType::Q8_0, &x, 2, 64).unwrap();
        assert!(matmul_with(isa, &w, &q8_acts, 0..4, &mut out).is_err());
        let x32 = random_acts(&mut rng, 2, 32);
        let narrow = prepare_with(isa, GgmlType::Q4_1, &x32, 2, 32).unwrap();
        assert!(matmul_with(isa, &w, &narrow, 0..4, &mut out).is_err());
        // Empty ranges are fine and write nothing.
        let mut none: [f32; 0] = [];
        assert!(matmul_with(isa, &w, &acts, 2..2, &mut none).is_ok());
    }
}

#[test]
fn q8_quantization_follows_ggml() {
    // amax = 127 gives d = 1 and q = x exactly; ties round to even as _mm256_round_ps does.
    let mut x = vec![0f32; 32];
    x[0] = 127.0;
    x[1] = -2.5;
    x[2] = 3.5;
    x[3] = -0.5;
    x[4] = 1.4;
    for isa in isas() {
        let acts = prepare_with(isa, GgmlType::Q4_1, &x, 1, 32).unwrap();
        let (q, d, s) = acts.quants().unwrap();
        assert_eq!(&q[..6], &[127, -2, 4, 0, 1, 0], "{isa:?}");
        assert_eq!(d, &[1.0]);
        assert_eq!(s, &[130.0]);
    }
    // All-zero blocks quantize to d = 0 rather than dividing by zero.
    for isa in isas() {
        let acts = prepare_with(isa, GgmlType::Q8_0, &[0f32; 64], 1, 64).unwrap();
        let (q, d, _) = acts.quants().unwrap();
        assert!(q.iter().all(|&q| q == 0) && d.iter().all(|&d| d == 0.0));
    }
}

#[test]
fn q8_k_quantization_follows_ggml() {
    // ggml's quantize_row_q8_K_ref: the first value of largest magnitude sets iscale = -127 / max
    // (sign kept), q = round-half-even(iscale · x) capped at 127, d = 1 / iscale in f32, and the
    // per-16 sums.
    let mut x = vec![0.25f32; 256];
    x[3] = -127.0;
    x[4] = 127.0; // same magnitude, later: does not replace x[3]
    x[5] = 2.5;
    x[6] = -3.5;
    x[20] = 0.5;
    for isa in isas() {
        for ty in K_TYPES {
            let acts = prepare_with(isa, ty, &x, 1, 256).unwrap();
            let (q, d, _) = acts.quants().unwrap();
            assert_eq!(acts.quant_block(), 256);
            // iscale = 1: q = round(x), ties to even.
            assert_eq!(&q[..7], &[0, 0, 0, -127, 127, 2, -4], "{isa:?}");
            assert_eq!(q[20], 0);
            assert_eq!(d, &[1.0]);
        }
        // A positive max flips the signs: iscale = -1, d = -1.
        let acts = prepare_with(isa, GgmlType::Q6K, &x.iter().map(|v| -v).collect::<Vec<_>>(), 1, 256).unwrap();
        let (q, d, _) = acts.quants().unwrap();
        assert_eq!(&q[3..7], &[-127, 127, 2, -4]);
        assert_eq!(d, &[-1.0]);
        // All zeros: d = 0, no division.
        let acts = prepare_with(isa, GgmlType::Q4K, &[0f32; 512], 1, 512).unwrap();
        let (q, d, _) = acts.quants().unwrap();
        assert!(q.iter().all(|&q| q == 0) && d.iter().all(|&d| d == 0.0));
    }
}

#[test]
fn best_isa_is_the_simd_one_where_built() {
    // Guards against the SIMD kernels silently not being compiled in or not being chosen, which
    // would leave every SIMD-vs-scalar check above vacuous. On every wasm32 build: one without
    // +simd128 (a RUSTFLAGS in the environment replaces .cargo/config.toml's) must fail here.
    #[cfg(target_arch = "wasm32")]
    {
        assert_eq!(Isa::best(), Isa::Simd128, "this wasm build lacks +simd128");
        // `cargo xtask test` runs the kernels again built with +relaxed-simd (the browser's
        // first module) and says so in NIB_EXPECT_RELAXED_SIMD: that build must have it.
        let expected = std::env::var_os("NIB_EXPECT_RELAXED_SIMD").is_some();
        assert_eq!(cfg!(target_feature = "relaxed-simd"), expected, "relaxed-simd compiled in (left) vs NIB_EXPECT_RELAXED_SIMD (right)");
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        assert_eq!(Isa::best(), Isa::Avx2);
    }
    println!("kernels use {:?}", Isa::best());
}

/// A CPU backend with no model bytes (the tests hand it tensors, not weights from a file).
fn backend(precision: Precision, threads: usize) -> CpuBackend {
    CpuBackend::with_precision(Arc::new(ModelBytes::Owned(Vec::new())), threads, precision)
}

/// The reference matmul on (rows, k) weights of `ty` and n tokens: every output within one f32
/// rounding of the f64 dot product of the dequantized row and the f32 activations (8-bit
/// activations or f32 sums would miss this by orders of magnitude), rows in sub-ranges equal to
/// the whole, each token alone equal to the batch, bit for bit.
fn check_reference_matmul(seed: u64, ty: GgmlType, rows: usize, k: usize, n: usize) {
    let mut rng = Rng(seed);
    let wbytes = random_weights(&mut rng, ty, rows, k);
    let x = random_acts(&mut rng, n, k);
    let w = QMatrix::new(ty, rows, k, &wbytes).unwrap();
    let mut wf = vec![0f32; rows * k];
    dequantize(ty, &wbytes, &mut wf).unwrap();
    let ctx = format!("reference seed {seed} {} rows {rows} k {k} n {n}", ty.name());
    let mut out = vec![f32::NAN; n * rows];
    reference::matmul(&w, &x, 0..rows, &mut out).unwrap();
    for t in 0..n {
        for r in 0..rows {
            let terms = || wf[r * k..(r + 1) * k].iter().zip(&x[t * k..(t + 1) * k]).map(|(&w, &x)| w as f64 * x as f64);
            let (want, mag): (f64, f64) = (terms().sum(), terms().map(f64::abs).sum());
            let got = out[t * rows + r] as f64;
            // Half an f32 ulp of the result, plus the f64 sum's own rounding.
            let tol = want.abs() * 2f64.powi(-24) + mag * 1e-13;
            assert!((got - want).abs() <= tol, "{ctx}: token {t} row {r}: {got:e} vs {want:e} (Σ|terms| {mag:e})");
        }
    }
    if rows >= 3 {
        let sub = 1..rows - 1;
        let mut part = vec![f32::NAN; n * sub.len()];
        reference::matmul(&w, &x, sub.clone(), &mut part).unwrap();
        for t in 0..n {
            assert_eq!(&part[t * sub.len()..(t + 1) * sub.len()], &out[t * rows + sub.start..t * rows + sub.end], "{ctx}: rows {sub:?}");
        }
    }
    for t in 0..n {
        let mut one = vec![f32::NAN; rows];
        reference::matmul(&w, &x[t * k..(t + 1) * k], 0..rows, &mut one).unwrap();
        let same = one.iter().zip(&out[t * rows..(t + 1) * rows]).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{ctx}: token {t} alone differs from the batch");
    }
}

#[test]
fn reference_matmul_is_exact_to_f32() {
    let mut case = 0u64;
    for ty in TYPES {
        let ks: &[usize] = if ty.block_size() == 1 { &[37, 130, 576] } else { &[32, 96, 576, 1536] };
        for &k in ks {
            for (rows, n) in [(1, 1), (7, 1), (33, 3), (130, 5), (9, 70)] {
                case += 1;
                check_reference_matmul(0xEF_0000 + case, ty, rows, k, n);
            }
        }
    }
    // A bad call is an error, not a panic.
    let wb = random_weights(&mut Rng(0xEF_1000), GgmlType::Q4_1, 4, 64);
    let w = QMatrix::new(GgmlType::Q4_1, 4, 64, &wb).unwrap();
    let x = vec![0.5f32; 128];
    let mut out = vec![0f32; 8];
    assert!(reference::matmul(&w, &x, 0..4, &mut out).is_ok());
    assert!(reference::matmul(&w, &x[..127], 0..4, &mut out).is_err(), "x not whole rows");
    assert!(reference::matmul(&w, &x, 2..5, &mut out).is_err(), "rows past the end");
    assert!(reference::matmul(&w, &x, 0..4, &mut out[..7]).is_err(), "out too short");
}

#[test]
fn reference_backend_matmul_splits_rows_and_tokens() {
    // Through the backend: rows split over 2 threads, (n, width) tiles for n > 1, the same
    // outputs as the kernel over the whole range; the default path on the same input differs
    // (it quantizes the activations to 8 bits).
    for (i, (ty, rows, k, n)) in [(GgmlType::Q4_1, 1536, 576, 13), (GgmlType::Q8_0, 1003, 576, 1), (GgmlType::Q4_0, 333, 96, 6)].into_iter().enumerate() {
        let mut rng = Rng(0xEF_2000 + i as u64);
        let wbytes = random_weights(&mut rng, ty, rows, k);
        let x = random_acts(&mut rng, n, k);
        let mut want = vec![f32::NAN; n * rows];
        reference::matmul(&QMatrix::new(ty, rows, k, &wbytes).unwrap(), &x, 0..rows, &mut want).unwrap();
        let bytes = Arc::new(ModelBytes::Owned(wbytes));
        let xt = CpuTensor::new(n, k, x).unwrap();
        let run = |p: Precision| {
            let b = CpuBackend::with_precision(Arc::clone(&bytes), 2, p);
            b.matmul(&xt, &b.weight_at(ty, rows, k, 0).unwrap()).unwrap().data
        };
        assert_eq!(run(Precision::Reference), want, "{} ({rows}, {k}) n {n}: backend vs kernel", ty.name());
        assert_ne!(run(Precision::Ggml), want, "{} ({rows}, {k}) n {n}: the default path equals the reference", ty.name());
    }
}

/// Largest |got − want| / (|want| + floor) over the output.
fn worst_rel(got: &[f32], want: &[f64], floor: f64) -> f64 {
    assert_eq!(got.len(), want.len());
    assert!(got.iter().all(|x| x.is_finite()), "unwritten or non-finite output");
    got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).abs() / (w.abs() + floor)).fold(0.0, f64::max)
}

#[test]
fn reference_attention_is_exact_to_f32() {
    // GQA groups, head dims that are not multiples of 8, prefills past the 4-token tasks and
    // the attention tile, then single-token steps; the same q, k, v through the reference and
    // the default path, each with its own cache.
    let mut rng = Rng(0xA7_0000);
    // Sliding windows (Gemma 3's local layers): shorter than the prefill, of two positions, and
    // ending inside a 4-token task.
    let cases = [(9, 3, 64, 7, 2, None), (6, 2, 34, 70, 3, None), (4, 4, 16, 130, 1, None), (3, 1, 8, 1, 4, None), (6, 2, 34, 70, 3, Some(16)), (4, 2, 16, 9, 3, Some(2)), (3, 1, 8, 40, 2, Some(6))];
    for (nh, nkv, hd, prefill, steps, window) in cases {
        let shape = AttnShape { n_heads: nh, n_kv_heads: nkv, head_dim: hd, window };
        let max_ctx = prefill + steps + 3;
        let (exact, fast) = (backend(Precision::Reference, 2), backend(Precision::Ggml, 2));
        let (mut ce, mut cf) = (exact.new_cache(2, max_ctx, shape).unwrap(), fast.new_cache(2, max_ctx, shape).unwrap());
        let (mut ks, mut vs) = (Vec::new(), Vec::new());
        let (mut pos, mut fast_worst) = (0, 0f64);
        let mut by_token = Vec::new();
        for n in std::iter::once(prefill).chain(std::iter::repeat_n(1, steps)) {
            let (q, k, v) = (rng.vec(n * shape.q_dim(), 2.0), rng.vec(n * shape.kv_dim(), 2.0), rng.vec(n * shape.kv_dim(), 1.0));
            ks.extend_from_slice(&k);
            vs.extend_from_slice(&v);
            let t = |d: &[f32], cols| CpuTensor::new(n, cols, d.to_vec()).unwrap();
            let (qt, kt, vt) = (t(&q, shape.q_dim()), t(&k, shape.kv_dim()), t(&v, shape.kv_dim()));
            let got = exact.attention(&mut ce, 1, pos, &qt, &kt, &vt, shape).unwrap().data;
            let want = random::attention_f64(&q, &ks, &vs, pos, n, shape);
            // One f32 rounding of the result (values are ~1, so a floor of 1e-3 keeps outputs
            // near 0 from dominating).
            let e = worst_rel(&got, &want, 1e-3);
            assert!(e <= 1e-6, "reference attention {shape:?} pos {pos} n {n}: {e:.2e} vs f64");
            let quick = fast.attention(&mut cf, 1, pos, &qt, &kt, &vt, shape).unwrap().data;
            fast_worst = fast_worst.max(worst_rel(&quick, &want, 1e-3));
            by_token.push((pos, n, q, got));
            pos += n;
        }
        // The default path's f16 probabilities are visible at this resolution.
        assert!(fast_worst > 1e-5, "{shape:?}: the default path is as exact as the reference ({fast_worst:.2e})");

        // Batch invariance: the prefill again, one token at a time, bit for bit.
        let mut c1 = exact.new_cache(2, max_ctx, shape).unwrap();
        for (pos0, n, q, got) in &by_token {
            for t in 0..*n {
                let p = pos0 + t;
                let row = |all: &[f32], cols: usize| CpuTensor::new(1, cols, all[p * cols..(p + 1) * cols].to_vec()).unwrap();
                let qt = CpuTensor::new(1, shape.q_dim(), q[t * shape.q_dim()..(t + 1) * shape.q_dim()].to_vec()).unwrap();
                let one = exact.attention(&mut c1, 1, p, &qt, &row(&ks, shape.kv_dim()), &row(&vs, shape.kv_dim()), shape).unwrap().data;
                assert_eq!(&one[..], &got[t * shape.q_dim()..(t + 1) * shape.q_dim()], "{shape:?}: position {p} alone vs in its batch");
            }
        }
    }
}

/// The default attention path on a cache that has only finite keys and values (where the wasm
/// kernels take their quick f16 conversion) equals the one on the same contents after an
/// infinite key was stored and overwritten (the cache then no longer claims finiteness and the
/// general kernels run), bit for bit. The data has f16 subnormals, zeros of both signs, and
/// probabilities that round to zero in f16; prefills past the 8-key blocks, then decode steps.
#[test]
fn attention_on_a_finite_cache_equals_the_general_path() {
    let mut rng = Rng(0xF1_0000);
    let fast = backend(Precision::Ggml, 1);
    for (nh, nkv, hd, prefill, steps, scale) in [(9, 3, 64, 21, 3, 2.0), (9, 3, 64, 67, 2, 12.0), (6, 2, 34, 13, 2, 4.0), (4, 4, 16, 9, 3, 2.0), (3, 1, 8, 1, 9, 20.0)] {
        let shape = AttnShape { n_heads: nh, n_kv_heads: nkv, head_dim: hd, window: None };
        let max_ctx = prefill + steps + 5;
        let (mut finite, mut general) = (fast.new_cache(1, max_ctx, shape).unwrap(), fast.new_cache(1, max_ctx, shape).unwrap());
        let odd = |rng: &mut Rng, n: usize, s: f32| -> Vec<f32> {
            let mut v = rng.vec(n, s);
            for (i, x) in v.iter_mut().enumerate() {
                match i % 11 {
                    3 => *x *= 1e-6, // an f16 subnormal
                    5 => *x = 0.0,
                    7 => *x = -0.0,
                    _ => {}
                }
            }
            v
        };
        // An infinite key at position 0 (|x| > 65504 rounds to inf in f16), overwritten below.
        let mut k = vec![1.0f32; shape.kv_dim()];
        k[0] = 1e6;
        let t = |d: Vec<f32>, n: usize, cols: usize| CpuTensor::new(n, cols, d).unwrap();
        fast.attention(&mut general, 0, 0, &t(vec![0.5; shape.q_dim()], 1, shape.q_dim()), &t(k, 1, shape.kv_dim()), &t(vec![1.0; shape.kv_dim()], 1, shape.kv_dim()), shape).unwrap();
        let mut pos = 0;
        for n in std::iter::once(prefill).chain(std::iter::repeat_n(1, steps)) {
            let (q, k, v) = (odd(&mut rng, n * shape.q_dim(), scale), odd(&mut rng, n * shape.kv_dim(), 2.0), odd(&mut rng, n * shape.kv_dim(), 1.0));
            let (qt, kt, vt) = (t(q, n, shape.q_dim()), t(k, n, shape.kv_dim()), t(v, n, shape.kv_dim()));
            let a = fast.attention(&mut finite, 0, pos, &qt, &kt, &vt, shape).unwrap().data;
            let b = fast.attention(&mut general, 0, pos, &qt, &kt, &vt, shape).unwrap().data;
            assert!(a.iter().all(|x| x.is_finite()), "{shape:?} pos {pos}: non-finite output");
            let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{shape:?} pos {pos} n {n}: the finite-cache path differs from the general one");
            pos += n;
        }
    }
}

/// The vector helpers with simd128 versions (wasm), against their definitions: `round_f16` bit
/// for bit against `half` (f16 normals, subnormals, ties both ways, underflow to ±0, the edge
/// of f16's range, inf and NaN), softmax against an f64 softmax, SiLU against f64.
#[test]
fn vector_helpers_match_their_definitions() {
    let mut rng = Rng(0x5E_C000);
    let mut xs: Vec<f32> = Vec::new();
    for e in -30..17 {
        let scale = 2f32.powi(e);
        xs.extend(rng.vec(64, 1.0).into_iter().map(|x| x * scale));
    }
    // f16 ties (f16 normals and subnormals, even and odd neighbours) and their neighbours.
    for h in [0x0001u16, 0x0002, 0x0003, 0x03ff, 0x0400, 0x0401, 0x3c00, 0x3c01, 0x7bfe, 0x7bff] {
        let lo = half::f16::from_bits(h).to_f32();
        let hi = half::f16::from_bits(h + 1).to_f32();
        let mid = (lo as f64 + hi as f64) / 2.0;
        for x in [mid as f32, f32::from_bits((mid as f32).to_bits() + 1), f32::from_bits((mid as f32).to_bits() - 1), lo, hi] {
            xs.extend([x, -x]);
        }
    }
    xs.extend([0.0, -0.0, 2f32.powi(-25), 2f32.powi(-26), 65504.0, 65519.0, 65520.0, 1e6, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MIN_POSITIVE / 2.0]);
    for x in xs.chunks(5).flat_map(|c| c.iter().rev()).copied().collect::<Vec<_>>().chunks(7) {
        let mut got = x.to_vec();
        vec::round_f16(&mut got);
        for (g, x) in got.iter().zip(x) {
            let want = half::f16::from_f32(*x).to_f32();
            assert!(g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()), "round_f16({x:e} = {:#x}): {g:e}, half: {want:e}", x.to_bits());
        }
    }
    for n in [1, 3, 4, 7, 8, 64, 577, 1000] {
        let a = rng.vec(n, 30.0);
        let mut s = a.clone();
        vec::softmax(&mut s);
        let max = a.iter().copied().fold(f32::MIN, f32::max);
        let z: f64 = a.iter().map(|v| ((v - max) as f64).exp()).sum();
        for (i, (&s, &a)) in s.iter().zip(&a).enumerate() {
            let want = ((a - max) as f64).exp() / z;
            assert!((s as f64 - want).abs() < 2e-6 * (1.0 + want), "softmax n={n} i={i}: {s} vs {want}");
        }
        let (g, u) = (rng.vec(n, 40.0), rng.vec(n, 2.0));
        let mut o = vec![f32::NAN; n];
        vec::silu_mul(&g, &u, &mut o);
        for i in 0..n {
            let gi = g[i] as f64;
            let want = gi / (1.0 + (-gi).exp()) * u[i] as f64;
            assert!((o[i] as f64 - want).abs() < 1e-5 * (1.0 + want.abs()), "silu n={n} i={i}: {} vs {want}", o[i]);
        }
    }
}
