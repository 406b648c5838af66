//! The prepared GPU benchmark (issue #3): everything a real GPU should be asked, in one run.
//!
//! cargo build --release -p nib-engine --example gpu_bench
//! target/release/examples/gpu_bench [--probe | --quick | --matvec-only] [--model FILE.gguf] [--out FILE.json]
//! (bench/gpu/run.sh is the script that runs it on a GPU machine and keeps the results.)
//!
//! 1. The adapter, its copy bandwidth (a buffer-to-buffer copy, counting bytes read and
//!    written) and the bandwidth of a WGSL kernel that only reads (the roof for a matvec).
//! 2. The matrix-vector kernels on each weight shape of two models, alone, in each variant
//!    (`Tuning`): GB/s of weight read per product and its share of both roofs.
//! 3. Whole models through `Llama::forward` on the GPU backend: prefill of 512 tokens and greedy
//!    decode of 128 tokens with the argmax on the GPU (4 bytes read back per token), with the
//!    dispatches, submits and host recording time of a decode step; the same decode pipelined
//!    (`backend::gpu::decode`: the host one step ahead); 3 candidates decoded together; sampled
//!    decode with top-k on the GPU. Each with the backend's choice of kernel variants and with
//!    the first kernels' (one row per 32 lanes, workgroup sums, f32 x, the KV cache unpacked
//!    from u32 words rather than read as f16). Models:
//!    - `smollm2-135m`: the default model's shapes and formats (30 layers, 576 wide, Q4_1 with a
//!      Q8_0 tied output) with random weights, or the real file when `--model` is given (the file
//!      is bigger than what travels to a GPU machine);
//!    - `qwen2.5-coder-0.5b`: Qwen2.5-Coder-0.5B's shapes (24 layers, hidden 896, 14/2 heads,
//!      FFN 4864, vocab 151,936, tied output) in Q4_0 with random weights, as a `llama` file:
//!      Qwen2's q/k/v biases are three additions of 896 + 2 × 128 values, nothing next to the
//!      weights.
//!
//! Speed depends on shapes and formats, not on the values, so random weights time the same work.
//! Prints a table and writes every figure as JSON.

use std::sync::Arc;
use std::time::Instant;

use nib_engine::backend::gpu::context::{Access, Bind};
use nib_engine::backend::gpu::{decode, ops, GpuBackend, Tuning};
use nib_engine::backend::Backend;
use nib_engine::gguf::{Gguf, ModelBytes};
use nib_engine::gguf_writer::{self, TensorSpec};
use nib_engine::quant::GgmlType;
use nib_engine::sample::{Sampler, SamplerConfig};
use serde_json::{json, Value};

#[path = "../tests/common/random.rs"]
mod random;
use random::{random_weights, Rng};

/// The shapes of a llama-style model.
#[derive(Clone, Copy)]
struct Shape {
    name: &'static str,
    layers: usize,
    dim: usize,
    heads: usize,
    kv_heads: usize,
    ffn: usize,
    vocab: usize,
    rope_base: f32,
    /// Format of the layer matrices, and of the (tied) embedding / output matrix.
    ty: GgmlType,
    embd_ty: GgmlType,
}

const SMOLLM: Shape = Shape {
    name: "smollm2-135m",
    layers: 30,
    dim: 576,
    heads: 9,
    kv_heads: 3,
    ffn: 1536,
    vocab: 49152,
    rope_base: 100_000.0,
    ty: GgmlType::Q4_1,
    embd_ty: GgmlType::Q8_0,
};

const QWEN: Shape = Shape {
    name: "qwen2.5-coder-0.5b",
    layers: 24,
    dim: 896,
    heads: 14,
    kv_heads: 2,
    ffn: 4864,
    vocab: 151_936,
    rope_base: 1_000_000.0,
    ty: GgmlType::Q4_0,
    embd_ty: GgmlType::Q4_0,
};

impl Shape {
    fn kv_dim(&self) -> usize {
        self.dim / self.heads * self.kv_heads
    }
    /// (name, rows, cols, format) of every distinct matrix a decode step multiplies by.
    fn matrices(&self) -> Vec<(&'static str, usize, usize, GgmlType)> {
        vec![
            ("attn_q", self.dim, self.dim, self.ty),
            ("attn_k", self.kv_dim(), self.dim, self.ty),
            ("attn_output", self.dim, self.dim, self.ty),
            ("ffn_up", self.ffn, self.dim, self.ty),
            ("ffn_down", self.dim, self.ffn, self.ty),
            ("output", self.vocab, self.dim, self.embd_ty),
        ]
    }
}

