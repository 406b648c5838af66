//! The CPU backend: weights stay in the model file's bytes (memory-mapped natively, one buffer in
//! wasm) and are read in place by the block kernels of [`kernels`]; activations are plain
//! `Vec<f32>`; work is split over a small spinning [`pool::Pool`].

pub mod attention;
pub mod kernels;
pub mod pool;
pub mod reference;
pub mod vec;

use std::ops::Range;
use std::sync::{Arc, Mutex};


use crate::backend::{AttnShape, Backend, Rope};
use crate::error::{Error, Result};
use crate::gguf::{Gguf, ModelBytes, TensorInfo};
use crate::quant::{self, GgmlType};
use attention::{KvLayer, KvShape};
use kernels::QMatrix;
use pool::{Disjoint, Pool};

/// Activations: a row-major `(rows, cols)` f32 matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuTensor {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl CpuTensor {
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Result<Self> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(Error::InvalidArgument(format!("tensor ({rows}, {cols}) given {} values", data.len())));
        }
        Ok(CpuTensor { rows, cols, data })
    }

    fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
}

/// A weight: where its blocks sit in the model bytes. Small f32 vectors (norms) are copied out,
/// since the file does not promise them 4-byte alignment.
#[derive(Debug, Clone)]
pub struct CpuWeight {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    range: Range<usize>,
    vector: Option<Vec<f32>>,
}

/// Keys and values of every layer in f16, as llama.cpp keeps them: half the memory, and the
/// same rounding as the reference.
pub struct CpuCache {
    layers: Vec<KvLayer>,
    shape: KvShape,
}

impl CpuCache {
    pub fn max_ctx(&self) -> usize {
        self.shape.max_ctx
    }
}

/// Tokens per attention task: with the query heads of one KV head, 4 tokens make 12 queries for
/// SmolLM2, enough to reuse each loaded block of keys.
const ATTN_TOKENS_PER_TASK: usize = 4;

/// The arithmetic the CPU backend does where the two ways of computing differ: the matmuls'
/// activations, attention's probabilities and GELU's f16 table. Everything else (norms, RoPE,
/// SwiGLU, the f16 KV cache, q rounded to f16 in attention) is the same in both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Precision {
    /// llama.cpp's arithmetic, the default and what users run: activations quantized to 8-bit
    /// blocks inside quantized matmuls, attention probabilities rounded to f16. This is what
    /// keeps nib's logits next to llama.cpp's (engine/tests/golden.rs).
    #[default]
    Ggml,
    /// The GPU backend's arithmetic without its rounding: f32 activations times the dequantized
    /// weights and f32-or-better probabilities, every sum in f64 ([`reference`]). Several times
    /// slower; it exists so the GPU can be held to a tight bound against a CPU that computes
    /// the same function (engine/tests/gpu_model.rs), which the default path, 8-bit activations
    /// moving logits by tenths, cannot be.
    Reference,
}

pub struct CpuBackend {
    bytes: Arc<ModelBytes>,
    pool: Pool,
    precision: Precision,
}

impl CpuBackend {
    /// A backend over the bytes of one model file, computing on `threads` threads.
    pub fn new(bytes: Arc<ModelBytes>, threads: usize) -> Self {
        Self::with_precision(bytes, threads, Precision::Ggml)
    }

    /// [`CpuBackend::new`] with the given arithmetic.
    pub fn with_precision(bytes: Arc<ModelBytes>, threads: usize, precision: Precision) -> Self {
        CpuBackend { bytes, pool: Pool::new(threads.max(1)), precision }
    }

