//! The GPU backend: the op set of [`Backend`] as WGSL compute kernels through wgpu (Vulkan
//! natively; lavapipe where there is no GPU).
//!
//! - Weights are uploaded as the file's GGML blocks, as u32 words (Q4_0, Q4_1 and Q8_0 blocks
//!   in 16-byte-aligned groups of 8: `layout`), and dequantized inside the kernels (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, F16, F32); a weight larger than the device's largest storage
//!   binding is split by rows into parts, each dispatched on its own.
//! - Ops are recorded into one pending command encoder (in one compute pass while no copy
//!   intervenes) and submitted only when the host reads something back, so a decode step is
//!   one submit; [`GpuBackend::argmax`] reads back 4 bytes instead of the logits.
//! - The KV cache lives on the GPU in f16, as in the CPU backend and llama.cpp.
//! - A lost device or a device error turns every later op into an `Error::Gpu` naming it.
//!
//! The same kernels run in the browser (wasm32, WebGPU): there the [`Backend`] trait's
//! synchronous `to_vec` is refused, and callers read results with [`Backend::to_vec_async`]
//! or [`GpuBackend::argmax_async`] after [`Model::eval_tensor`] has recorded and submitted a
//! forward pass.

pub mod context;
pub mod decode;
mod layout;
pub mod ops;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::backend::{AttnShape, Backend, Rope};
use crate::error::{Error, GpuFailure, Result};
use crate::gguf::{Gguf, ModelBytes, TensorInfo};
use crate::model::Model;
use crate::sample::{Sampled, TopK};
use crate::quant::{self, GgmlType};
pub use context::GpuStats;
pub use context::{Gpu, Tuning};
use context::PooledBuffer;
use ops::{AttnCall, WeightView};

/// The bit pattern poisoned outputs are filled with: a quiet NaN.
const POISON: u32 = 0x7fc0_0000;

/// The most bytes of attention's split scratch (`part_o`: rows × heads × 64-position splits ×
/// head_dim f32) one attention dispatch uses; a prefill takes its query rows in blocks that fit.
/// Unblocked, a 512-token chunk of a 3B model (16 heads of 128) at 2.3k positions needed 151 MB,
/// past WebGPU's default 128 MiB binding (and a 256 MiB pool class where the device allowed it).
/// 32 MiB is a quarter of that default, so it fits every WebGPU device with room for the
/// activations beside it, and it still holds 65,536 (head, row, split) workgroups of head_dim
/// 128 per dispatch, far more than any GPU runs at once: the blocks cost only their extra
/// dispatches (2 each), and decode steps and prefills under it run in one block as before.
pub const ATTN_SCRATCH: u64 = 32 << 20;

/// Activations `(rows, cols)` f32 in a GPU buffer (possibly larger than the tensor).
pub struct GpuTensor {
    pub rows: usize,
    pub cols: usize,
    buf: Arc<PooledBuffer>,
    /// The same rows in 8 bits (`ops::q8_bytes`), where the norm that wrote them knew the
    /// product after it takes x so (`add_rms_norm_before`). Ops that write the tensor in
    /// place drop it.
    q8: Option<Arc<PooledBuffer>>,
}

impl GpuTensor {
    fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Whether the tensor also holds its rows in 8 bits for the matvec after it.
    pub fn has_x8(&self) -> bool {
        self.q8.is_some()
    }

    fn buffer(&self) -> &wgpu::Buffer {
        &self.buf.buffer
    }
}

/// Rows `row0 .. row0 + rows` of a weight, in one storage buffer.
struct WeightPart {
    row0: usize,
    rows: usize,
    buffer: wgpu::Buffer,
}

/// A weight in the file's block format, split by rows into parts that each fit one binding.
pub struct GpuWeight {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    row_bytes: usize,
    parts: Vec<WeightPart>,
    /// 1-row weights (norms) dequantized to f32 for the kernels that take a vector.
    vector: Option<wgpu::Buffer>,
}

impl GpuWeight {
    /// Number of buffers the weight was split into.
    pub fn n_parts(&self) -> usize {
        self.parts.len()
    }

    fn views(&self) -> impl Iterator<Item = WeightView<'_>> {
        self.parts.iter().map(|p| WeightView { ty: self.ty, buffer: &p.buffer, row0: p.row0, rows: p.rows, cols: self.cols, row_bytes: self.row_bytes })
    }
}

/// Keys and values of every layer, `(n_kv_heads, max_ctx, head_dim)` f16 per layer.
pub struct GpuCache {
    k: Vec<wgpu::Buffer>,
    v: Vec<wgpu::Buffer>,
    max_ctx: usize,
    shape: AttnShape,
    /// The device's bind-group cache, whose groups over these buffers go when the cache does.
    bind_groups: context::BindGroups,
}

impl Drop for GpuCache {
    /// Forgets the bind groups over this cache's buffers, which would otherwise keep them
    /// allocated (the forks of a request for several candidates: hundreds of MB on a large model).
    fn drop(&mut self) {
        self.bind_groups.forget(self.k.iter().chain(&self.v));
    }
}

impl GpuCache {
    pub fn max_ctx(&self) -> usize {
        self.max_ctx
    }

    /// Every layer's key and value buffers.
    pub fn buffers(&self) -> impl Iterator<Item = &wgpu::Buffer> {
        self.k.iter().chain(&self.v)
    }
}

/// The key of a rope table: θ base and scale bits, rotated dims.
type RopeKey = (u32, u32, usize);

pub struct GpuBackend {
    gpu: Gpu,
    bytes: Arc<ModelBytes>,
    /// Largest weight part in bytes (the device's binding limit unless a test lowers it).
    part_bytes: u64,
    /// Bytes of attention's split scratch (`part_o`) one dispatch may use: a prefill's query
    /// rows go through attention in blocks that stay within it ([`ATTN_SCRATCH`] unless a test
    /// lowers it).
    attn_scratch: AtomicU64,
    poison: AtomicBool,
    /// (cos, sin) tables by rope configuration: (positions covered, buffer).
    rope_tables: Mutex<HashMap<RopeKey, (usize, Arc<wgpu::Buffer>)>>,
}

fn shape_err(op: &str, detail: String) -> Error {
    Error::InvalidArgument(format!("{op}: {detail}"))
}

