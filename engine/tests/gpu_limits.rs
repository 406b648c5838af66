//! Device limits against a 0.5B model (issue #7, memory): Qwen2.5-Coder-0.5B's shapes in Q4_0
//! (random weights, `common::qwen2_05b`) on the GPU backend (lavapipe where there is no GPU).
//!
//! - Under WebGPU's default binding limit (128 MiB, what every WebGPU device must allow) every
//!   weight is bound whole: the largest, the 151,936 × 896 embedding, is 76.6 MB.
//! - On a device with a smaller limit the weights split by rows, and the logits do not change.
//! - Splitting by rows fits any model whose rows fit one binding; a device whose limit is below
//!   one row gets a typed error (`Error::Unsupported`) that names the limit. WebGPU's minimum
//!   (128 MiB) holds rows of millions of columns, so on a WebGPU device every model fits.
//! - The output projection, which takes x in 8 bits from the output norm, against the CPU
//!   reference over a prompt and two decode steps.
//! - Attention's split scratch for a long prefill chunk at a long context (a 3B shape), taken in
//!   row blocks that each fit the binding limit, against attention in f64.

use std::sync::Arc;

use nib_engine::backend::cpu::Precision;
use nib_engine::backend::gpu::{ops, GpuBackend};
use nib_engine::backend::Backend;
use nib_engine::gguf::{Gguf, ModelBytes};
use nib_engine::quant::GgmlType;
use nib_engine::sample::argmax;
use nib_engine::{Error, Model};

mod common;
#[path = "common/random.rs"]
mod random;

/// WebGPU's default (and guaranteed minimum) maxStorageBufferBindingSize.
const WEBGPU_DEFAULT_BINDING: u64 = 128 << 20;

fn model_bytes() -> Arc<ModelBytes> {
    Arc::new(ModelBytes::open(&common::qwen2_05b()).unwrap())
}

/// (name, bytes, parts) of every matrix of the model on `backend`.
fn parts(backend: &GpuBackend, gguf: &Gguf) -> Vec<(String, u64, usize)> {
    gguf.tensors
        .iter()
        .filter(|t| t.dims.len() == 2)
        .map(|t| {
            let w = backend.load_weight(gguf, t).unwrap();
            (t.name.clone(), t.ty.bytes_for(t.n_elements()).unwrap(), w.n_parts())
        })
        .collect()
}

#[test]
fn a_05b_model_fits_webgpu_default_limits_and_splits_exactly_below_them() {
    let bytes = model_bytes();
    let gguf = Gguf::parse(&bytes).unwrap();
    let whole = GpuBackend::with_part_limit(Arc::clone(&bytes), WEBGPU_DEFAULT_BINDING).unwrap();
    println!("adapter: {}", whole.describe());
    let got = parts(&whole, &gguf);
    assert_eq!(got.len(), 24 * 7 + 1, "the 0.5B shape's matrices");
    let (name, largest, n) = got.iter().max_by_key(|p| p.1).unwrap();
    println!("{} matrices, {} bytes; largest {name}: {largest} bytes in {n} part(s) under a {} MiB binding", got.len(), bytes.len(), WEBGPU_DEFAULT_BINDING >> 20);
    assert_eq!(name, "token_embd.weight");
    assert_eq!(*largest, 151_936 / 32 * 18 * 896);
    assert!(got.iter().all(|p| p.2 == 1), "a weight split under WebGPU's default limit: {got:?}");

    // A device that binds 16 MiB: the embedding in 5 parts, the rest whole, the same logits.
    let small = GpuBackend::with_part_limit(Arc::clone(&bytes), 16 << 20).unwrap();
    let split = parts(&small, &gguf);
    let embd = split.iter().find(|p| p.0 == "token_embd.weight").unwrap();
    println!("under a 16 MiB binding: token_embd.weight in {} parts", embd.2);
    assert_eq!(embd.2, 5);
    assert!(split.iter().filter(|p| p.0 != "token_embd.weight").all(|p| p.2 == 1));
    drop((whole, small));

    let prompt = [14582u32, 1598];
    let logits = |limit: u64| {
        let m = Model::new(GpuBackend::with_part_limit(Arc::clone(&bytes), limit).unwrap(), &gguf).unwrap();
        m.eval(&mut m.session(prompt.len()).unwrap(), &prompt).unwrap()
    };
    let (a, b) = (logits(WEBGPU_DEFAULT_BINDING), logits(16 << 20));
    assert_eq!(a.len(), 151_936);
    assert!(a.iter().all(|x| x.is_finite()));
    let delta = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    println!("logits whole vs split: max |delta| {delta:.2e}");
    assert!(delta <= 1e-5, "splitting changed the logits by {delta}");
}

#[test]
fn a_device_below_one_row_gets_a_typed_error_naming_the_limit() {
    let bytes = model_bytes();
    let gguf = Gguf::parse(&bytes).unwrap();
    // ffn_down's rows are 4864 Q4_0 values: 2736 bytes, more than a 2 KiB binding holds.
    let b = GpuBackend::with_part_limit(Arc::clone(&bytes), 2048).unwrap();
    let down = gguf.tensor("blk.0.ffn_down.weight").unwrap();
    match b.load_weight(&gguf, down) {
        Err(Error::Unsupported(msg)) => {
            println!("{msg}");
            assert!(msg.contains("max_storage_buffer_binding_size") && msg.contains("2048 bytes") && msg.contains("2736 bytes"), "{msg}");
        }
        Err(e) => panic!("not Unsupported: {e}"),
        Ok(_) => panic!("a 2736-byte row bound under a 2048-byte limit"),
    }
}

