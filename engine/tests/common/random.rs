//! Seeded random test data shared by the kernel tests (CPU and GPU) and the kernel benchmark,
//! and the f64 attention both kernel tests hold their backends to.
#![allow(dead_code)]

use nib_engine::backend::AttnShape;
use nib_engine::quant::GgmlType;

/// splitmix64: small, seedable, good enough for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1), never exactly 0 (tests never run on zeros).
    pub fn unit(&mut self) -> f32 {
        let v = (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
        if v == 0.0 {
            0.5
        } else {
            v
        }
    }

    pub fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.unit() * scale).collect()
    }
}

pub fn f16_bytes(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_bits().to_le_bytes()
}

/// Random weights (rows, k) of type `ty`: random quants, scales of random sign and size.
pub fn random_weights(rng: &mut Rng, ty: GgmlType, rows: usize, k: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rows * k / ty.block_size() {
        let d = rng.unit() * 0.05;
        match ty {
            GgmlType::F32 => out.extend_from_slice(&(rng.unit() * 2.0).to_le_bytes()),
            GgmlType::F16 => out.extend_from_slice(&f16_bytes(rng.unit() * 2.0)),
            GgmlType::BF16 => out.extend_from_slice(&half::bf16::from_f32(rng.unit() * 2.0).to_bits().to_le_bytes()),
            GgmlType::Q8_0 => {
                out.extend_from_slice(&f16_bytes(d));
                out.extend((0..32).map(|_| rng.byte()));
            }
            GgmlType::Q4_0 => {
                out.extend_from_slice(&f16_bytes(d));
                out.extend((0..16).map(|_| rng.byte()));
            }
            GgmlType::Q4_1 => {
                out.extend_from_slice(&f16_bytes(d.abs()));
                out.extend_from_slice(&f16_bytes(-8.0 * d.abs() + rng.unit() * 0.02));
                out.extend((0..16).map(|_| rng.byte()));
            }
            GgmlType::Q5_0 => {
                // d, the 32 fifth bits, the nibbles.
                out.extend_from_slice(&f16_bytes(d / 2.0));
                out.extend((0..20).map(|_| rng.byte()));
            }
            GgmlType::Q5_1 => {
                out.extend_from_slice(&f16_bytes(d.abs() / 2.0));
                out.extend_from_slice(&f16_bytes(-8.0 * d.abs() + rng.unit() * 0.02));
                out.extend((0..20).map(|_| rng.byte()));
            }
            GgmlType::Q4K | GgmlType::Q5K => {
                // d, dmin, 12 bytes of 6-bit scales and mins, (Q5_K: 32 bytes of fifth bits,) quants.
                out.extend_from_slice(&f16_bytes(d.abs() / 8.0));
                out.extend_from_slice(&f16_bytes(rng.unit() * 0.02));
                let rest = if ty == GgmlType::Q4K { 140 } else { 172 };
                out.extend((0..rest).map(|_| rng.byte()));
            }
            GgmlType::Q6K => {
                // ql, qh, 16 i8 scales, then d.
                out.extend((0..208).map(|_| rng.byte()));
                out.extend_from_slice(&f16_bytes(d / 64.0));
            }
            other => panic!("no random weights for {other:?}"),
        }
    }
    out
}

fn round16(x: f32) -> f64 {
    half::f16::from_f32(x).to_f32() as f64
}

/// Causal attention in f64 over f32 q and f16-rounded k, v (what the KV cache holds): (n, q_dim)
/// for tokens at pos..pos+n, given every position's k, v so far (positions 0..pos+n, kv_dim each).
pub fn attention_f64(q: &[f32], ks: &[f32], vs: &[f32], pos: usize, n: usize, s: AttnShape) -> Vec<f64> {
    let (hd, kvd, group) = (s.head_dim, s.kv_dim(), s.n_heads / s.n_kv_heads);
    let mut out = Vec::new();
    for t in 0..n {
        for h in 0..s.n_heads {
            let g = h / group;
            let qh: Vec<f64> = q[t * s.q_dim() + h * hd..][..hd].iter().map(|&x| x as f64).collect();
            let len = pos + t + 1;
            // A sliding window keeps the last `w` positions.
            let first = s.window.map_or(0, |w| len.saturating_sub(w));
            let sc: Vec<f64> = (first..len).map(|j| (0..hd).map(|d| qh[d] * round16(ks[j * kvd + g * hd + d])).sum::<f64>() / (hd as f64).sqrt()).collect();
            let m = sc.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = sc.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..hd {
                out.push((first..len).map(|j| e[j - first] / z * round16(vs[j * kvd + g * hd + d])).sum());
            }
        }
    }
    out
}