impl GpuBackend {
    /// A backend over the bytes of one model file, on the first GPU adapter wgpu finds.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(bytes: Arc<ModelBytes>) -> Result<Self> {
        Ok(Self::on(Gpu::new()?, bytes))
    }

    /// [`GpuBackend::new`] for every target (in the browser, on its WebGPU adapter).
    pub async fn new_async(bytes: Arc<ModelBytes>) -> Result<Self> {
        Ok(Self::on(Gpu::new_async().await?, bytes))
    }

    fn on(gpu: Gpu, bytes: Arc<ModelBytes>) -> Self {
        let part_bytes = gpu.max_binding();
        let attn_scratch = AtomicU64::new(ATTN_SCRATCH.min(part_bytes));
        GpuBackend { gpu, bytes, part_bytes, attn_scratch, poison: AtomicBool::new(false), rope_tables: Mutex::new(HashMap::new()) }
    }

    /// As [`GpuBackend::new`], splitting weights into parts of at most `part_bytes` (tests use
    /// this to exercise the split that large vocabularies need on small devices).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_part_limit(bytes: Arc<ModelBytes>, part_bytes: u64) -> Result<Self> {
        let mut b = Self::new(bytes)?;
        b.part_bytes = part_bytes.clamp(64, b.part_bytes);
        Ok(b)
    }

    /// Sets the most bytes of attention scratch one dispatch uses (default [`ATTN_SCRATCH`],
    /// never above the device's largest binding): tests lower it to take a prefill's rows
    /// through attention in several blocks. A block has at least one row, whatever the limit.
    pub fn set_attn_scratch(&self, bytes: u64) {
        self.attn_scratch.store(bytes.min(self.gpu.max_binding()), Ordering::Relaxed);
    }

    /// The adapter and the limits the device got.
    pub fn describe(&self) -> String {
        self.gpu.describe()
    }

    /// Loses the device on purpose ([`Gpu::destroy`]): for tests of device loss.
    pub fn lose_device(&self) {
        self.gpu.destroy();
    }

    /// Uploads a weight `(rows, cols)` of block format `ty` from its bytes (`load_weight` without
    /// a file: kernel tests use it).
    pub fn weight(&self, name: &str, ty: GgmlType, rows: usize, cols: usize, data: &[u8]) -> Result<GpuWeight> {
        self.gpu.check()?;
        if !ops::supported(ty) {
            return Err(Error::Unsupported(format!("{name}: block format {} on the GPU backend", ty.name())));
        }
        let file_row_bytes = ty
            .bytes_for(cols as u64)
            .and_then(|b| usize::try_from(b).ok())
            .filter(|&b| b > 0 && rows.checked_mul(b) == Some(data.len()))
            .ok_or_else(|| Error::Model(format!("{name}: {} bytes for ({rows}, {cols}) {}", data.len(), ty.name())))?;
        let row_bytes = layout::row_bytes(ty, file_row_bytes);
        // Parts of whole rows, each with 4 bytes of padding for the kernels' unaligned reads.
        let rows_per_part = usize::try_from((self.part_bytes.saturating_sub(8)) / row_bytes as u64).unwrap_or(usize::MAX).min(rows);
        if rows_per_part == 0 {
            return Err(Error::Unsupported(format!("{name}: one row of {row_bytes} bytes exceeds the device's storage binding limit of {} bytes (the lesser of max_storage_buffer_binding_size and max_buffer_size)", self.part_bytes)));
        }
        let mut parts = Vec::new();
        for row0 in (0..rows).step_by(rows_per_part) {
            let n = rows_per_part.min(rows - row0);
            let bytes = data.get(row0 * file_row_bytes..(row0 + n) * file_row_bytes).ok_or_else(|| Error::Model(format!("{name}: rows past the data")))?;
            let buffer = self.gpu.upload_with(name, n * row_bytes, 4, |out| layout::push_rows(ty, file_row_bytes, bytes, out))?;
            parts.push(WeightPart { row0, rows: n, buffer });
        }
        let vector = if rows == 1 {
            let mut v = vec![0f32; cols];
            quant::dequantize(ty, data, &mut v)?;
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            Some(self.gpu.upload(name, &bytes, 0)?)
        } else {
            None
        };
        Ok(GpuWeight { ty, rows, cols, row_bytes, parts, vector })
    }

    /// Whether the adapter is a CPU implementation (lavapipe, SwiftShader): correct, but slower
    /// than the CPU backend, so `--backend auto` should not pick it.
    pub fn is_software(&self) -> bool {
        self.gpu.is_software()
    }

    /// When on, every output tensor is filled with NaN before its kernel writes it, so that
    /// elements a kernel forgets show up in tests.
    pub fn set_poison(&self, on: bool) {
        self.poison.store(on, Ordering::Relaxed);
    }

    pub fn stats(&self) -> GpuStats {
        self.gpu.stats()
    }

    /// The device and its queue (benchmarks time raw copies on it).
    pub fn context(&self) -> &Gpu {
        &self.gpu
    }

    /// Submits the pending work and waits until the GPU has finished it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn finish(&self) -> Result<()> {
        self.gpu.flush()?;
        self.gpu.wait()
    }

    pub fn reset_stats(&self) {
        self.gpu.reset_stats()
    }

    /// Uploads `(rows, cols)` f32 values as a tensor.
    pub fn tensor(&self, rows: usize, cols: usize, data: &[f32]) -> Result<GpuTensor> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(Error::InvalidArgument(format!("tensor ({rows}, {cols}) given {} values", data.len())));
        }
        let t = self.output(rows, cols)?;
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        let src = self.gpu.upload("nib input", &bytes, 0)?;
        if !bytes.is_empty() {
            self.gpu.copy(&src, 0, t.buffer(), 0, bytes.len() as u64)?;
        }
        Ok(t)
    }

    /// The index of the largest finite value in the last row of `x`, computed on the GPU: the
    /// step's only readback is these 4 bytes (see also [`Backend::greedy_async`]). `None` when the row has no finite value.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn argmax(&self, x: &GpuTensor) -> Result<Option<u32>> {
        let out = self.record_argmax(x)?;
        index_of(&self.gpu.read(&out.buffer, 0, 4)?)
    }

    /// [`GpuBackend::argmax`] for every target.
    pub async fn argmax_async(&self, x: &GpuTensor) -> Result<Option<u32>> {
        let out = self.record_argmax(x)?;
        index_of(&self.gpu.read_async(&out.buffer, 0, 4).await?)
    }

    /// Rows `ids` of an embedding table, with the `n` ids read from a GPU buffer (an argmax's
    /// output): a decode step that never waits for its token on the host.
    pub fn embed_ids(&self, table: &GpuWeight, ids: &wgpu::Buffer, n: usize) -> Result<GpuTensor> {
        let out = self.output(n, table.cols)?;
        for part in table.views() {
            // Ids past the table are caught by the kernel's bounds (zero rows), never read.
            ops::embed(&self.gpu, &part, ids, n, out.buffer())?;
        }
        Ok(out)
    }

    /// Records the argmax of the last row of `x` (index, value, log-sum-exp) into a buffer of
    /// [`ops::ARGMAX_BYTES`] without reading it back.
    pub fn record_argmax(&self, x: &GpuTensor) -> Result<PooledBuffer> {
        if x.rows == 0 || x.cols == 0 {
            return Err(shape_err("argmax", "empty tensor".into()));
        }
        let out = self.gpu.alloc(ops::ARGMAX_BYTES)?;
        ops::argmax(&self.gpu, x.buffer(), (x.rows - 1) * x.cols, x.cols, &out.buffer)?;
        Ok(out)
    }

    /// Records the top-k of the last row of `x` (topk.wgsl): the buffer its list lands in.
    fn record_top_k(&self, x: &GpuTensor, k: usize, inv_t: f32) -> Result<PooledBuffer> {
        if x.rows == 0 || k == 0 || k > crate::sample::MAX_TOP_K {
            return Err(shape_err("top_k", format!("{k} of ({}, {}) (k from 1 to {})", x.rows, x.cols, crate::sample::MAX_TOP_K)));
        }
        if ops::top_k_chunks(x.cols) > ops::TOPK_CHUNK {
            return Err(Error::Unsupported(format!("top-k over rows of {} (at most {})", x.cols, ops::TOPK_CHUNK * ops::TOPK_CHUNK)));
        }
        let list = ops::top_k_words(k) as u64 * 4;
        let out = self.gpu.alloc(list)?;
        let part = self.gpu.alloc(list * ops::top_k_chunks(x.cols) as u64)?;
        if self.poison.load(Ordering::Relaxed) {
            ops::fill(&self.gpu, &out.buffer, ops::top_k_words(k), POISON)?;
            ops::fill(&self.gpu, &part.buffer, ops::top_k_words(k) * ops::top_k_chunks(x.cols), POISON)?;
        }
        ops::top_k(&self.gpu, x.buffer(), (x.rows - 1) * x.cols, x.cols, k, inv_t, &part.buffer, &out.buffer)?;
        Ok(out)
    }

    /// Waits for the work submitted so far and reports any error the device raised meanwhile
    /// (out of memory while uploading weights, say).
    pub async fn settle(&self) -> Result<()> {
        self.gpu.settle().await
    }

    /// A fresh `(rows, cols)` tensor, poisoned when [`GpuBackend::set_poison`] is on.
    fn output(&self, rows: usize, cols: usize) -> Result<GpuTensor> {
        let len = rows.checked_mul(cols).ok_or_else(|| shape_err("tensor", format!("({rows}, {cols}) overflows")))?;
        let buf = self.gpu.alloc(len as u64 * 4)?;
        if self.poison.load(Ordering::Relaxed) && len > 0 {
            ops::fill(&self.gpu, &buf.buffer, len, POISON)?;
        }
        Ok(GpuTensor { rows, cols, buf: Arc::new(buf), q8: None })
    }

    /// The (cos, sin) table covering positions `0..positions` for `rope`, computed with the CPU
    /// backend's arithmetic and grown (doubling) when a longer context needs it.
    fn rope_table(&self, rope: &Rope, positions: usize) -> Result<Arc<wgpu::Buffer>> {
        let key = (rope.theta.to_bits(), rope.freq_scale.to_bits(), rope.dims);
        let mut tables = self.rope_tables.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((have, buf)) = tables.get(&key) {
            if *have >= positions {
                return Ok(Arc::clone(buf));
            }
        }
        let n = positions.max(1024).checked_next_power_of_two().ok_or_else(|| shape_err("rope", format!("{positions} positions")))?;
        let half = rope.dims / 2;
        let theta_scale = rope.theta.powf(-2.0 / rope.dims as f32);
        let mut bytes = Vec::with_capacity(n * half * 8);
        for p in 0..n {
            let mut theta = p as f32;
            for _ in 0..half {
                let a = rope.freq_scale * theta;
                bytes.extend_from_slice(&a.cos().to_le_bytes());
                bytes.extend_from_slice(&a.sin().to_le_bytes());
                theta *= theta_scale;
            }
        }
        let buf = Arc::new(self.gpu.upload("nib rope table", &bytes, 0)?);
        tables.insert(key, (n, Arc::clone(&buf)));
        Ok(buf)
    }
}