/// The 0.5B shape's output projection takes x in 8 bits from the output norm (a 4-bit matrix of
/// 151,936 rows: `ops::matvec_q8`), in the prompt's pass (its last row) and in each decode step.
/// Its logits against the CPU reference (f32 x everywhere): 8-bit x moves them by ~8e-4 of their
/// norm. The random weights bring every token to almost the same last hidden state, so x taken
/// from another row barely shows here; the kernel checks (`matvec_variants`) catch that.
#[test]
fn the_output_projection_with_8_bit_x_matches_the_cpu_reference() {
    let bytes = model_bytes();
    let gguf = Gguf::parse(&bytes).unwrap();
    let gpu = Model::new(GpuBackend::new(Arc::clone(&bytes)).unwrap(), &gguf).unwrap();
    let ctx = gpu.backend.context();
    assert!(ops::matvec_q8(ctx, GgmlType::Q4_0, 896, ops::matvec_rows(ctx, 151_936)), "the output projection does not take x in 8 bits");
    let cpu = Model::open_cpu_with(&common::qwen2_05b(), 2, Precision::Reference).unwrap();
    let steps: [&[u32]; 3] = [&[14582, 1598, 77], &[33], &[4096]];
    let (mut gs, mut cs) = (gpu.session(8).unwrap(), cpu.session(8).unwrap());
    for (i, ids) in steps.iter().enumerate() {
        let (g, c) = (gpu.eval(&mut gs, ids).unwrap(), cpu.eval(&mut cs, ids).unwrap());
        let norm = |v: &mut dyn Iterator<Item = f32>| v.map(|x| (x as f64).powi(2)).sum::<f64>().sqrt();
        let rel = norm(&mut g.iter().zip(&c).map(|(a, b)| a - b)) / norm(&mut c.iter().copied());
        println!("step {i} ({} tokens): ‖gpu − cpu‖ / ‖cpu‖ = {rel:.2e}", ids.len());
        assert!(rel <= 3e-3, "step {i}: the logits are {rel:.2e} of their norm off the CPU reference");
        assert_eq!(argmax(&g), argmax(&c), "step {i}: top-1");
    }
}

/// A 512-token prefill chunk of a 3B model's attention (16 heads of 128 over 2 KV heads) after
/// 1,800 positions: unblocked, its split scratch is 512 × 16 × 36 splits × 128 f32, 155 MB, past
/// WebGPU's default 128 MiB binding (lavapipe's too), and the allocation failed part-way through a
/// prompt. In row blocks of at most `ATTN_SCRATCH` it runs, and sampled rows match attention in
/// f64. The 1,800 positions before it are a prefill of their own, through 2 query heads (the
/// cache only knows KV heads) to spare lavapipe 8 times the work, in blocks too.
#[test]
fn a_long_prefill_chunk_attends_in_blocks_under_the_binding_limit() {
    use nib_engine::backend::gpu::ATTN_SCRATCH;
    use nib_engine::backend::AttnShape;
    let b = GpuBackend::new(Arc::new(ModelBytes::Owned(Vec::new()))).unwrap();
    b.set_poison(true);
    let shape = AttnShape { n_heads: 16, n_kv_heads: 2, head_dim: 128, window: None };
    let (before, n) = (1800, 512);
    let scratch = (n * shape.n_heads * (before + n).div_ceil(ops::ATTN_CHUNK) * shape.head_dim * 4) as u64;
    println!("max binding {} MiB; unblocked scratch {scratch} bytes, in blocks of at most {ATTN_SCRATCH}", b.context().max_binding() >> 20);
    assert!(scratch > WEBGPU_DEFAULT_BINDING);
    let mut rng = random::Rng(1700);
    let mut cache = b.new_cache(1, before + n, shape).unwrap();
    let (mut ks, mut vs) = (Vec::new(), Vec::new());
    let mut pos = 0;
    let fill = AttnShape { n_heads: 2, ..shape };
    for (shape, rows, check) in [(fill, before, [0, 1, 1799]), (shape, n, [0, 300, 511])] {
        let t0 = std::time::Instant::now();
        let (qd, kd) = (shape.q_dim(), shape.kv_dim());
        let (q, k, v) = (rng.vec(rows * qd, 2.0), rng.vec(rows * kd, 2.0), rng.vec(rows * kd, 1.0));
        ks.extend_from_slice(&k);
        vs.extend_from_slice(&v);
        let t = |data: &[f32], cols| b.tensor(rows, cols, data).unwrap();
        let out = b.attention(&mut cache, 0, pos, &t(&q, qd), &t(&k, kd), &t(&v, kd), shape).unwrap_or_else(|e| panic!("{rows} rows at {pos}: {e}"));
        let got = b.to_vec(&out).unwrap();
        assert!(got.iter().all(|x| x.is_finite()), "{rows} rows at {pos}: rows left unwritten");
        for r in check {
            let want = random::attention_f64(&q[r * qd..(r + 1) * qd], &ks, &vs, pos + r, 1, shape);
            let got: Vec<f64> = got[r * qd..(r + 1) * qd].iter().map(|&x| x as f64).collect();
            let d = got.iter().zip(&want).map(|(g, w)| (g - w).powi(2)).sum::<f64>().sqrt() / want.iter().map(|w| w * w).sum::<f64>().sqrt();
            assert!(d <= 1e-4, "{rows} rows at {pos}: row {r} is {d:.2e} off attention in f64");
        }
        println!("{rows} rows of {} heads at {pos}: {:.1} s", shape.n_heads, t0.elapsed().as_secs_f64());
        pos += rows;
    }
}
