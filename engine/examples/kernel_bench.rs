//! Microbenchmark of the CPU matmul kernels on the default model's shapes, one thread.
//!
//! cargo run --release -p nib-engine --example kernel_bench [-- --quick]
//!
//! Decode: per token, all 30 layers' matrices (q 576→576, k/v 576→192, o 576→576,
//! gate/up 576→1536, down 1536→576; distinct random weights per layer, so ~66 MB of Q4_1 stream
//! from memory as in a real decode step) plus the tied output 576→49152 in Q8_0, each matmul
//! including its activation quantization. Median ms per token.
//! Prefill: a 512-token batch through one layer's 7 matrices (hot in cache), ×30, plus the
//! output matrix for the last token only (as llama-bench counts it). tok/s, median.
//! K-quants against the 32-value formats: 30 matrices 1536 × 1536 (k a multiple of 256, ~70 MB
//! of Q4_K streaming from memory) per decode step of 1 and of 4 tokens, and one of them hot at
//! 512 tokens (prefill), in every format.
//! Peers (1 thread, from ../shared/anchors/candle-qmatmul.md, same machine): llama.cpp whole
//! model 8.5 ms/token decode, 237 tok/s prefill; candle's Q4_1 matmuls alone 16.9 ms/token.

use std::hint::black_box;
use std::time::Instant;


use nib_engine::backend::cpu::kernels::{matmul_with, prepare_with, Isa, QMatrix};
use nib_engine::quant::GgmlType;

#[path = "../tests/common/random.rs"]
mod random;
use random::{random_weights, Rng};

const LAYERS: usize = 30;
/// (rows, cols) of one layer's matrices: q, k, v, o, gate, up, down.
const LAYER: [(usize, usize); 7] = [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536)];
const VOCAB: usize = 49152;
const HIDDEN: usize = 576;

fn weights(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let nblocks = rows * cols / 32;
    let mut v = Vec::with_capacity(nblocks * ty.type_size());
    for _ in 0..nblocks {
        let d = half::f16::from_f32(0.01 + rng.unit().abs() * 0.02).to_le_bytes();
        v.extend_from_slice(&d);
        if ty == GgmlType::Q4_1 {
            v.extend_from_slice(&half::f16::from_f32(-0.1 * rng.unit().abs()).to_le_bytes());
        }
        let qbytes = if ty == GgmlType::Q8_0 { 32 } else { 16 };
        v.extend((0..qbytes).map(|_| rng.next() as u8));
    }
    v
}

/// Time this thread has run on a CPU (CLOCK_THREAD_CPUTIME_ID on Linux), else wall time.
/// The machine is shared, so on-CPU time is the fairer figure; both are printed.
struct Clock {
    wall: Instant,
    cpu: Option<f64>,
}

#[cfg(target_os = "linux")]
fn on_cpu_s() -> Option<f64> {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: clock_gettime writes one timespec (two longs on 64-bit Linux) into `ts`.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then_some(ts.sec as f64 + ts.nsec as f64 * 1e-9)
}

#[cfg(not(target_os = "linux"))]
fn on_cpu_s() -> Option<f64> {
    None
}