/// Checks one attention call's tensors and returns its geometry and the layer's caches.
fn attn_call<'c>(cache: &'c GpuCache, layer: usize, pos: usize, q: &GpuTensor, k: &GpuTensor, v: &GpuTensor, shape: AttnShape) -> Result<(AttnCall, &'c wgpu::Buffer, &'c wgpu::Buffer)> {
    let (n, kv_dim, q_dim) = (q.rows, shape.kv_dim(), shape.q_dim());
    if q.cols != q_dim || k.cols != kv_dim || v.cols != kv_dim || k.rows != n || v.rows != n {
        return Err(shape_err("attention", format!("q {:?}, k {:?}, v {:?} for {shape:?}", (q.rows, q.cols), (k.rows, k.cols), (v.rows, v.cols))));
    }
    attn_geometry(cache, layer, pos, n, shape)
}

/// Checks `n` tokens at `pos` of `shape` against the cache and returns the call's geometry and
/// the layer's caches.
fn attn_geometry(cache: &GpuCache, layer: usize, pos: usize, n: usize, shape: AttnShape) -> Result<(AttnCall, &wgpu::Buffer, &wgpu::Buffer)> {
    if cache.shape.n_kv_heads != shape.n_kv_heads || cache.shape.head_dim != shape.head_dim || shape.n_kv_heads == 0 || !shape.n_heads.is_multiple_of(shape.n_kv_heads) || shape.window == Some(0) {
        return Err(shape_err("attention", format!("{shape:?} against a cache of {:?}", cache.shape)));
    }
    pos.checked_add(n).filter(|&e| e <= cache.max_ctx).ok_or_else(|| {
        Error::InvalidArgument(format!("context full: {} positions needed, {} available", pos.saturating_add(n), cache.max_ctx))
    })?;
    match (cache.k.get(layer), cache.v.get(layer)) {
        (Some(kc), Some(vc)) => Ok((AttnCall { n, pos, n_heads: shape.n_heads, n_kv_heads: shape.n_kv_heads, head_dim: shape.head_dim, max_ctx: cache.max_ctx, window: shape.window }, kc, vc)),
        _ => Err(shape_err("attention", format!("layer {layer} has no cache"))),
    }
}