/// A GGUF v3 file holding a `llama` model of `shape` with random weights.
fn synthetic_gguf(shape: &Shape, rng: &mut Rng) -> Res<Vec<u8>> {
    use nib_engine::gguf::Value as V;
    let s = shape;
    let u = |x: usize| V::U32(x as u32);
    let metadata: Vec<(String, V)> = vec![
        ("general.architecture".into(), V::String("llama".into())),
        ("llama.block_count".into(), u(s.layers)),
        ("llama.embedding_length".into(), u(s.dim)),
        ("llama.feed_forward_length".into(), u(s.ffn)),
        ("llama.attention.head_count".into(), u(s.heads)),
        ("llama.attention.head_count_kv".into(), u(s.kv_heads)),
        ("llama.vocab_size".into(), u(s.vocab)),
        ("llama.context_length".into(), u(32768)),
        ("llama.rope.freq_base".into(), V::F32(s.rope_base)),
        ("llama.attention.layer_norm_rms_epsilon".into(), V::F32(1e-6)),
    ];
    let ones = |n: usize| -> Vec<u8> { (0..n).flat_map(|_| 1f32.to_le_bytes()).collect() };
    let mut tensors: Vec<(TensorSpec, Vec<u8>)> = Vec::new();
    let mut add = |name: String, dims: Vec<usize>, ty: GgmlType, data: Vec<u8>| tensors.push((TensorSpec { name, dims: dims.iter().map(|&d| d as u64).collect(), ty }, data));
    add("token_embd.weight".into(), vec![s.dim, s.vocab], s.embd_ty, random_weights(rng, s.embd_ty, s.vocab, s.dim));
    add("output_norm.weight".into(), vec![s.dim], GgmlType::F32, ones(s.dim));
    for l in 0..s.layers {
        let name = |n: &str| format!("blk.{l}.{n}.weight");
        add(name("attn_norm"), vec![s.dim], GgmlType::F32, ones(s.dim));
        add(name("ffn_norm"), vec![s.dim], GgmlType::F32, ones(s.dim));
        for (n, rows, cols) in [
            ("attn_q", s.dim, s.dim),
            ("attn_k", s.kv_dim(), s.dim),
            ("attn_v", s.kv_dim(), s.dim),
            ("attn_output", s.dim, s.dim),
            ("ffn_gate", s.ffn, s.dim),
            ("ffn_up", s.ffn, s.dim),
            ("ffn_down", s.dim, s.ffn),
        ] {
            add(name(n), vec![cols, rows], s.ty, random_weights(rng, s.ty, rows, cols));
        }
    }
    let (specs, data): (Vec<TensorSpec>, Vec<Vec<u8>>) = tensors.into_iter().unzip();
    Ok(gguf_writer::write(&metadata, &specs, |i, out| {
        out.extend_from_slice(&data[i]);
        Ok(())
    })?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Bytes moved per second (read + written) by buffer-to-buffer copies of `bytes`.
fn copy_bandwidth(b: &GpuBackend, bytes: u64, reps: usize) -> Res<f64> {
    let gpu = b.context();
    let mk = |label| gpu.create_checked(&wgpu::BufferDescriptor { label: Some(label), size: bytes, usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
    let (src, dst) = (mk("bench copy src")?, mk("bench copy dst")?);
    let us = time_us(b, reps, || gpu.copy(&src, 0, &dst, 0, bytes))?;
    Ok(2.0 * bytes as f64 / (us * 1e-6))
}

/// µs per dispatch of a kernel with almost no work (filling 64 words), each writing the buffer
/// the one before wrote, so each waits for the last: the fixed cost every op of a decode step
/// pays on top of its memory traffic.
fn dispatch_floor(b: &GpuBackend, reps: usize) -> Res<f64> {
    let gpu = b.context();
    let buf = gpu.alloc(256)?;
    let mut i = 0u32;
    time_us(b, reps, || {
        i = i.wrapping_add(1);
        ops::fill(gpu, &buf.buffer, 64, i)
    })
}

/// One matvec variant: the kernel's tuning, and whether x comes in 8 bits from the norm before
/// the product (as the output projection takes it in a decode step) rather than quantized by
/// the product's workgroups.
#[derive(Clone, Copy)]
struct Variant {
    tuning: Tuning,
    x_given: bool,
}

/// The matvec variants timed side by side: rows per 32-lane group; lane sums in workgroup
/// memory or in subgroups (where the device has them); x in f32 or in 8 bits (quantized in the
/// kernel or given), a quarter block or (wide) a whole block per lane.
fn variants(b: &GpuBackend) -> Vec<Variant> {
    let sg = b.context().tuning().subgroup;
    let mut v = Vec::new();
    let q8 = |n| [(Some(n), true, false, false), (Some(n), true, true, false), (Some(n), true, false, true), (Some(n), true, true, true)];
    let kinds = [(None, false, false, false)].into_iter().chain(sg.map(|n| [(Some(n), false, false, false)].into_iter().chain(q8(n))).into_iter().flatten());
    for (subgroup, q8, wide, x_given) in kinds {
        for rows in [1, 2, 4] {
            v.push(Variant { tuning: Tuning { subgroup, matvec_rows: Some(rows), matvec_q8: Some(q8), matvec_wide: Some(wide), f16: None }, x_given });
        }
    }
    v
}

fn variant_name(v: &Variant) -> String {
    format!("{}{}", tuning_name(&v.tuning), if v.x_given { ", x given" } else { "" })
}

fn tuning_name(t: &Tuning) -> String {
    let rows = t.matvec_rows.map_or("auto".to_string(), |r| r.to_string());
    let sums = t.subgroup.map_or("workgroup sums".to_string(), |n| format!("subgroups of {n}"));
    let x = match t.matvec_q8 {
        Some(true) => ", 8-bit x",
        Some(false) => "",
        None => ", 8-bit x when R=4",
    };
    let wide = if t.matvec_wide == Some(true) && t.matvec_q8 != Some(false) { ", wide" } else { "" };
    format!("R={rows}, {sums}{x}{wide}")
}

/// GB/s of weight read by one matrix-vector product of each matrix of `shape`, for each matvec
/// variant, then for the backend's own choice.
fn matvec_rates(b: &GpuBackend, shape: &Shape, rng: &mut Rng, reps: usize, copy_bw: f64) -> Res<Vec<Value>> {
    let gpu = b.context();
    let auto = gpu.tuning();
    let mut rows = Vec::new();
    for (name, r, c, ty) in shape.matrices() {
        let data = random_weights(rng, ty, r, c);
        let w = b.weight(name, ty, r, c, &data)?;
        let xv: Vec<f32> = (0..c).map(|_| rng.unit()).collect();
        let x = b.tensor(1, c, &xv)?;
        let ones: Vec<u8> = (0..c).flat_map(|_| 1f32.to_le_bytes()).collect();
        let norm = b.weight("norm", GgmlType::F32, 1, c, &ones)?;
        // x as the output norm hands it to the product: in 8 bits too, where that product (in
        // the tuning of the moment) takes it so.
        let normed = |rng: &mut Rng| b.add_rms_norm_before(&mut b.tensor(1, c, &xv)?, &b.tensor(1, c, &rng.vec(c, 1.0))?, &norm, 1e-5, &w);
        let mut by_variant = Vec::new();
        for v in variants(b) {
            gpu.set_tuning(v.tuning)?;
            let xg = if v.x_given { Some(normed(rng)?).filter(|x| x.has_x8()) } else { None };
            let us = match (v.x_given, &xg) {
                (false, _) => time_us(b, reps, || b.matmul(&x, &w))?,
                (true, Some(xg)) => time_us(b, reps, || b.matmul(xg, &w))?,
                (true, None) => f64::NAN, // this matrix's product does not take x in 8 bits
            };
            by_variant.push(json!({ "variant": variant_name(&v), "us": us, "gb_s": data.len() as f64 / us / 1e3 }));
        }
        gpu.set_tuning(auto)?;
        let per = ops::matvec_rows(gpu, r);
        let xg = normed(rng)?;
        let chosen = Variant { tuning: Tuning { matvec_rows: Some(per), matvec_q8: Some(ops::matvec_q8(gpu, ty, c, per)), ..auto }, x_given: xg.has_x8() };
        let t = time_us(b, reps, || b.matmul(&xg, &w))? * 1e-6;
        let gbs = data.len() as f64 / t / 1e9;
        rows.push(json!({
            "model": shape.name, "matrix": name, "rows": r, "cols": c, "format": ty.name(),
            "weight_bytes": data.len(), "variant": variant_name(&chosen), "us": t * 1e6, "gb_s": gbs, "share_of_copy": gbs * 1e9 / copy_bw,
            "variants": by_variant,
        }));
    }
    Ok(rows)
}

/// GB/s a WGSL kernel reads from a buffer of `bytes` (vec4<u32> loads, coalesced, a grid-stride
/// loop): the roof for a kernel that only reads, through the same shader path as matvec.
fn read_bandwidth(b: &GpuBackend, bytes: u64, reps: usize) -> Res<f64> {
    const READ: &str = "struct P { n: u32, lanes: u32 }\n\
        @group(0) @binding(0) var<uniform> p: P;\n\
        @group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;\n\
        @group(0) @binding(2) var<storage, read_write> dst: array<u32>;\n\
        @compute @workgroup_size(256)\n\
        fn main(@builtin(global_invocation_id) id: vec3<u32>) {\n\
            var acc = vec4<u32>(0u);\n\
            for (var i = id.x; i < p.n; i += p.lanes) { acc ^= src[i]; }\n\
            let s = acc.x ^ acc.y ^ acc.z ^ acc.w;\n\
            if (s == 0x12345678u) { dst[id.x & 255u] = s; }\n\
        }\n";
    let gpu = b.context();
    let k = gpu.kernel(("bench_read", 0), &[Access::Read, Access::ReadWrite], || READ.to_string())?;
    let src = gpu.create_checked(&wgpu::BufferDescriptor { label: Some("bench read src"), size: bytes, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false })?;
    let dst = gpu.alloc(1024)?;
    let groups = 132 * 16; // enough workgroups for the largest GPU's cores, several each
    let params = [(bytes / 16) as u32, groups * 256];
    let binds = [Bind { buffer: &src, bytes }, Bind { buffer: &dst.buffer, bytes: 1024 }];
    let us = time_us(b, reps, || gpu.dispatch(&k, &params, &binds, [groups, 1, 1]))?;
    Ok(bytes as f64 / (us * 1e-6))
}

/// Median µs of `f`, run `reps` times into one submit, over 3 timed rounds after a warm-up.
fn time_us<T>(b: &GpuBackend, reps: usize, mut f: impl FnMut() -> nib_engine::Result<T>) -> Res<f64> {
    let mut times = Vec::new();
    for round in 0..4 {
        b.finish()?;
        let t = Instant::now();
        for _ in 0..reps {
            f()?;
        }
        b.finish()?;
        if round > 0 {
            times.push(t.elapsed().as_secs_f64() / reps as f64);
        }
    }
    Ok(median(times) * 1e6)
}

/// µs of each op of one decode-step layer alone, at position `pos`: where a step's time goes
/// besides the matvecs of the table above.
fn layer_ops(b: &GpuBackend, shape: &Shape, rng: &mut Rng, reps: usize, pos: usize) -> Res<Vec<Value>> {
    let (dim, kv_dim, hd) = (shape.dim, shape.kv_dim(), shape.dim / shape.heads);
    let attn = nib_engine::backend::AttnShape { n_heads: shape.heads, n_kv_heads: shape.kv_heads, head_dim: hd, window: None };
    let rope = nib_engine::backend::Rope { theta: shape.rope_base, dims: hd, neox: false, freq_scale: 1.0 };
    let stacked = |rng: &mut Rng, rows: usize, cols: usize| b.weight("stacked", shape.ty, rows, cols, &random_weights(rng, shape.ty, rows, cols));
    let wqkv = stacked(rng, dim + 2 * kv_dim, dim)?;
    let wgu = stacked(rng, 2 * shape.ffn, dim)?;
    let norm: Vec<u8> = (0..dim).flat_map(|_| 1f32.to_le_bytes()).collect();
    let norm = b.weight("norm", GgmlType::F32, 1, dim, &norm)?;
    let h = b.tensor(1, dim, &rng.vec(dim, 1.0))?;
    let y = b.tensor(1, dim, &rng.vec(dim, 1.0))?;
    let mut x = b.tensor(1, dim, &rng.vec(dim, 1.0))?;
    let mut cache = b.new_cache(1, pos + 1, attn)?; // room for the decode op and the prefill batch
    let mut rows = Vec::new();
    let mut row = |op: &str, dispatches: usize, us: f64| rows.push(json!({ "model": shape.name, "op": op, "dispatches": dispatches, "us": us }));
    row("q/k/v (stacked matvec)", 1, time_us(b, reps, || b.matmul(&h, &wqkv))?);
    // The GPU rotates out of place, so the same q and k serve every repetition.
    let mut q = b.tensor(1, dim, &rng.vec(dim, 1.0))?;
    let mut k = b.tensor(1, kv_dim, &rng.vec(kv_dim, 1.0))?;
    let v = b.tensor(1, kv_dim, &rng.vec(kv_dim, 1.0))?;
    row(&format!("rope + KV append + attention at position {pos}"), 3, time_us(b, reps, || {
        b.rope_attention(&mut cache, 0, pos, &mut q, &mut k, &v, attn, &rope)
    })?);
    // Attention alone (the KV append included: the backend's op stores, then attends) in each
    // variant: the cache unpacked from u32 words, and read as f16 where the device has it.
    let gpu = b.context();
    let auto = gpu.tuning();
    for f16 in [false].into_iter().chain(gpu.has_f16().then_some(true)) {
        gpu.set_tuning(Tuning { f16: Some(f16), ..auto })?;
        let cache_as = if f16 { "f16 (shader-f16)" } else { "u32 words, unpacked" };
        row(&format!("KV append + attention at position {pos}, cache read as {cache_as}"), 3, time_us(b, reps, || b.attention(&mut cache, 0, pos, &q, &k, &v, attn))?);
    }
    gpu.set_tuning(auto)?;
    row("add + norm", 1, time_us(b, reps, || b.add_rms_norm(&mut x, &y, &norm, 1e-6))?);
    row("gate/up + SwiGLU (stacked matvec)", 1, time_us(b, reps, || b.glu(&h, &wgu))?);
    let logits = b.tensor(1, shape.vocab, &rng.vec(shape.vocab, 8.0))?;
    row("argmax + log-sum-exp over the vocabulary", 1, time_us(b, reps, || b.record_argmax(&logits))?);

    // The same ops over a prefill batch of `pos` tokens at position 0.
    let n = pos;
    let hn = b.tensor(n, dim, &rng.vec(n * dim, 1.0))?;
    let mut qn = b.tensor(n, dim, &rng.vec(n * dim, 1.0))?;
    let mut kn = b.tensor(n, kv_dim, &rng.vec(n * kv_dim, 1.0))?;
    let vn = b.tensor(n, kv_dim, &rng.vec(n * kv_dim, 1.0))?;
    let gn = b.tensor(n, shape.ffn, &rng.vec(n * shape.ffn, 1.0))?;
    let wdown = stacked(rng, dim, shape.ffn)?;
    let reps = (reps / 20).max(2);
    row(&format!("prefill {n}: q/k/v (stacked matmul)"), 1, time_us(b, reps, || b.matmul(&hn, &wqkv))?);
    row(&format!("prefill {n}: rope + KV append + attention"), 3, time_us(b, reps, || {
        b.rope_attention(&mut cache, 0, 0, &mut qn, &mut kn, &vn, attn, &rope)
    })?);
    for f16 in [false].into_iter().chain(gpu.has_f16().then_some(true)) {
        gpu.set_tuning(Tuning { f16: Some(f16), ..auto })?;
        let cache_as = if f16 { "f16 (shader-f16)" } else { "u32 words, unpacked" };
        row(&format!("prefill {n}: KV append + attention, cache read as {cache_as}"), 3, time_us(b, reps, || b.attention(&mut cache, 0, 0, &qn, &kn, &vn, attn))?);
    }
    gpu.set_tuning(auto)?;
    row(&format!("prefill {n}: gate/up + SwiGLU (stacked matmul)"), 2, time_us(b, reps, || b.glu(&hn, &wgu))?);
    row(&format!("prefill {n}: down (matmul)"), 1, time_us(b, reps, || b.matmul(&gn, &wdown))?);
    // The down projection's shape in every weight format, and at fewer tokens: what the tiled
    // kernel's time depends on.
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0] {
        let w = b.weight("down", ty, dim, shape.ffn, &random_weights(rng, ty, dim, shape.ffn))?;
        for t in [64, n] {
            let xt = b.tensor(t, shape.ffn, &rng.vec(t * shape.ffn, 1.0))?;
            let us = time_us(b, reps, || b.matmul(&xt, &w))?;
            let tflops = 2.0 * (t * dim * shape.ffn) as f64 / us / 1e6;
            row(&format!("matmul {t} × ({dim} × {}) {}: {tflops:.2} TFLOP/s", shape.ffn, ty.name()), 1, us);
        }
    }
    Ok(rows)
}

/// Prefill and greedy decode of a whole model on the GPU backend, with the matvec variant
/// `tuning` (`None`: the backend's choice).
fn whole_model(bytes: &Arc<ModelBytes>, label: &str, tuning: Option<Tuning>, runs: usize, prompt: usize, gen: usize, rng: &mut Rng) -> Res<Value> {
    let file_bytes = bytes.len();
    let gguf = Gguf::parse(bytes)?;
    let t = Instant::now();
    let b = GpuBackend::new(Arc::clone(bytes))?;
    if let Some(t) = tuning {
        b.context().set_tuning(t)?;
    }
    let variant = tuning.map_or_else(|| format!("backend's choice ({})", tuning_name(&b.context().tuning())), |t| tuning_name(&t));
    let model = nib_engine::arch::load(&b, &gguf)?;
    b.finish()?;
    let load_s = t.elapsed().as_secs_f64();
    let c = model.config().clone();
    let ids: Vec<u32> = (0..prompt).map(|_| (rng.next() % c.vocab as u64) as u32).collect();

    // Warm-up: compile every kernel and fill the buffer pool.
    let mut cache = b.new_cache(c.n_layers, prompt + gen + 1, c.attn)?;
    let out = model.forward(&b, &mut cache, &ids[..16.min(prompt)], 0, false)?;
    b.argmax(&out)?;
    let out = model.forward(&b, &mut cache, &ids[..1], 16.min(prompt), false)?;
    b.argmax(&out)?;

    let (mut prefill, mut decode, mut record, mut pipelined, mut together) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut step_stats, mut sampled_stats, mut sampled) = (None, None, Vec::new());
    for _ in 0..runs {
        let mut cache = b.new_cache(c.n_layers, prompt + gen + 1, c.attn)?;
        b.finish()?;
        let t = Instant::now();
        let out = model.forward(&b, &mut cache, &ids, 0, false)?;
        let mut next = b.argmax(&out)?.unwrap_or(0);
        prefill.push(prompt as f64 / t.elapsed().as_secs_f64());

        let t = Instant::now();
        let mut rec = 0.0;
        for i in 0..gen {
            b.reset_stats();
            let t_rec = Instant::now();
            let out = model.forward(&b, &mut cache, &[next], prompt + i, false)?;
            rec += t_rec.elapsed().as_secs_f64();
            next = b.argmax(&out)?.unwrap_or(0);
            step_stats = Some(b.stats());
        }
        decode.push(gen as f64 / t.elapsed().as_secs_f64());
        record.push(rec / gen as f64);

        // The same, pipelined: the host one step ahead, tokens fed back on the GPU.
        let mut cache = b.new_cache(c.n_layers, prompt + gen + 1, c.attn)?;
        let out = model.forward(&b, &mut cache, &ids, 0, false)?;
        b.finish()?;
        let t = Instant::now();
        let tokens = decode::greedy(&model, &b, &mut cache, &out, prompt, gen, |_| true)?;
        pipelined.push(tokens.len() as f64 / t.elapsed().as_secs_f64());

        // Three candidates decoded together (as `nib complete --n 3`): forked caches, one pass
        // per step for the three; tokens per second over all of them.
        let mut forks = Vec::new();
        for _ in 0..CANDIDATES {
            forks.push(b.fork_cache(&cache, prompt, prompt + gen + 1)?.ok_or("the GPU backend cannot fork caches")?);
        }
        b.finish()?;
        let t = Instant::now();
        for i in 0..gen {
            let mut caches: Vec<&mut _> = forks.iter_mut().collect();
            let out = model.forward_rows(&b, &mut caches, &[next; CANDIDATES], &[prompt + i; CANDIDATES])?;
            next = b.argmax(&out)?.unwrap_or(0);
        }
        together.push((CANDIDATES * gen) as f64 / t.elapsed().as_secs_f64());

        // Sampled decoding (top-k 40, temperature 0.8): the candidates are selected on the GPU,
        // so a step reads back the top-k list, not the vocabulary's logits.
        let mut cache = b.new_cache(c.n_layers, prompt + gen + 1, c.attn)?;
        let mut out = model.forward(&b, &mut cache, &ids, 0, false)?;
        let mut sampler = Sampler::new(SamplerConfig { temperature: 0.8, top_k: SAMPLED_TOP_K, top_p: 1.0, seed: 1 })?;
        b.finish()?;
        let t = Instant::now();
        for i in 0..gen {
            b.reset_stats();
            let top = ready(b.top_k_async(&out, SAMPLED_TOP_K, 0.8))??;
            let next = sampler.sample_top(&top)?.ok_or("a top-k draw needs no more logits")?;
            sampled_stats = Some(b.stats());
            out = model.forward(&b, &mut cache, &[next.id], prompt + i, false)?;
        }
        sampled.push(gen as f64 / t.elapsed().as_secs_f64());
    }
    let s = step_stats.unwrap_or_default();
    Ok(json!({
        "model": label,
        "variant": variant,
        "adapter": b.name(),
        "file_bytes": file_bytes,
        "load_s": load_s,
        "prompt_tokens": prompt,
        "gen_tokens": gen,
        "runs": runs,
        "prefill_tok_s": median(prefill.clone()),
        "decode_tok_s": median(decode.clone()),
        "decode_step_ms": 1e3 / median(decode.clone()),
        "decode_pipelined_tok_s": median(pipelined.clone()),
        "decode_3_candidates_tok_s": median(together),
        "host_record_ms_per_step": median(record) * 1e3,
        "dispatches_per_step": s.dispatches,
        "submits_per_step": s.submits,
        "bytes_read_per_step": s.bytes_read,
        "sampled_decode_tok_s": median(sampled),
        "bytes_read_per_sampled_step": sampled_stats.unwrap_or_default().bytes_read,
        "prefill_runs": prefill,
        "decode_runs": decode,
    }))
}

/// Candidates decoded together in the whole-model run.
const CANDIDATES: usize = 3;

/// The top-k of the sampled decode in the whole-model run.
const SAMPLED_TOP_K: usize = 40;

/// The value of a future that is ready at once (natively every GPU readback blocks).
fn ready<T>(f: impl std::future::Future<Output = T>) -> Res<T> {
    match std::future::Future::poll(std::pin::pin!(f), &mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(v) => Ok(v),
        std::task::Poll::Pending => Err("a native readback was pending".into()),
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("gpu_bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    // Only the roofs and the matvec tables (a short run to compare kernels).
    let matvec_only = args.iter().any(|a| a == "--matvec-only");
    let opt = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let model_file = opt("--model");
    let out_file = opt("--out");
    // Quick: a smoke test of the whole script on a software adapter.
    let (copy_bytes, copy_reps, mv_reps, runs, prompt, gen) = if quick { (16 << 20, 2, 3, 1, 32, 4) } else { (1 << 30, 10, 200, 3, 512, 128) };
    let mut rng = Rng(0x5eed_0b1d);

    let probe = GpuBackend::new(Arc::new(ModelBytes::Owned(Vec::new())))?;
    let adapter = probe.describe();
    eprintln!("adapter: {adapter}");
    if args.iter().any(|a| a == "--probe") {
        return Ok(());
    }
    let copy_bw = copy_bandwidth(&probe, copy_bytes, copy_reps)?;
    eprintln!("copy bandwidth: {:.1} GB/s (read + written)", copy_bw / 1e9);
    let read_bytes = (if quick { 16u64 << 20 } else { 1 << 30 }).min(probe.context().max_binding() / 16 * 16);
    let read_bw = read_bandwidth(&probe, read_bytes, copy_reps)?;
    eprintln!("WGSL read kernel: {:.1} GB/s", read_bw / 1e9);
    // The same over as many bytes as the largest matrix (the 0.5B output, 76.6 MB): what a
    // dispatch of that size can reach.
    let out_bytes = (QWEN.vocab * QWEN.dim / 32 * 18) as u64;
    let read_out_bw = read_bandwidth(&probe, out_bytes.min(read_bytes), mv_reps)?;
    let floor_us = dispatch_floor(&probe, if quick { 50 } else { 2000 })?;
    eprintln!("dependent dispatch: {floor_us:.2} µs");

    let mut matvec = Vec::new();
    let mut ops = Vec::new();
    for shape in [SMOLLM, QWEN] {
        matvec.extend(matvec_rates(&probe, &shape, &mut rng, mv_reps, copy_bw)?);
        if !matvec_only {
            ops.extend(layer_ops(&probe, &shape, &mut rng, mv_reps, if quick { 40 } else { 576 })?);
        }
    }
    let variant_names: Vec<String> = variants(&probe).iter().map(variant_name).collect();
    drop(probe);

    // Each model with the backend's choice of matvec variant, then with the first kernel's
    // (one row per 32 lanes, workgroup sums) for comparison.
    let first = Tuning { subgroup: None, matvec_rows: Some(1), matvec_q8: Some(false), matvec_wide: Some(false), f16: Some(false) };
    let mut models = Vec::new();
    let smollm = match &model_file {
        Some(path) => (ModelBytes::open(std::path::Path::new(path))?, format!("{} (file {path})", SMOLLM.name)),
        None => (ModelBytes::Owned(synthetic_gguf(&SMOLLM, &mut rng)?), format!("{} (shapes, random weights)", SMOLLM.name)),
    };
    let qwen = ModelBytes::Owned(synthetic_gguf(&QWEN, &mut rng)?);
    for (bytes, label) in [(Arc::new(smollm.0), smollm.1), (Arc::new(qwen), format!("{} (shapes, Q4_0, random weights)", QWEN.name))] {
        for tuning in [None, Some(first)].into_iter().filter(|_| !matvec_only) {
            models.push(whole_model(&bytes, &label, tuning, runs, prompt, gen, &mut rng)?);
        }
    }

    let f = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let s = |v: &Value, k: &str| v.get(k).map(|x| x.to_string().trim_matches('"').to_string()).unwrap_or_default();
    println!("adapter: {}", models.first().map_or(adapter, |m| s(m, "adapter")));
    println!("copy bandwidth (read + written): {:.1} GB/s", copy_bw / 1e9);
    println!("one dependent dispatch of an empty kernel: {floor_us:.2} µs\n");
    println!("WGSL kernel reading a {} MiB buffer: {:.1} GB/s; {:.1} MB (the 0.5B output matrix): {:.1} GB/s\n", read_bytes >> 20, read_bw / 1e9, out_bytes.min(read_bytes) as f64 / 1e6, read_out_bw / 1e9);
    println!("Each matrix-vector product alone, the backend's choice of variant (GB/s of weight read; shares of wgpu's copy and of the read kernel):\n");
    println!("| model | matrix | rows × cols | format | variant | µs | GB/s | share of wgpu copy | share of read kernel |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for m in &matvec {
        println!(
            "| {} | {} | {} × {} | {} | {} | {:.1} | {:.1} | {:.0}% | {:.0}% |",
            s(m, "model"),
            s(m, "matrix"),
            s(m, "rows"),
            s(m, "cols"),
            s(m, "format"),
            s(m, "variant"),
            f(m, "us"),
            f(m, "gb_s"),
            100.0 * f(m, "share_of_copy"),
            100.0 * f(m, "gb_s") * 1e9 / read_bw
        );
    }
    let names = &variant_names;
    println!("\nµs of each matvec variant (R: weight rows per 32 lanes):\n");
    println!("| model | matrix | {} |", names.join(" | "));
    println!("|---|---|{}", "---|".repeat(names.len()));
    for m in &matvec {
        let us: Vec<String> = m["variants"].as_array().map(|v| v.iter().map(|x| format!("{:.1}", f(x, "us"))).collect()).unwrap_or_default();
        println!("| {} | {} | {} |", s(m, "model"), s(m, "matrix"), us.join(" | "));
    }
    println!("\n| model | op of a decode layer | dispatches | µs |");
    println!("|---|---|---|---|");
    for o in &ops {
        println!("| {} | {} | {} | {:.1} |", s(o, "model"), s(o, "op"), s(o, "dispatches"), f(o, "us"));
    }
    println!("\n| model | matvec variant | load s | prefill tok/s ({prompt}) | decode tok/s ({gen}) | pipelined decode tok/s | {CANDIDATES} candidates together, tok/s | ms/step | host record ms/step | dispatches/step | submits/step | bytes read/step | sampled (top-k {SAMPLED_TOP_K}) tok/s | bytes read/sampled step |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for m in &models {
        println!(
            "| {} | {} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {} | {} | {} | {:.1} | {} |",
            s(m, "model"),
            s(m, "variant"),
            f(m, "load_s"),
            f(m, "prefill_tok_s"),
            f(m, "decode_tok_s"),
            f(m, "decode_pipelined_tok_s"),
            f(m, "decode_3_candidates_tok_s"),
            f(m, "decode_step_ms"),
            f(m, "host_record_ms_per_step"),
            s(m, "dispatches_per_step"),
            s(m, "submits_per_step"),
            s(m, "bytes_read_per_step"),
            f(m, "sampled_decode_tok_s"),
            s(m, "bytes_read_per_sampled_step")
        );
    }
    let report = json!({ "copy_bandwidth_gb_s": copy_bw / 1e9, "read_kernel_gb_s": read_bw / 1e9, "read_kernel_output_size_gb_s": read_out_bw / 1e9, "dependent_dispatch_us": floor_us, "matvec": matvec, "layer_ops": ops, "models": models, "quick": quick });
    if let Some(path) = out_file {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}