    /// The reference backend the GPU is tested against ([`Precision::Reference`]).
    pub fn reference(bytes: Arc<ModelBytes>, threads: usize) -> Self {
        Self::with_precision(bytes, threads, Precision::Reference)
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// A weight `(rows, cols)` of type `ty` whose blocks start at byte `offset` of the model
    /// bytes, for weights that no GGUF header describes (tests).
    pub fn weight_at(&self, ty: GgmlType, rows: usize, cols: usize, offset: usize) -> Result<CpuWeight> {
        let len = rows
            .checked_mul(cols)
            .and_then(|n| ty.bytes_for(n as u64))
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| shape_err("weight", format!("({rows}, {cols}) {} is not whole blocks", ty.name())))?;
        let range = offset..offset.checked_add(len).ok_or_else(|| shape_err("weight", "offset overflows".into()))?;
        let data = self.bytes.get(range.clone()).ok_or_else(|| shape_err("weight", format!("bytes {range:?} outside the model")))?;
        let vector = if rows == 1 {
            let mut v = vec![0f32; cols];
            quant::dequantize(ty, data, &mut v)?;
            Some(v)
        } else {
            None
        };
        let w = CpuWeight { ty, rows, cols, range, vector };
        if rows > 1 {
            self.matrix(&w)?;
        }
        Ok(w)
    }