impl GpuBackend {
    /// Attends `q` over a layer's cache that already holds this call's keys and values, the
    /// query rows in blocks whose split scratch stays within `attn_scratch` (one block for a
    /// decode step or a short prefill).
    fn attend(&self, call: &AttnCall, q: &GpuTensor, kc: &wgpu::Buffer, vc: &wgpu::Buffer) -> Result<GpuTensor> {
        let out = self.output(call.n, call.n_heads * call.head_dim)?;
        // Every row of a block is sized for the last row's splits, the most any row has.
        let splits = (call.pos as u64 + call.n as u64).div_ceil(ops::ATTN_CHUNK as u64);
        let row_slots = call.n_heads as u64 * splits;
        let row_bytes = (row_slots * call.head_dim as u64 * 4).max(1);
        let fit = (self.attn_scratch.load(Ordering::Relaxed) / row_bytes).clamp(1, call.n.max(1) as u64) as usize;
        // Blocks of equal size (the last may be short by less than one row per block).
        let block = call.n.div_ceil(call.n.div_ceil(fit).max(1)).max(1);
        let part_o = self.gpu.alloc(block as u64 * row_bytes)?;
        let part_ml = self.gpu.alloc(block as u64 * row_slots * 8)?;
        ops::attend(&self.gpu, call, block, q.buffer(), kc, vc, &part_o.buffer, &part_ml.buffer, out.buffer())?;
        Ok(out)
    }

    /// `x += y`, then its RMSNorm; with `x8`, the output also in 8 bits for the matvec after
    /// it (rows of a multiple of 32 values, at most `ops::MATVEC_Q8_MAX_K`, in one binding;
    /// else without).
    fn add_norm(&self, x: &mut GpuTensor, y: &GpuTensor, weight: &GpuWeight, eps: f32, x8: bool) -> Result<GpuTensor> {
        if Arc::ptr_eq(&x.buf, &y.buf) {
            self.add_assign(x, y)?;
            return self.rms_norm(x, weight, eps);
        }
        if (x.rows, x.cols) != (y.rows, y.cols) {
            return Err(shape_err("add", format!("{:?} += {:?}", (x.rows, x.cols), (y.rows, y.cols))));
        }
        let g = weight.vector.as_ref().filter(|_| weight.cols == x.cols).ok_or_else(|| {
            shape_err("rms_norm", format!("weight ({}, {}) for rows of {}", weight.rows, weight.cols, x.cols))
        })?;
        x.q8 = None;
        let mut out = self.output(x.rows, x.cols)?;
        if x.len() == 0 {
            return Ok(out);
        }
        let x8 = x8 && x.cols.is_multiple_of(32) && x.cols <= ops::MATVEC_Q8_MAX_K && ops::q8_bytes(x.rows, x.cols) <= self.gpu.max_binding();
        let q8 = if x8 { Some(Arc::new(self.gpu.alloc(ops::q8_bytes(x.rows, x.cols))?)) } else { None };
        ops::add_rms_norm(&self.gpu, x.buffer(), y.buffer(), g, x.rows, x.cols, eps, out.buffer(), q8.as_ref().map(|q| &q.buffer))?;
        out.q8 = q8;
        Ok(out)
    }

    /// act(gate) · up (SwiGLU, GEGLU).
    fn gated(&self, act: ops::Act, gate: &GpuTensor, up: &GpuTensor) -> Result<GpuTensor> {
        if (gate.rows, gate.cols) != (up.rows, up.cols) {
            return Err(shape_err("gated activation", format!("gate {:?} vs up {:?}", (gate.rows, gate.cols), (up.rows, up.cols))));
        }
        let out = self.output(gate.rows, gate.cols)?;
        if gate.len() > 0 {
            ops::glu(&self.gpu, act, gate.buffer(), up.buffer(), gate.rows, gate.cols, gate.cols, 0, out.buffer())?;
        }
        Ok(out)
    }

    /// (act(gate) · up) · wᵀ, the activation applied as matvec reads its input (decode sizes;
    /// otherwise in two dispatches).
    fn gated_matmul(&self, act: ops::Act, gate: &GpuTensor, up: &GpuTensor, w: &GpuWeight) -> Result<GpuTensor> {
        if gate.rows > ops::MATVEC_MAX_TOKENS || gate.rows == 0 || Arc::ptr_eq(&gate.buf, &up.buf) {
            return self.matmul(&self.gated(act, gate, up)?, w);
        }
        if (gate.rows, gate.cols) != (up.rows, up.cols) || gate.cols != w.cols {
            return Err(shape_err("gated matmul", format!("gate {:?}, up {:?} · wᵀ with w ({}, {})", (gate.rows, gate.cols), (up.rows, up.cols), w.rows, w.cols)));
        }
        let out = self.output(gate.rows, w.rows)?;
        for part in w.views() {
            ops::matmul(&self.gpu, &part, gate.buffer(), ops::Fused::GatedInput(act, up.buffer()), gate.rows, w.rows, out.buffer())?;
        }
        Ok(out)
    }

    /// 1-D tensors of one format back to back as one `(1, Σ cols)` vector (the bias of a
    /// stacked product); `None` when their formats differ.
    fn concat_vectors(&self, gguf: &Gguf, infos: &[&TensorInfo]) -> Result<Option<GpuWeight>> {
        let Some(first) = infos.first() else { return Ok(None) };
        if !infos.iter().all(|i| i.dims.len() == 1 && i.ty == first.ty) {
            return Ok(None);
        }
        let mut data = Vec::new();
        let mut cols = 0usize;
        for info in infos {
            data.extend_from_slice(gguf.tensor_data(&self.bytes, info)?);
            cols = usize::try_from(info.dims[0]).ok().and_then(|c| cols.checked_add(c)).ok_or_else(|| Error::Model(format!("{}: too many columns", info.name)))?;
        }
        let name: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
        self.weight(&name.join("+"), first.ty, 1, cols, &data).map(Some)
    }

    /// RoPE on q and k, the KV append, and attention, reading q, k, v from `src`.
    /// One token for each of several sequences: row j of q, k and v (found in `src` at row
    /// offsets `row(j)`) goes to `caches[j]` at `positions[j]`. One RoPE + KV append + attention
    /// per row, each result copied into row j of the output `(n, q_dim)`.
    #[allow(clippy::too_many_arguments)]
    fn attend_rows(
        &self,
        caches: &mut [&mut GpuCache],
        layer: usize,
        positions: &[usize],
        shape: AttnShape,
        rope: &Rope,
        src: &ops::QkvSource,
        row: impl Fn(usize) -> [usize; 3],
    ) -> Result<GpuTensor> {
        let n = caches.len();
        if positions.len() != n {
            return Err(shape_err("attention", format!("{n} caches, {} positions", positions.len())));
        }
        let q_bytes = shape.q_dim() as u64 * 4;
        let out = self.output(n, shape.q_dim())?;
        for (j, (cache, &pos)) in caches.iter().zip(positions).enumerate() {
            let (call, kc, vc) = attn_geometry(cache, layer, pos, 1, shape)?;
            let at = row(j);
            let offsets = [src.offsets[0] + at[0], src.offsets[1] + at[1], src.offsets[2] + at[2]];
            let one = self.rope_attend(&call, rope, &ops::QkvSource { offsets, ..*src }, kc, vc)?; // (1, q_dim)
            self.gpu.copy(one.buffer(), 0, out.buffer(), j as u64 * q_bytes, q_bytes)?;
        }
        Ok(out)
    }