impl Clock {
    fn start() -> Clock {
        Clock { wall: Instant::now(), cpu: on_cpu_s() }
    }
    /// (on-CPU seconds, wall seconds) since `start`.
    fn elapsed(&self) -> (f64, f64) {
        let wall = self.wall.elapsed().as_secs_f64();
        (self.cpu.zip(on_cpu_s()).map_or(wall, |(a, b)| b - a), wall)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// out = x · Wᵀ for all rows, one thread.
#[allow(clippy::too_many_arguments)]
fn run(isa: Isa, ty: GgmlType, rows: usize, cols: usize, w: &[u8], x: &[f32], n: usize, out: &mut [f32]) {
    let q = QMatrix::new(ty, rows, cols, w).unwrap();
    let acts = prepare_with(isa, ty, x, n, cols).unwrap();
    matmul_with(isa, &q, &acts, 0..rows, &mut out[..n * rows]).unwrap();
}

/// (on-CPU, wall) median ms per decode step of n tokens (n > 1: candidates decoded together).
fn decode_ms(isa: Isa, ty: GgmlType, layers: &[Vec<Vec<u8>>], output: &[u8], steps: usize, n: usize) -> (f64, f64) {
    let mut rng = Rng(1);
    let mut out = vec![0f32; n * VOCAB];
    let mut x = vec![0f32; n * 1536];
    let (mut times, mut walls) = (Vec::new(), Vec::new());
    for step in 0..steps + 3 {
        x.iter_mut().for_each(|v| *v = rng.unit());
        let t0 = Clock::start();
        for layer in layers {
            for (&(rows, cols), w) in LAYER.iter().zip(layer) {
                run(isa, ty, rows, cols, w, &x[..n * cols], n, &mut out);
            }
        }
        run(isa, GgmlType::Q8_0, VOCAB, HIDDEN, output, &x[..n * HIDDEN], n, &mut out);
        black_box(&out);
        if step >= 3 {
            let (cpu, wall) = t0.elapsed();
            times.push(cpu * 1e3);
            walls.push(wall * 1e3);
        }
    }
    (median(times), median(walls))
}

/// (on-CPU, wall) median prefill tok/s.
fn prefill_tok_s(isa: Isa, ty: GgmlType, layer: &[Vec<u8>], output: &[u8], n: usize, reps: usize) -> (f64, f64) {
    let mut rng = Rng(2);
    let x: Vec<f32> = (0..n * 1536).map(|_| rng.unit()).collect();
    let mut out = vec![0f32; n * 1536];
    let (mut times, mut walls) = (Vec::new(), Vec::new());
    for rep in 0..reps + 1 {
        let t0 = Clock::start();
        for (&(rows, cols), w) in LAYER.iter().zip(layer) {
            run(isa, ty, rows, cols, w, &x[..n * cols], n, &mut out);
        }
        let layer_s = t0.elapsed();
        let t1 = Clock::start();
        run(isa, GgmlType::Q8_0, VOCAB, HIDDEN, output, &x[..HIDDEN], 1, &mut out);
        let out_s = t1.elapsed();
        black_box(&out);
        if rep >= 1 {
            times.push(n as f64 / (layer_s.0 * LAYERS as f64 + out_s.0));
            walls.push(n as f64 / (layer_s.1 * LAYERS as f64 + out_s.1));
        }
    }
    (median(times), median(walls))
}

/// Hot per-call µs (on-CPU where available) of one matrix at n tokens (median of `reps`).
fn per_call_us(isa: Isa, ty: GgmlType, rows: usize, cols: usize, w: &[u8], n: usize, reps: usize) -> f64 {
    let mut rng = Rng(3);
    let x: Vec<f32> = (0..n * cols).map(|_| rng.unit()).collect();
    let mut out = vec![0f32; n * rows];
    let times = (0..reps + 2)
        .map(|_| {
            let t0 = Clock::start();
            run(isa, ty, rows, cols, w, &x, n, &mut out);
            black_box(&out);
            t0.elapsed().0 * 1e6
        })
        .skip(2)
        .collect();
    median(times)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let isas: Vec<Isa> = [Isa::Avx2, Isa::Simd128, Isa::Scalar].into_iter().filter(|i| i.available()).collect();
    let mut rng = Rng(42);
    let output = weights(&mut rng, GgmlType::Q8_0, VOCAB, HIDDEN);
    println!("nib kernel_bench, 1 thread; decode = 30 layers + output 576→49152 Q8_0; prefill = 512 tok ×30 layers (+ output for the last token)");
    if on_cpu_s().is_some() {
        println!("Times are on-CPU (wall in brackets): the machine may be shared.");
    } else {
        println!("Times are wall-clock (no thread CPU clock on this target), printed twice.");
    }
    println!("| layer type | isa | decode ms/token | 4 tokens at once, ms/step | prefill tok/s | hot µs q / k / gate / down (n=1) | gate µs n=512 |");
    println!("|---|---|---|---|---|---|---|");
    for ty in [GgmlType::Q4_1, GgmlType::Q4_0, GgmlType::Q8_0] {
        let layers: Vec<Vec<Vec<u8>>> =
            (0..LAYERS).map(|_| LAYER.iter().map(|&(r, c)| weights(&mut rng, ty, r, c)).collect()).collect();
        for &isa in &isas {
            let scalar = isa == Isa::Scalar;
            let steps = if quick || scalar { 5 } else { 25 };
            let decode = decode_ms(isa, ty, &layers, &output, steps, 1);
            let decode4 = decode_ms(isa, ty, &layers, &output, steps, 4);
            // Scalar prefill is slow: 64 tokens stand in for 512 (the rate barely depends on n).
            let (n, reps) = if scalar { (64, 2) } else if quick { (512, 2) } else { (512, 7) };
            let prefill = prefill_tok_s(isa, ty, &layers[0], &output, n, reps);
            let l = &layers[0];
            let hot: Vec<String> = [0usize, 1, 4, 6]
                .iter()
                .map(|&i| format!("{:.1}", per_call_us(isa, ty, LAYER[i].0, LAYER[i].1, &l[i], 1, 50)))
                .collect();
            let gate512 = if scalar { f64::NAN } else { per_call_us(isa, ty, 1536, 576, &l[4], 512, 5) };
            println!(
                "| {} | {isa:?} | {:.2} ({:.2}) | {:.2} ({:.2}) | {:.1} ({:.1}){} | {} | {gate512:.0} |",
                ty.name(),
                decode.0,
                decode.1,
                decode4.0,
                decode4.1,
                prefill.0,
                prefill.1,
                if scalar { " (n=64)" } else { "" },
                hot.join(" / ")
            );
        }
    }
    for &isa in &isas {
        let us = per_call_us(isa, GgmlType::Q8_0, VOCAB, HIDDEN, &output, 1, if isa == Isa::Scalar { 5 } else { 20 });
        println!("output 576→49152 Q8_0, n=1, {isa:?}: {:.2} ms (clock as above)", us / 1e3);
    }
    k_quants(&isas, quick);
}

/// Every quantized format on 30 matrices of 1536 × 1536: decode (streamed, 1 and 4 tokens) and
/// prefill (512 tokens, one matrix hot), on-CPU time (wall in brackets).
fn k_quants(isas: &[Isa], quick: bool) {
    const D: usize = 1536;
    println!();
    println!("| format | isa | bits/weight | decode ms/step, 30 × (1536×1536) | 4 tokens, ms/step | prefill, 512 tokens, Mweight·tok/s |");
    println!("|---|---|---|---|---|---|");
    let mut rng = Rng(7);
    for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K] {
        let mats: Vec<Vec<u8>> = (0..LAYERS).map(|_| random_weights(&mut rng, ty, D, D)).collect();
        for &isa in isas.iter().filter(|&&i| i != Isa::Scalar) {
            let steps = if quick { 5 } else { 15 };
            let mut step_ms = |n: usize| {
                let x: Vec<f32> = (0..n * D).map(|_| rng.unit()).collect();
                let mut out = vec![0f32; n * D];
                let (mut cpu, mut wall) = (Vec::new(), Vec::new());
                for i in 0..steps + 2 {
                    let t0 = Clock::start();
                    for w in &mats {
                        run(isa, ty, D, D, w, &x, n, &mut out);
                    }
                    black_box(&out);
                    let (c, w) = t0.elapsed();
                    if i >= 2 {
                        cpu.push(c * 1e3);
                        wall.push(w * 1e3);
                    }
                }
                (median(cpu), median(wall))
            };
            let (d1, d4) = (step_ms(1), step_ms(4));
            let us = per_call_us(isa, ty, D, D, &mats[0], 512, if quick { 2 } else { 5 });
            let bits = ty.type_size() as f64 * 8.0 / ty.block_size() as f64;
            println!(
                "| {} | {isa:?} | {bits:.2} | {:.2} ({:.2}) | {:.2} ({:.2}) | {:.0} |",
                ty.name(),
                d1.0,
                d1.1,
                d4.0,
                d4.1,
                (D * D * 512) as f64 / us
            );
        }
    }
}