    fn matrix(&self, w: &CpuWeight) -> Result<QMatrix<'_>> {
        let data = self
            .bytes
            .get(w.range.clone())
            .ok_or_else(|| Error::Model(format!("weight bytes {:?} outside the model file", w.range)))?;
        QMatrix::new(w.ty, w.rows, w.cols, data)
    }

    /// Runs `f` on `n_tasks` tasks and returns the first error any of them gave.
    fn run_tasks(&self, n_tasks: usize, f: &(dyn Fn(usize) -> Result<()> + Sync)) -> Result<()> {
        let first_err: Mutex<Option<Error>> = Mutex::new(None);
        self.pool.run(n_tasks, &|i| {
            if let Err(e) = f(i) {
                let mut slot = first_err.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(e);
            }
        });
        match first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn shape_err(op: &str, detail: String) -> Error {
    Error::InvalidArgument(format!("{op}: {detail}"))
}

/// Bytes of an f16 KV cache (keys and values) of `n_layers` layers of shape `kv`; an error when
/// that does not fit a `usize`.
fn kv_cache_bytes(n_layers: usize, kv: KvShape) -> Result<usize> {
    kv.max_ctx
        .checked_mul(kv.kv_dim())
        .and_then(|per_layer| per_layer.checked_mul(n_layers))
        .and_then(|values| values.checked_mul(2 * std::mem::size_of::<half::f16>()))
        .ok_or_else(|| shape_err("kv cache", format!("{n_layers} layers × {} positions × {} overflows", kv.max_ctx, kv.kv_dim())))
}

fn kv_alloc_err(bytes: usize, n_layers: usize, kv: KvShape) -> Error {
    shape_err(
        "kv cache",
        format!("{bytes} bytes ({} MiB: {n_layers} layers × {} positions × {} values, keys and values in f16) cannot be allocated", bytes >> 20, kv.max_ctx, kv.kv_dim()),
    )
}

impl Backend for CpuBackend {
    type Tensor = CpuTensor;
    type Weight = CpuWeight;
    type Cache = CpuCache;

    /// "cpu" and the kernels' instruction set, e.g. "cpu (avx2)"; "cpu (reference)" in
    /// [`Precision::Reference`].
    fn name(&self) -> String {
        let isa = match (self.precision, kernels::Isa::best()) {
            (Precision::Reference, _) => "reference",
            (_, kernels::Isa::Scalar) => "scalar",
            (_, kernels::Isa::Avx2) => "avx2",
            (_, kernels::Isa::Simd128) => "simd128",
        };
        format!("cpu ({isa})")
    }

    fn threads(&self) -> usize {
        self.pool.threads()
    }

    fn load_weight(&self, gguf: &Gguf, info: &TensorInfo) -> Result<CpuWeight> {
        let data = gguf.tensor_data(&self.bytes, info)?;
        let start = info.offset as usize;
        let range = start..start + data.len();
        let dim = |i: usize| usize::try_from(info.dims.get(i).copied().unwrap_or(1)).ok();
        let (cols, rows) = match (info.dims.len(), dim(0), dim(1)) {
            (1 | 2, Some(c), Some(r)) => (c, r),
            _ => return Err(Error::Model(format!("{}: {}-d tensors are not supported here", info.name, info.dims.len()))),
        };
        let vector = if rows == 1 {
            let mut v = vec![0f32; cols];
            quant::dequantize(info.ty, data, &mut v)?;
            Some(v)
        } else {
            None
        };
        let w = CpuWeight { ty: info.ty, rows, cols, range, vector };
        if rows > 1 {
            self.matrix(&w)?;
        }
        Ok(w)
    }

    fn new_cache(&self, n_layers: usize, max_ctx: usize, shape: AttnShape) -> Result<CpuCache> {
        let kv = KvShape { max_ctx, n_kv_heads: shape.n_kv_heads, head_dim: shape.head_dim };
        let bytes = kv_cache_bytes(n_layers, kv)?;
        let layers = (0..n_layers).map(|_| KvLayer::new(kv)).collect::<Option<Vec<_>>>().ok_or_else(|| kv_alloc_err(bytes, n_layers, kv))?;
        Ok(CpuCache { layers, shape: kv })
    }

    fn embed(&self, table: &CpuWeight, ids: &[u32]) -> Result<CpuTensor> {
        let row_bytes = table
            .ty
            .bytes_for(table.cols as u64)
            .ok_or_else(|| shape_err("embed", format!("row of {} is not whole blocks", table.cols)))? as usize;
        let src = self.matrix(table)?.data;
        let mut out = vec![0f32; ids.len() * table.cols];
        for (t, &id) in ids.iter().enumerate() {
            let id = id as usize;
            if id >= table.rows {
                return Err(Error::InvalidArgument(format!("token id {id} is past the vocabulary ({})", table.rows)));
            }
            let bytes = &src[id * row_bytes..(id + 1) * row_bytes];
            quant::dequantize(table.ty, bytes, &mut out[t * table.cols..(t + 1) * table.cols])?;
        }
        CpuTensor::new(ids.len(), table.cols, out)
    }

    fn rms_norm(&self, x: &CpuTensor, weight: &CpuWeight, eps: f32) -> Result<CpuTensor> {
        // A row, or each head of one: runs of the weight's length.
        let w = weight.vector.as_deref().filter(|w| !w.is_empty() && x.cols.is_multiple_of(w.len())).ok_or_else(|| {
            shape_err("rms_norm", format!("weight ({}, {}) for rows of {}", weight.rows, weight.cols, x.cols))
        })?;
        let mut out = vec![0f32; x.data.len()];
        for (x, o) in x.data.chunks_exact(w.len()).zip(out.chunks_exact_mut(w.len())) {
            vec::rms_norm(x, w, eps, o);
        }
        CpuTensor::new(x.rows, x.cols, out)
    }

    fn layer_norm(&self, x: &CpuTensor, weight: &CpuWeight, bias: &CpuWeight, eps: f32) -> Result<CpuTensor> {
        let (w, b) = (weight.vector.as_deref(), bias.vector.as_deref());
        let (Some(w), Some(b)) = (w.filter(|w| w.len() == x.cols), b.filter(|b| b.len() == x.cols)) else {
            return Err(shape_err("layer_norm", format!("weight ({}, {}), bias ({}, {}) for rows of {}", weight.rows, weight.cols, bias.rows, bias.cols, x.cols)));
        };
        let mut out = vec![0f32; x.data.len()];
        for (r, o) in out.chunks_exact_mut(x.cols.max(1)).enumerate() {
            vec::layer_norm(x.row(r), w, b, eps, o);
        }
        CpuTensor::new(x.rows, x.cols, out)
    }

    fn matmul(&self, x: &CpuTensor, w: &CpuWeight) -> Result<CpuTensor> {
        if x.cols != w.cols {
            return Err(shape_err("matmul", format!("x ({}, {}) · wᵀ with w ({}, {})", x.rows, x.cols, w.rows, w.cols)));
        }
        let (n, m) = (x.rows, w.rows);
        let q = self.matrix(w)?;
        // Reference: no prepared activations, the f32 ones go straight into the f64 sums.
        let acts = match self.precision {
            Precision::Ggml => Some(kernels::prepare(w.ty, &x.data, n, x.cols)?),
            Precision::Reference => None,
        };
        let tile_of = |rows: Range<usize>, o: &mut [f32]| match &acts {
            Some(acts) => kernels::matmul(&q, acts, rows, o),
            None => reference::matmul(&q, &x.data, rows, o),
        };
        let mut out = vec![0f32; n * m];
        // Enough tasks to balance the threads, each a multiple of 16 rows.
        let tasks_wanted = if self.threads() == 1 { 1 } else { self.threads() * 4 };
        let chunk = m.div_ceil(tasks_wanted).next_multiple_of(16).max(16);
        let n_tasks = m.div_ceil(chunk);
        let dst = Disjoint::new(&mut out);
        self.run_tasks(n_tasks, &|i| {
            let rows = i * chunk..((i + 1) * chunk).min(m);
            let width = rows.len();
            if n == 1 {
                // SAFETY: tasks cover disjoint row ranges.
                let o = unsafe { dst.slice(rows.start, width) }.ok_or_else(|| shape_err("matmul", "out".into()))?;
                return tile_of(rows, o);
            }
            let mut tile = vec![0f32; n * width];
            tile_of(rows.clone(), &mut tile)?;
            for (t, src) in tile.chunks_exact(width).enumerate() {
                // SAFETY: row t's columns `rows` belong to this task alone.
                let o = unsafe { dst.slice(t * m + rows.start, width) }.ok_or_else(|| shape_err("matmul", "out".into()))?;
                o.copy_from_slice(src);
            }
            Ok(())
        })?;
        CpuTensor::new(n, m, out)
    }

    fn rope(&self, x: &mut CpuTensor, n_heads: usize, head_dim: usize, pos: usize, rope: &Rope) -> Result<()> {
        if x.cols != n_heads * head_dim || rope.dims > head_dim || !rope.dims.is_multiple_of(2) {
            return Err(shape_err("rope", format!("rows of {} for {n_heads} heads × {head_dim}, {} rotated", x.cols, rope.dims)));
        }
        let half = rope.dims / 2;
        // θ_i = p · base^(−2i/dims), built by repeated multiplication in f32 as ggml does, so
        // that positions far into the context round the same way.
        let theta_scale = rope.theta.powf(-2.0 / rope.dims as f32);
        let mut cos_sin = vec![(0f32, 0f32); half];
        for t in 0..x.rows {
            let mut theta = (pos + t) as f32;
            for cs in cos_sin.iter_mut() {
                let a = rope.freq_scale * theta;
                *cs = (a.cos(), a.sin());
                theta *= theta_scale;
            }
            let row = &mut x.data[t * x.cols..(t + 1) * x.cols];
            for head in row.chunks_exact_mut(head_dim) {
                for (i, &(c, s)) in cos_sin.iter().enumerate() {
                    let (a, b) = if rope.neox { (i, i + half) } else { (2 * i, 2 * i + 1) };
                    let (x0, x1) = (head[a], head[b]);
                    head[a] = x0 * c - x1 * s;
                    head[b] = x0 * s + x1 * c;
                }
            }
        }
        Ok(())
    }

    fn attention(
        &self,
        cache: &mut CpuCache,
        layer: usize,
        pos: usize,
        q: &CpuTensor,
        k: &CpuTensor,
        v: &CpuTensor,
        shape: AttnShape,
    ) -> Result<CpuTensor> {
        let (n, kv_dim, q_dim, hd) = (q.rows, shape.kv_dim(), shape.q_dim(), shape.head_dim);
        if q.cols != q_dim || k.cols != kv_dim || v.cols != kv_dim || k.rows != n || v.rows != n {
            return Err(shape_err("attention", format!("q {:?}, k {:?}, v {:?} for {shape:?}", (q.rows, q.cols), (k.rows, k.cols), (v.rows, v.cols))));
        }
        let cs = cache.shape;
        if (cs.n_kv_heads, cs.head_dim) != (shape.n_kv_heads, hd) || shape.n_kv_heads == 0 || !shape.n_heads.is_multiple_of(shape.n_kv_heads) || shape.window == Some(0) {
            return Err(shape_err("attention", format!("{shape:?} against a cache of {cs:?}")));
        }
        pos.checked_add(n).filter(|&e| e <= cs.max_ctx).ok_or_else(|| {
            Error::InvalidArgument(format!("context full: {} positions needed, {} available", pos.saturating_add(n), cs.max_ctx))
        })?;
        let kv = cache.layers.get_mut(layer).ok_or_else(|| shape_err("attention", format!("layer {layer} has no cache")))?;
        kv.store(cs, pos, &k.data, &v.data);
        let kv = &*kv;

        let group = shape.n_heads / shape.n_kv_heads;
        let blocks = n.div_ceil(ATTN_TOKENS_PER_TASK);
        let mut out = vec![0f32; n * q_dim];
        let dst = Disjoint::new(&mut out);
        // One task per (KV head, block of tokens): all query heads of that KV head, together.
        self.run_tasks(shape.n_kv_heads * blocks, &|i| {
            let (g, b) = (i % shape.n_kv_heads, i / shape.n_kv_heads);
            let task = attention::Task {
                layer: kv,
                shape: cs,
                g,
                heads: g * group..(g + 1) * group,
                tokens: b * ATTN_TOKENS_PER_TASK..((b + 1) * ATTN_TOKENS_PER_TASK).min(n),
                pos,
                window: shape.window,
                q: &q.data,
                q_dim,
            };
            // SAFETY: each (token, head) slice belongs to exactly one task.
            let write = |t: usize, h: usize| unsafe { dst.slice(t * q_dim + h * hd, hd) };
            match self.precision {
                Precision::Ggml => attention::attend(&task, write),
                Precision::Reference => reference::attend(&task, write),
            }
            .ok_or_else(|| shape_err("attention", "output".into()))
        })?;
        CpuTensor::new(n, q_dim, out)
    }

    fn fork_cache(&self, cache: &CpuCache, len: usize, max_ctx: usize) -> Result<Option<CpuCache>> {
        let s = cache.shape;
        if len > s.max_ctx || len > max_ctx {
            return Err(Error::InvalidArgument(format!("cannot fork {len} positions of a cache of {} into one of {max_ctx}", s.max_ctx)));
        }
        let to = KvShape { max_ctx, ..s };
        let n_layers = cache.layers.len();
        let bytes = kv_cache_bytes(n_layers, to)?;
        let layers = cache.layers.iter().map(|l| l.fork(s, len, to)).collect::<Option<Vec<_>>>().ok_or_else(|| kv_alloc_err(bytes, n_layers, to))?;
        Ok(Some(CpuCache { layers, shape: to }))
    }

    /// Row by row: each row's attention is exactly the one-sequence computation, so candidates
    /// decoded together get the same logits as decoded one after another.
    fn rope_attention_rows(
        &self,
        caches: &mut [&mut CpuCache],
        layer: usize,
        positions: &[usize],
        q: &mut CpuTensor,
        k: &mut CpuTensor,
        v: &CpuTensor,
        shape: AttnShape,
        rope: &Rope,
    ) -> Result<CpuTensor> {
        let n = q.rows;
        if caches.len() != n || positions.len() != n || k.rows != n || v.rows != n {
            return Err(shape_err("attention", format!("{n} query rows for {} caches, {} positions, {} keys, {} values", caches.len(), positions.len(), k.rows, v.rows)));
        }
        let row = |x: &CpuTensor, j: usize| CpuTensor::new(1, x.cols, x.row(j).to_vec());
        let mut out = Vec::with_capacity(n * shape.q_dim());
        for (j, (cache, &pos)) in caches.iter_mut().zip(positions).enumerate() {
            let (mut qj, mut kj) = (row(q, j)?, row(k, j)?);
            out.extend(self.rope_attention(cache, layer, pos, &mut qj, &mut kj, &row(v, j)?, shape, rope)?.data);
        }
        CpuTensor::new(n, shape.q_dim(), out)
    }

    fn swiglu(&self, gate: &CpuTensor, up: &CpuTensor) -> Result<CpuTensor> {
        if (gate.rows, gate.cols) != (up.rows, up.cols) {
            return Err(shape_err("swiglu", format!("gate {:?} vs up {:?}", (gate.rows, gate.cols), (up.rows, up.cols))));
        }
        let mut out = vec![0f32; gate.data.len()];
        vec::silu_mul(&gate.data, &up.data, &mut out);
        CpuTensor::new(gate.rows, gate.cols, out)
    }

    /// In [`Precision::Ggml`] through ggml's f16 table ([`vec::gelu_f16`]), as llama.cpp runs
    /// it; exact in f32 in [`Precision::Reference`], as the GPU computes it.
    fn gelu(&self, x: &CpuTensor) -> Result<CpuTensor> {
        let f = match self.precision {
            Precision::Ggml => vec::gelu_f16,
            Precision::Reference => vec::gelu,
        };
        CpuTensor::new(x.rows, x.cols, x.data.iter().map(|&v| f(v)).collect())
    }

    fn scale(&self, x: &mut CpuTensor, s: f32) -> Result<()> {
        x.data.iter_mut().for_each(|v| *v *= s);
        Ok(())
    }

    /// GELU as in [`CpuBackend::gelu`]: ggml's f16 table in [`Precision::Ggml`].
    fn geglu(&self, gate: &CpuTensor, up: &CpuTensor) -> Result<CpuTensor> {
        if (gate.rows, gate.cols) != (up.rows, up.cols) {
            return Err(shape_err("geglu", format!("gate {:?} vs up {:?}", (gate.rows, gate.cols), (up.rows, up.cols))));
        }
        let gelu = match self.precision {
            Precision::Ggml => vec::gelu_f16,
            Precision::Reference => vec::gelu,
        };
        let out = gate.data.iter().zip(&up.data).map(|(&g, &u)| gelu(g) * u).collect();
        CpuTensor::new(gate.rows, gate.cols, out)
    }

    fn add_assign(&self, x: &mut CpuTensor, y: &CpuTensor) -> Result<()> {
        if (x.rows, x.cols) != (y.rows, y.cols) {
            return Err(shape_err("add", format!("{:?} += {:?}", (x.rows, x.cols), (y.rows, y.cols))));
        }
        x.data.iter_mut().zip(&y.data).for_each(|(a, b)| *a += b);
        Ok(())
    }

    fn add_bias(&self, x: &mut CpuTensor, bias: &CpuWeight) -> Result<()> {
        let b = bias.vector.as_deref().filter(|b| b.len() == x.cols).ok_or_else(|| {
            shape_err("add_bias", format!("bias ({}, {}) for rows of {}", bias.rows, bias.cols, x.cols))
        })?;
        for row in x.data.chunks_mut(x.cols.max(1)) {
            row.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        }
        Ok(())
    }

    fn rows(&self, x: &CpuTensor) -> usize {
        x.rows
    }

    fn last_row(&self, x: &CpuTensor) -> Result<CpuTensor> {
        match x.rows {
            0 => Err(shape_err("last_row", "empty tensor".into())),
            r => CpuTensor::new(1, x.cols, x.row(r - 1).to_vec()),
        }
    }

    fn to_vec(&self, x: &CpuTensor) -> Result<Vec<f32>> {
        Ok(x.data.clone())
    }
}