    /// `h · wqkvᵀ` for a stacked `[q; k; v]` weight, and the stacked bias, which rope_store adds
    /// as it reads q, k and v (no pass of its own).
    fn qkv_product<'w>(&self, h: &GpuTensor, wqkv: &'w GpuWeight, bias: Option<&'w GpuWeight>, shape: AttnShape) -> Result<(GpuTensor, Option<&'w wgpu::Buffer>)> {
        let total = shape.q_dim() + 2 * shape.kv_dim();
        if wqkv.rows != total {
            return Err(shape_err("qkv_attention", format!("a stacked weight of {} rows for {shape:?}", wqkv.rows)));
        }
        let bias = match bias {
            None => None,
            Some(b) => Some(b.vector.as_ref().filter(|_| b.cols == total).ok_or_else(|| {
                shape_err("qkv_attention", format!("a bias ({}, {}) for a stacked weight of {total} rows", b.rows, b.cols))
            })?),
        };
        Ok((self.matmul(h, wqkv)?, bias))
    }

    fn rope_attend(&self, call: &AttnCall, rope: &Rope, src: &ops::QkvSource, kc: &wgpu::Buffer, vc: &wgpu::Buffer) -> Result<GpuTensor> {
        if rope.dims > call.head_dim || !rope.dims.is_multiple_of(2) {
            return Err(shape_err("rope", format!("{} rotated of a head of {}", rope.dims, call.head_dim)));
        }
        let q = self.output(call.n, call.n_heads * call.head_dim)?;
        if call.n == 0 {
            return Ok(q);
        }
        // With nothing to rotate the kernel reads no angle: any small buffer stands in.
        let (table, none);
        let cs: &wgpu::Buffer = if rope.dims == 0 {
            none = self.gpu.alloc(8)?;
            &none.buffer
        } else {
            table = self.rope_table(rope, call.pos + call.n)?;
            &table
        };
        ops::rope_store(&self.gpu, call, cs, rope.dims / 2, rope.neox, src, q.buffer(), kc, vc)?;
        self.attend(call, &q, kc, vc)
    }
}

/// q, k and v as the columns of one stacked product `(n, q_dim + 2 kv_dim)`.
fn stacked_source<'a>(qkv: &'a GpuTensor, bias: Option<&'a wgpu::Buffer>, shape: AttnShape) -> ops::QkvSource<'a> {
    let (q_dim, kv_dim) = (shape.q_dim(), shape.kv_dim());
    let total = q_dim + 2 * kv_dim;
    ops::QkvSource { q: qkv.buffer(), k: qkv.buffer(), v: qkv.buffer(), q_stride: total, kv_stride: total, offsets: [0, q_dim, q_dim + kv_dim], bias }
}

fn index_of(b: &[u8]) -> Result<Option<u32>> {
    match *b {
        [a, b, c, d] => Ok(Some(u32::from_le_bytes([a, b, c, d])).filter(|&i| i != u32::MAX)),
        _ => Err(Error::gpu(GpuFailure::Failed, "argmax: short readback")),
    }
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Loads a GGUF model that is already in memory onto the GPU backend, on every target (the
/// browser's path); errors the device raised while uploading are reported here.
pub async fn load_model_async(bytes: ModelBytes) -> Result<Model<GpuBackend>> {
    load_model_on(Gpu::new_async().await?, bytes).await
}

/// [`load_model_async`] on a device already opened: the browser opens the device first, so
/// that without one the model's bytes stay with the caller for the CPU.
pub async fn load_model_on(gpu: Gpu, bytes: ModelBytes) -> Result<Model<GpuBackend>> {
    let bytes = Arc::new(bytes);
    let gguf = Gguf::parse(&bytes)?;
    let model = Model::new(GpuBackend::on(gpu, Arc::clone(&bytes)), &gguf)?;
    model.backend.settle().await?;
    Ok(model)
}

/// Loads a GGUF model that is already in memory onto the GPU backend.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_model(bytes: ModelBytes) -> Result<Model<GpuBackend>> {
    let bytes = Arc::new(bytes);
    let gguf = Gguf::parse(&bytes)?;
    let backend = GpuBackend::new(Arc::clone(&bytes))?;
    Model::new(backend, &gguf)
}

/// The adapter [`GpuBackend::new`] would open, found without opening a device or loading
/// anything: its name, and whether it is a software (CPU) implementation. `None` when there is no
/// adapter. `--backend auto` decides with this.
#[cfg(not(target_arch = "wasm32"))]
pub fn probe_adapter() -> Option<(String, bool)> {
    let info = context::request_adapter().ok()?.get_info();
    Some((info.name, info.device_type == wgpu::DeviceType::Cpu))
}

/// Opens a GGUF file (memory-mapped) onto the GPU backend.
#[cfg(not(target_arch = "wasm32"))]
pub fn open_model(path: &std::path::Path) -> Result<Model<GpuBackend>> {
    load_model(ModelBytes::open(path)?)
}

impl Backend for GpuBackend {
    type Tensor = GpuTensor;
    type Weight = GpuWeight;
    type Cache = GpuCache;

    /// "gpu (" + the adapter's name and API + ")".
    fn name(&self) -> String {
        format!("gpu ({}, {:?})", self.gpu.info.name, self.gpu.info.backend)
    }

    fn load_weight(&self, gguf: &Gguf, info: &TensorInfo) -> Result<GpuWeight> {
        self.gpu.check()?;
        let data = gguf.tensor_data(&self.bytes, info)?;
        let dim = |i: usize| usize::try_from(info.dims.get(i).copied().unwrap_or(1)).ok();
        let (cols, rows) = match (info.dims.len(), dim(0), dim(1)) {
            (1 | 2, Some(c), Some(r)) => (c, r),
            _ => return Err(Error::Model(format!("{}: {}-d tensors are not supported here", info.name, info.dims.len()))),
        };
        self.weight(&info.name, info.ty, rows, cols, data)
    }

    fn new_cache(&self, n_layers: usize, max_ctx: usize, shape: AttnShape) -> Result<GpuCache> {
        let hd = shape.head_dim;
        if hd == 0 || !hd.is_multiple_of(2) || hd > ops::MAX_HEAD_DIM || shape.n_kv_heads == 0 || !shape.n_heads.is_multiple_of(shape.n_kv_heads) {
            return Err(Error::Unsupported(format!("attention {shape:?} on the GPU backend (head_dim even and at most {})", ops::MAX_HEAD_DIM)));
        }
        // The model runs here: a context this long is more than the device binds (a request's
        // resource, not the model's), so out of memory rather than unsupported.
        let bytes = max_ctx
            .checked_mul(shape.kv_dim())
            .and_then(|x| x.checked_mul(2))
            .filter(|&b| (b as u64) <= self.gpu.max_binding())
            .ok_or_else(|| Error::gpu(GpuFailure::OutOfMemory, format!("a KV cache layer of {max_ctx} positions × {} does not fit one GPU binding ({} bytes)", shape.kv_dim(), self.gpu.max_binding())))?;
        // A dropped cache forgets its own bind groups (`GpuCache`'s Drop); starting over here
        // also lets go of other buffers only cached groups still hold (pooled buffers past the
        // pool's room, a replaced rope table).
        self.gpu.forget_bind_groups();
        let mk = |what: &str| {
            self.gpu.create_checked(&wgpu::BufferDescriptor {
                label: Some(what),
                size: (bytes as u64).max(4),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let k = (0..n_layers).map(|_| mk("nib k cache")).collect::<Result<Vec<_>>>()?;
        let v = (0..n_layers).map(|_| mk("nib v cache")).collect::<Result<Vec<_>>>()?;
        Ok(GpuCache { k, v, max_ctx, shape, bind_groups: self.gpu.bind_groups() })
    }

    fn embed(&self, table: &GpuWeight, ids: &[u32]) -> Result<GpuTensor> {
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= table.rows) {
            return Err(Error::InvalidArgument(format!("token id {id} is past the vocabulary ({})", table.rows)));
        }
        let out = self.output(ids.len(), table.cols)?;
        if ids.is_empty() {
            return Ok(out);
        }
        let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
        let ids_buf = self.gpu.upload("nib ids", &bytes, 0)?;
        for part in table.views() {
            ops::embed(&self.gpu, &part, &ids_buf, ids.len(), out.buffer())?;
        }
        Ok(out)
    }

    fn rms_norm(&self, x: &GpuTensor, weight: &GpuWeight, eps: f32) -> Result<GpuTensor> {
        // A row, or each head of one: runs of the weight's length, as rows of the kernel.
        let d = weight.cols;
        let g = weight.vector.as_ref().filter(|_| d > 0 && x.cols.is_multiple_of(d)).ok_or_else(|| {
            shape_err("rms_norm", format!("weight ({}, {}) for rows of {}", weight.rows, weight.cols, x.cols))
        })?;
        let out = self.output(x.rows, x.cols)?;
        if x.len() > 0 {
            ops::rms_norm(&self.gpu, x.buffer(), g, x.len() / d, d, eps, out.buffer())?;
        }
        Ok(out)
    }

    fn layer_norm(&self, x: &GpuTensor, weight: &GpuWeight, bias: &GpuWeight, eps: f32) -> Result<GpuTensor> {
        let (g, b) = (weight.vector.as_ref().filter(|_| weight.cols == x.cols), bias.vector.as_ref().filter(|_| bias.cols == x.cols));
        let (Some(g), Some(b)) = (g, b) else {
            return Err(shape_err("layer_norm", format!("weight ({}, {}), bias ({}, {}) for rows of {}", weight.rows, weight.cols, bias.rows, bias.cols, x.cols)));
        };
        let out = self.output(x.rows, x.cols)?;
        if x.len() > 0 {
            ops::layer_norm(&self.gpu, x.buffer(), g, b, x.rows, x.cols, eps, out.buffer())?;
        }
        Ok(out)
    }

    fn matmul(&self, x: &GpuTensor, w: &GpuWeight) -> Result<GpuTensor> {
        if x.cols != w.cols {
            return Err(shape_err("matmul", format!("x ({}, {}) · wᵀ with w ({}, {})", x.rows, x.cols, w.rows, w.cols)));
        }
        let out = self.output(x.rows, w.rows)?;
        let fused = x.q8.as_ref().map_or(ops::Fused::No, |q| ops::Fused::X8(&q.buffer));
        if x.rows > 0 {
            for part in w.views() {
                ops::matmul(&self.gpu, &part, x.buffer(), fused, x.rows, w.rows, out.buffer())?;
            }
        }
        Ok(out)
    }

    fn rope(&self, x: &mut GpuTensor, n_heads: usize, head_dim: usize, pos: usize, rope: &Rope) -> Result<()> {
        x.q8 = None;
        if x.cols != n_heads * head_dim || rope.dims > head_dim || !rope.dims.is_multiple_of(2) {
            return Err(shape_err("rope", format!("rows of {} for {n_heads} heads × {head_dim}, {} rotated", x.cols, rope.dims)));
        }
        let end = pos.checked_add(x.rows).ok_or_else(|| shape_err("rope", format!("position {pos}")))?;
        if x.rows == 0 || rope.dims == 0 {
            return Ok(());
        }
        let table = self.rope_table(rope, end)?;
        ops::rope(&self.gpu, x.buffer(), &table, x.rows, n_heads, head_dim, rope.dims / 2, pos, rope.neox)
    }

    fn attention(&self, cache: &mut GpuCache, layer: usize, pos: usize, q: &GpuTensor, k: &GpuTensor, v: &GpuTensor, shape: AttnShape) -> Result<GpuTensor> {
        let (call, kc, vc) = attn_call(cache, layer, pos, q, k, v, shape)?;
        if call.n == 0 {
            return self.output(0, shape.q_dim());
        }
        ops::kv_store(&self.gpu, &call, k.buffer(), v.buffer(), kc, vc)?;
        self.attend(&call, q, kc, vc)
    }

    fn rope_attention(
        &self,
        cache: &mut GpuCache,
        layer: usize,
        pos: usize,
        q: &mut GpuTensor,
        k: &mut GpuTensor,
        v: &GpuTensor,
        shape: AttnShape,
        rope: &Rope,
    ) -> Result<GpuTensor> {
        (q.q8, k.q8) = (None, None);
        let (call, kc, vc) = attn_call(cache, layer, pos, q, k, v, shape)?;
        let (q_dim, kv_dim) = (shape.q_dim(), shape.kv_dim());
        let src = ops::QkvSource { q: q.buffer(), k: k.buffer(), v: v.buffer(), q_stride: q_dim, kv_stride: kv_dim, offsets: [0, 0, 0], bias: None };
        self.rope_attend(&call, rope, &src, kc, vc)
    }

    /// Copies each KV head's first `len` positions: the cache is `(n_kv_heads, max_ctx,
    /// head_dim)` f16 per layer, so a new `max_ctx` moves every head's start.
    fn fork_cache(&self, cache: &GpuCache, len: usize, max_ctx: usize) -> Result<Option<GpuCache>> {
        if len > cache.max_ctx || len > max_ctx {
            return Err(Error::InvalidArgument(format!("cannot fork {len} positions of a cache of {} into one of {max_ctx}", cache.max_ctx)));
        }
        let out = self.new_cache(cache.k.len(), max_ctx, cache.shape)?;
        let head = cache.shape.head_dim as u64 * 2; // bytes per position of one head (even head_dim: whole words)
        for (src, dst) in cache.k.iter().zip(&out.k).chain(cache.v.iter().zip(&out.v)) {
            for g in 0..cache.shape.n_kv_heads as u64 {
                if len > 0 {
                    self.gpu.copy(src, g * cache.max_ctx as u64 * head, dst, g * max_ctx as u64 * head, len as u64 * head)?;
                }
            }
        }
        Ok(Some(out))
    }

    fn rope_attention_rows(
        &self,
        caches: &mut [&mut GpuCache],
        layer: usize,
        positions: &[usize],
        q: &mut GpuTensor,
        k: &mut GpuTensor,
        v: &GpuTensor,
        shape: AttnShape,
        rope: &Rope,
    ) -> Result<GpuTensor> {
        (q.q8, k.q8) = (None, None);
        let (n, q_dim, kv_dim) = (caches.len(), shape.q_dim(), shape.kv_dim());
        if (q.rows, q.cols, k.rows, k.cols, v.rows, v.cols) != (n, q_dim, n, kv_dim, n, kv_dim) {
            return Err(shape_err("attention", format!("q {:?}, k {:?}, v {:?} for {n} rows of {shape:?}", (q.rows, q.cols), (k.rows, k.cols), (v.rows, v.cols))));
        }
        let src = ops::QkvSource { q: q.buffer(), k: k.buffer(), v: v.buffer(), q_stride: q_dim, kv_stride: kv_dim, offsets: [0, 0, 0], bias: None };
        self.attend_rows(caches, layer, positions, shape, rope, &src, |j| [j * q_dim, j * kv_dim, j * kv_dim])
    }

    fn qkv_attention_rows(
        &self,
        caches: &mut [&mut GpuCache],
        layer: usize,
        positions: &[usize],
        h: &GpuTensor,
        wqkv: &GpuWeight,
        bias: Option<&GpuWeight>,
        shape: AttnShape,
        rope: &Rope,
    ) -> Result<GpuTensor> {
        if h.rows != caches.len() {
            return Err(shape_err("qkv_attention", format!("{} rows for {} caches", h.rows, caches.len())));
        }
        let (qkv, bias) = self.qkv_product(h, wqkv, bias, shape)?; // (n, q_dim + 2 kv_dim)
        let src = stacked_source(&qkv, bias, shape);
        self.attend_rows(caches, layer, positions, shape, rope, &src, |j| [j * src.q_stride; 3])
    }

    fn stack_weights(&self, gguf: &Gguf, infos: &[&TensorInfo]) -> Result<Option<GpuWeight>> {
        let Some(first) = infos.first() else { return Ok(None) };
        if first.dims.len() == 1 {
            return self.concat_vectors(gguf, infos);
        }
        let two_d = |i: &TensorInfo| i.dims.len() == 2 && i.ty == first.ty && i.dims.first() == first.dims.first();
        if !ops::supported(first.ty) || !infos.iter().all(|i| two_d(i)) {
            return Ok(None);
        }
        let mut data = Vec::new();
        let mut rows = 0usize;
        for info in infos {
            let bytes = gguf.tensor_data(&self.bytes, info)?;
            if (data.len() + bytes.len()) as u64 + 8 > self.part_bytes {
                return Ok(None);
            }
            data.extend_from_slice(bytes);
            rows += usize::try_from(info.dims[1]).map_err(|_| Error::Model(format!("{}: too many rows", info.name)))?;
        }
        let cols = usize::try_from(first.dims[0]).map_err(|_| Error::Model(format!("{}: too many columns", first.name)))?;
        // Grouped blocks pad rows (layout.rs): the stack must still be one part.
        if rows > 0 && (rows * layout::row_bytes(first.ty, data.len() / rows)) as u64 + 8 > self.part_bytes {
            return Ok(None);
        }
        let name: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
        self.weight(&name.join("+"), first.ty, rows, cols, &data).map(Some)
    }

    fn qkv_attention(
        &self,
        cache: &mut GpuCache,
        layer: usize,
        pos: usize,
        h: &GpuTensor,
        wqkv: &GpuWeight,
        bias: Option<&GpuWeight>,
        shape: AttnShape,
        rope: &Rope,
    ) -> Result<GpuTensor> {
        let (qkv, bias) = self.qkv_product(h, wqkv, bias, shape)?; // (n, q_dim + 2 kv_dim)
        let (call, kc, vc) = attn_geometry(cache, layer, pos, h.rows, shape)?;
        self.rope_attend(&call, rope, &stacked_source(&qkv, bias, shape), kc, vc)
    }

    fn glu(&self, h: &GpuTensor, w: &GpuWeight) -> Result<GpuTensor> {
        if !w.rows.is_multiple_of(2) || w.cols != h.cols {
            return Err(shape_err("glu", format!("x ({}, {}) with a stacked gate/up weight ({}, {})", h.rows, h.cols, w.rows, w.cols)));
        }
        let f = w.rows / 2;
        let out = self.output(h.rows, f)?;
        if h.rows == 0 {
            return Ok(out);
        }
        match w.parts.as_slice() {
            [_] if h.rows <= ops::MATVEC_MAX_TOKENS => {
                for part in w.views() {
                    ops::matmul(&self.gpu, &part, h.buffer(), ops::Fused::Glu, h.rows, f, out.buffer())?;
                }
            }
            _ => {
                let gu = self.matmul(h, w)?; // (n, 2 f): [gate | up] per row
                ops::glu(&self.gpu, ops::Act::Silu, gu.buffer(), gu.buffer(), h.rows, f, 2 * f, f, out.buffer())?;
            }
        }
        Ok(out)
    }

    fn add_rms_norm(&self, x: &mut GpuTensor, y: &GpuTensor, weight: &GpuWeight, eps: f32) -> Result<GpuTensor> {
        self.add_norm(x, y, weight, eps, false)
    }

    fn add_rms_norm_before(&self, x: &mut GpuTensor, y: &GpuTensor, weight: &GpuWeight, eps: f32, next: &GpuWeight) -> Result<GpuTensor> {
        let x8 = next.cols == x.cols && next.views().any(|v| ops::matvec_takes_x8(&self.gpu, &v));
        self.add_norm(x, y, weight, eps, x8)
    }

    fn swiglu_matmul(&self, gate: &GpuTensor, up: &GpuTensor, w: &GpuWeight) -> Result<GpuTensor> {
        self.gated_matmul(ops::Act::Silu, gate, up, w)
    }

    fn swiglu(&self, gate: &GpuTensor, up: &GpuTensor) -> Result<GpuTensor> {
        self.gated(ops::Act::Silu, gate, up)
    }

    fn gelu(&self, x: &GpuTensor) -> Result<GpuTensor> {
        let out = self.output(x.rows, x.cols)?;
        if x.len() > 0 {
            ops::gelu(&self.gpu, x.buffer(), x.len(), out.buffer())?;
        }
        Ok(out)
    }

    fn scale(&self, x: &mut GpuTensor, s: f32) -> Result<()> {
        x.q8 = None;
        if x.len() == 0 {
            return Ok(());
        }
        ops::scale(&self.gpu, x.buffer(), x.len(), s)
    }

    fn geglu(&self, gate: &GpuTensor, up: &GpuTensor) -> Result<GpuTensor> {
        self.gated(ops::Act::Gelu, gate, up)
    }

    fn geglu_matmul(&self, gate: &GpuTensor, up: &GpuTensor, w: &GpuWeight) -> Result<GpuTensor> {
        self.gated_matmul(ops::Act::Gelu, gate, up, w)
    }

    fn add_assign(&self, x: &mut GpuTensor, y: &GpuTensor) -> Result<()> {
        x.q8 = None;
        if (x.rows, x.cols) != (y.rows, y.cols) {
            return Err(shape_err("add", format!("{:?} += {:?}", (x.rows, x.cols), (y.rows, y.cols))));
        }
        if x.len() == 0 {
            return Ok(());
        }
        if Arc::ptr_eq(&x.buf, &y.buf) {
            // A buffer cannot be bound for reading and writing in one dispatch: add a copy.
            let copy = self.gpu.alloc(y.len() as u64 * 4)?;
            self.gpu.copy(y.buffer(), 0, &copy.buffer, 0, y.len() as u64 * 4)?;
            return ops::add(&self.gpu, x.buffer(), &copy.buffer, x.len());
        }
        ops::add(&self.gpu, x.buffer(), y.buffer(), x.len())
    }

    fn add_bias(&self, x: &mut GpuTensor, bias: &GpuWeight) -> Result<()> {
        x.q8 = None;
        let b = bias.vector.as_ref().filter(|_| bias.cols == x.cols).ok_or_else(|| {
            shape_err("add_bias", format!("bias ({}, {}) for rows of {}", bias.rows, bias.cols, x.cols))
        })?;
        if x.len() == 0 {
            return Ok(());
        }
        ops::add_bias(&self.gpu, x.buffer(), b, x.rows, x.cols)
    }

    fn rows(&self, x: &GpuTensor) -> usize {
        x.rows
    }

    fn last_row(&self, x: &GpuTensor) -> Result<GpuTensor> {
        if x.rows == 0 {
            return Err(shape_err("last_row", "empty tensor".into()));
        }
        let mut out = self.output(1, x.cols)?;
        if x.cols > 0 {
            self.gpu.copy(x.buffer(), ((x.rows - 1) * x.cols * 4) as u64, out.buffer(), 0, x.cols as u64 * 4)?;
        }
        if let Some(q) = &x.q8 {
            let row = ops::q8_bytes(1, x.cols);
            let copy = self.gpu.alloc(row)?;
            self.gpu.copy(&q.buffer, (x.rows as u64 - 1) * row, &copy.buffer, 0, row)?;
            out.q8 = Some(Arc::new(copy));
        }
        Ok(out)
    }

    fn to_vec(&self, x: &GpuTensor) -> Result<Vec<f32>> {
        if x.len() == 0 {
            self.gpu.flush()?;
            return Ok(Vec::new());
        }
        #[cfg(not(target_arch = "wasm32"))]
        return Ok(f32s(&self.gpu.read(x.buffer(), 0, x.len() as u64 * 4)?));
        #[cfg(target_arch = "wasm32")]
        Err(Error::Unsupported("the browser cannot read GPU results synchronously: use to_vec_async".into()))
    }

    async fn to_vec_async(&self, x: &GpuTensor) -> Result<Vec<f32>> {
        if x.len() == 0 {
            self.gpu.flush()?;
            return Ok(Vec::new());
        }
        Ok(f32s(&self.gpu.read_async(x.buffer(), 0, x.len() as u64 * 4).await?))
    }

    async fn greedy_async(&self, logits: &GpuTensor) -> Result<Option<Sampled>> {
        let out = self.record_argmax(logits)?;
        let b = self.gpu.read_async(&out.buffer, 0, ops::ARGMAX_BYTES).await?;
        let word = |i: usize| b.get(4 * i..4 * i + 4).and_then(|w| w.try_into().ok()).map(u32::from_le_bytes);
        match (word(0), word(1), word(2)) {
            (Some(u32::MAX), ..) => Ok(None),
            (Some(id), Some(logit), Some(lse)) => Ok(Some(Sampled { id, logprob: f32::from_bits(logit) - f32::from_bits(lse) })),
            _ => Err(Error::gpu(GpuFailure::Failed, "argmax: short readback")),
        }
    }

    async fn top_k_async(&self, logits: &GpuTensor, k: usize, temperature: f32) -> Result<TopK> {
        let out = self.record_top_k(logits, k, 1.0 / temperature)?;
        let b = self.gpu.read_async(&out.buffer, 0, ops::top_k_words(k) as u64 * 4).await?;
        let w: Vec<u32> = b.chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])).collect();
        // [max, Σ exp, Σ exp tempered, finite count, (id, logit) × k]
        let (Some(&[_, sum, sum_t, finite]), Some(list)) = (w.first_chunk::<4>(), w.get(4..ops::top_k_words(k))) else {
            return Err(Error::gpu(GpuFailure::Failed, "top_k: short readback"));
        };
        let finite = finite as usize;
        let tokens = list.chunks_exact(2).take(k.min(finite)).map(|e| (e[0], f32::from_bits(e[1]))).collect();
        Ok(TopK { tokens, finite, sum: f32::from_bits(sum) as f64, sum_t: f32::from_bits(sum_t) as f64 })
    }
}
