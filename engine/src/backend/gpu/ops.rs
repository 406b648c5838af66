//! One launcher per kernel of `kernels/`: each compiles (once, through the keyed cache) and
//! records its dispatches. Shapes are checked by the caller ([`super::GpuBackend`]); launchers
//! only convert sizes to the u32 the kernels take.

use super::context::{Access, Bind, Gpu};
use crate::error::{Error, Result};
use crate::quant::GgmlType;

const QUANT: &str = include_str!("kernels/quant.wgsl");
const ROW_SUM: &str = include_str!("kernels/row_sum.wgsl");
const QUANTIZE_Q8: &str = include_str!("kernels/quantize_q8.wgsl");

/// Work-group size of the elementwise and row kernels.
const WG: u32 = 256;
/// Key positions per attention split (the kernel's `CH`).
pub const ATTN_CHUNK: usize = 64;
/// The largest head the attention kernel holds in workgroup memory.
pub const MAX_HEAD_DIM: usize = 256;
/// Up to this many tokens a matmul runs as matrix-vector products (decode); above, tiled.
pub const MATVEC_MAX_TOKENS: usize = 4;

/// `x` as a u32 for a kernel parameter, or an error naming `what`. Sizes reach this from a
/// call's rows and positions (the model's own sizes were checked at load), so too large is an
/// invalid argument, not an unsupported model.
pub fn u32_of(x: usize, what: &str) -> Result<u32> {
    u32::try_from(x).map_err(|_| Error::InvalidArgument(format!("{what} = {x} is too large for the GPU kernels")))
}

/// The weight formats the kernels dequantize.
pub fn supported(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::F32 | GgmlType::F16 | GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 | GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K
    )
}

/// A kernel that reads weights: quant.wgsl and the format's constants come first.
fn quant_source(body: &str, ty: GgmlType) -> String {
    format!(
        "const FMT: u32 = {}u;\nconst BLK: u32 = {}u;\nconst BLK_BYTES: u32 = {}u;\n{QUANT}\n{body}",
        ty.id(),
        ty.block_size(),
        ty.type_size()
    )
}

/// Workgroups for `len` elements at `WG` per group, spread over x and y within the limit.
fn grid_1d(gpu: &Gpu, len: usize) -> Result<[u32; 3]> {
    let groups = len.div_ceil(WG as usize);
    let max = gpu.limits.max_compute_workgroups_per_dimension.max(1) as usize;
    let x = groups.min(max);
    let y = if x == 0 { 0 } else { groups.div_ceil(x) };
    Ok([u32_of(x, "workgroups")?, u32_of(y, "workgroups")?, 1])
}

fn bytes_f32(n: usize) -> u64 {
    n as u64 * 4
}

/// One weight part for a launcher: its bytes and where its rows sit in the whole weight.
pub struct WeightView<'a> {
    pub ty: GgmlType,
    pub buffer: &'a wgpu::Buffer,
    pub row0: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_bytes: usize,
}

/// How the matvec kernel reads its input: x as it is.
const XIN_PLAIN: &str = "fn xin(i: u32) -> vec4<f32> { return x[i]; }\n";
/// ... or act(x) · up: the gated feed-forward's activation fused into the down projection.
const XIN_GATED: &str = "@group(0) @binding(4) var<storage, read> up: array<vec4<f32>>;\n\
    fn xin(i: u32) -> vec4<f32> { return act4(x[i]) * up[i]; }\n";
const GELU_TANH: &str = include_str!("kernels/gelu_tanh.wgsl");

/// The activation of a gated feed-forward: act(gate) · up.
#[derive(Clone, Copy)]
pub enum Act {
    /// SwiGLU.
    Silu,
    /// GEGLU, with GELU's tanh approximation.
    Gelu,
}

impl Act {
    /// `act4`, the activation of 4 values, for the kernels that apply it.
    fn wgsl(self) -> String {
        match self {
            Act::Silu => "fn act4(v: vec4<f32>) -> vec4<f32> { return v / (vec4<f32>(1.0) + exp(-v)); }\n".into(),
            Act::Gelu => format!("{GELU_TANH}fn act4(v: vec4<f32>) -> vec4<f32> {{ return gelu_tanh(v); }}\n"),
        }
    }
}

/// What a matmul fuses around its product (matvec sizes only: `n` ≤ [`MATVEC_MAX_TOKENS`]).
#[derive(Clone, Copy)]
pub enum Fused<'a> {
    /// out = x · wᵀ.
    No,
    /// out = (act(x) · up) · wᵀ.
    GatedInput(Act, &'a wgpu::Buffer),
    /// w is stacked [gate; up]: out = silu(x · gateᵀ) · (x · upᵀ), `w.rows / 2` columns.
    Glu,
    /// out = x · wᵀ, with x also given in 8 bits (`Q8_WORDS` per 32 values, written by
    /// [`add_rms_norm`]) for a matvec that takes x so.
    X8(&'a wgpu::Buffer),
}

/// Weight rows per 32 lanes of matvec: 4 for the largest matrices (the output projection:
/// each lane's x loads serve 4 rows and it has 4 weight loads in flight), else 1, so that a
/// small matrix still spreads over the cores of a large GPU (132 on an H100, where 2 or 4 rows
/// were no faster than 1 on the layer matrices of `gpu_bench`, and up to 16 µs slower).
pub fn matvec_rows(gpu: &Gpu, rows: usize) -> u32 {
    gpu.tuning().matvec_rows.unwrap_or(if rows >= 16384 { 4 } else { 1 })
}

/// The most columns matvec_q8.wgsl takes: x's 8-bit blocks live in workgroup memory (10 KB).
pub const MATVEC_Q8_MAX_K: usize = 8192;
/// Row groups of 8 R rows per matvec_q8 workgroup that quantizes x itself, one after another
/// (its `G`): it quantizes x once for all of them. With x given, one.
const MATVEC_Q8_GROUPS: usize = 4;
/// u32 words per 32 values of x in 8 bits (quantize_q8.wgsl's blocks).
const Q8_WORDS: usize = 10;

/// Bytes of `rows` rows of `cols` values in 8 bits, as a norm writes them for matvec_q8.
pub fn q8_bytes(rows: usize, cols: usize) -> u64 {
    (rows * cols.div_ceil(32) * Q8_WORDS * 4) as u64
}

/// Whether a plain matvec of `ty` with `cols` columns and `rows_per_group` takes x in 8 bits:
/// a 4-bit matrix large enough to take 4 rows per lane group (the output projection). On an
/// H100 that made the 151,936-row Q4_0 product 18% faster (with x quantized by a dispatch of
/// its own, before each workgroup did so); the 49,152-row Q8_0 one ran the same either way,
/// and keeps x in f32.
pub fn matvec_q8(gpu: &Gpu, ty: GgmlType, cols: usize, rows_per_group: u32) -> bool {
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0)
        && cols <= MATVEC_Q8_MAX_K
        && gpu.tuning().matvec_q8.unwrap_or(rows_per_group == 4 && ty != GgmlType::Q8_0)
}

/// Whether a plain matvec of the weight part `w` takes x in 8 bits, so that a norm before it
/// may hand x over so ([`Fused::X8`]).
pub fn matvec_takes_x8(gpu: &Gpu, w: &WeightView) -> bool {
    matvec_q8(gpu, w.ty, w.cols, matvec_rows(gpu, w.rows).clamp(1, 4))
}

/// A matvec kernel's source (`file`: matvec.wgsl or matvec_q8.wgsl) for `r` rows per group:
/// the lane sums in subgroups of `sg` lanes, or in workgroup memory.
fn matvec_source(file: &str, ty: GgmlType, xin: &str, glu: bool, r: u32, sg: Option<u32>) -> String {
    let (enable, sum) = match sg {
        // The browser needs the extension enabled; naga (natively) rejects the directive and
        // takes the device's feature instead.
        Some(n) => (
            if cfg!(target_arch = "wasm32") { "enable subgroups;\n" } else { "" },
            format!("const SG: u32 = {n}u;\n{}", include_str!("kernels/group_sum_subgroup.wgsl")),
        ),
        None => ("", include_str!("kernels/group_sum.wgsl").to_string()),
    };
    let body = format!("const GLU: bool = {glu};\nconst R: u32 = {r}u;\n{xin}{sum}\n{file}");
    format!("{enable}{}", quant_source(&body, ty))
}

const MATVEC: &str = include_str!("kernels/matvec.wgsl");

/// matmul's matvec with x in 8 bits (matvec_q8.wgsl, its WIDE variant as `Tuning::matvec_wide`
/// says), x quantized by the kernel or `given`; `params`: matmul's first six; `id`, `per`, `sg`:
/// its kernel key, rows per group and subgroup size.
#[allow(clippy::too_many_arguments)]
fn matvec_q8_launch(gpu: &Gpu, w: &WeightView, x: &wgpu::Buffer, given: Option<&wgpu::Buffer>, n: usize, m: usize, out: &wgpu::Buffer, params: &[u32], (id, per, sg): (u32, u32, Option<u32>)) -> Result<()> {
    let (r, rw) = (Access::Read, Access::ReadWrite);
    let wide = gpu.tuning().matvec_wide.unwrap_or(false);
    // With x given there is nothing to share among row groups: one per workgroup.
    let g = if given.is_some() { 1 } else { MATVEC_Q8_GROUPS };
    let access: &[Access] = if given.is_some() { &[r, r, rw, r, r] } else { &[r, r, rw, r] };
    let k = gpu.kernel(("matvec_q8", id | (wide as u32) << 24 | (given.is_some() as u32) << 25), access, || {
        let xq = match given {
            Some(_) => "const GIVEN: bool = true;\n@group(0) @binding(5) var<storage, read> xg: array<u32>;\nfn xq_at(i: u32) -> u32 { return xg[xg0 + i]; }\n",
            None => "const GIVEN: bool = false;\nfn xq_at(i: u32) -> u32 { return xq[i]; }\n",
        };
        matvec_source(include_str!("kernels/matvec_q8.wgsl"), w.ty, &format!("{QUANTIZE_Q8}const WIDE: bool = {wide};\nconst G: u32 = {g}u;\n{xq}"), false, per, sg)
    })?;
    let wb = Bind { buffer: w.buffer, bytes: w.buffer.size() };
    let mut binds = vec![wb, Bind { buffer: x, bytes: bytes_f32(n * w.cols) }, Bind { buffer: out, bytes: bytes_f32(n * m) }, wb];
    if let Some(q) = given {
        binds.push(Bind { buffer: q, bytes: q8_bytes(n, w.cols) });
    }
    let groups = w.rows.div_ceil(8 * per as usize * g);
    gpu.dispatch(&k, params, &binds, [u32_of(groups, "workgroups")?, u32_of(n, "workgroups")?, 1])
}

/// out[t, row0 + r] = x[t] · w[r] for the rows of one weight part; `m` = columns of out.
pub fn matmul(gpu: &Gpu, w: &WeightView, x: &wgpu::Buffer, fused: Fused, n: usize, m: usize, out: &wgpu::Buffer) -> Result<()> {
    let x8 = match fused {
        Fused::X8(q) => Some(q),
        _ => None,
    };
    let tiled = n > MATVEC_MAX_TOKENS;
    let (r, rw) = (Access::Read, Access::ReadWrite);
    let glu = matches!(fused, Fused::Glu);
    let rows = if glu { w.rows / 2 } else { w.rows };
    let per = matvec_rows(gpu, rows).clamp(1, 4);
    let sg = gpu.tuning().subgroup;
    // Kernel key: the format, rows per group and subgroup size.
    let id = w.ty.id() | per << 8 | sg.unwrap_or(0) << 12;
    let mut params = vec![
        u32_of(rows, "weight rows")?,
        u32_of(w.cols, "weight columns")?,
        u32_of(n, "tokens")?,
        u32_of(m, "output columns")?,
        u32_of(w.row0, "weight row")?,
        u32_of(w.row_bytes, "row bytes")?,
    ];
    let k = match (tiled, fused) {
        (true, Fused::No | Fused::X8(_)) => gpu.kernel(("matmul", w.ty.id()), &[r, r, rw], || quant_source(include_str!("kernels/matmul.wgsl"), w.ty))?,
        (true, _) => return Err(Error::InvalidArgument(format!("a fused matmul of {n} tokens (at most {MATVEC_MAX_TOKENS})"))),
        (false, Fused::No | Fused::X8(_)) if matvec_q8(gpu, w.ty, w.cols, per) => return matvec_q8_launch(gpu, w, x, x8, n, m, out, &params, (id, per, sg)),
        (false, Fused::No | Fused::X8(_)) => gpu.kernel(("matvec", id), &[r, r, rw], || matvec_source(MATVEC, w.ty, XIN_PLAIN, false, per, sg))?,
        (false, Fused::GatedInput(act, _)) => {
            gpu.kernel(("matvec_gated", id | (act as u32) << 24), &[r, r, rw, r], || matvec_source(MATVEC, w.ty, &format!("{}{XIN_GATED}", act.wgsl()), false, per, sg))?
        }
        (false, Fused::Glu) => gpu.kernel(("matvec_glu", id), &[r, r, rw], || matvec_source(MATVEC, w.ty, XIN_PLAIN, true, per, sg))?,
    };
    if !tiled {
        params.push(if glu { u32_of(rows, "gate rows")? } else { 0 });
    }
    let per = per as usize;
    let groups = match (tiled, glu) {
        (true, _) => [u32_of(w.rows.div_ceil(64), "workgroups")?, u32_of(n.div_ceil(64), "workgroups")?, 1],
        (false, false) => [u32_of(rows.div_ceil(8 * per), "workgroups")?, u32_of(n, "workgroups")?, 1],
        (false, true) => [u32_of(rows.div_ceil(4 * per), "workgroups")?, u32_of(n, "workgroups")?, 1],
    };
    // matvec reads x as vec4s: its binding is rounded up to 16 bytes (activation buffers are
    // pooled in powers of two of at least 256 bytes, so the bytes are there).
    let x_bytes = bytes_f32(n * w.cols).div_ceil(16) * 16;
    let mut binds = vec![
        Bind { buffer: w.buffer, bytes: w.buffer.size() },
        Bind { buffer: x, bytes: x_bytes },
        Bind { buffer: out, bytes: bytes_f32(n * m) },
    ];
    if let Fused::GatedInput(_, up) = fused {
        binds.push(Bind { buffer: up, bytes: x_bytes });
    }
    gpu.dispatch(&k, &params, &binds, groups)
}

/// out (n, cols) = rows `ids` of the table part `w` (rows of other parts are left alone).
pub fn embed(gpu: &Gpu, w: &WeightView, ids: &wgpu::Buffer, n: usize, out: &wgpu::Buffer) -> Result<()> {
    let k = gpu.kernel(("embed", w.ty.id()), &[Access::Read, Access::Read, Access::ReadWrite], || {
        quant_source(include_str!("kernels/embed.wgsl"), w.ty)
    })?;
    let params = [
        u32_of(w.cols, "columns")?,
        u32_of(n, "tokens")?,
        u32_of(w.row0, "table row")?,
        u32_of(w.rows, "table rows")?,
        u32_of(w.row_bytes, "row bytes")?,
    ];
    let binds = [
        Bind { buffer: w.buffer, bytes: w.buffer.size() },
        Bind { buffer: ids, bytes: n as u64 * 4 },
        Bind { buffer: out, bytes: bytes_f32(n * w.cols) },
    ];
    gpu.dispatch(&k, &params, &binds, [u32_of(w.cols.div_ceil(WG as usize), "workgroups")?, u32_of(n, "workgroups")?, 1])
}

/// out = rms_norm(x) · g for each of `rows` rows of `cols`.
pub fn rms_norm(gpu: &Gpu, x: &wgpu::Buffer, g: &wgpu::Buffer, rows: usize, cols: usize, eps: f32, out: &wgpu::Buffer) -> Result<()> {
    let k = gpu.kernel(("rms_norm", 0), &[Access::Read, Access::Read, Access::ReadWrite], || format!("{ROW_SUM}{}", include_str!("kernels/rms_norm.wgsl")))?;
    let binds = [
        Bind { buffer: x, bytes: bytes_f32(rows * cols) },
        Bind { buffer: g, bytes: bytes_f32(cols) },
        Bind { buffer: out, bytes: bytes_f32(rows * cols) },
    ];
    gpu.dispatch(&k, &[u32_of(cols, "columns")?, eps.to_bits()], &binds, [u32_of(rows, "rows")?, 1, 1])
}

/// out = layer_norm(x) · g + b for each of `rows` rows of `cols`.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm(gpu: &Gpu, x: &wgpu::Buffer, g: &wgpu::Buffer, b: &wgpu::Buffer, rows: usize, cols: usize, eps: f32, out: &wgpu::Buffer) -> Result<()> {
    let r = Access::Read;
    let k = gpu.kernel(("layer_norm", 0), &[r, r, r, Access::ReadWrite], || format!("{ROW_SUM}{}", include_str!("kernels/layer_norm.wgsl")))?;
    let binds = [
        Bind { buffer: x, bytes: bytes_f32(rows * cols) },
        Bind { buffer: g, bytes: bytes_f32(cols) },
        Bind { buffer: b, bytes: bytes_f32(cols) },
        Bind { buffer: out, bytes: bytes_f32(rows * cols) },
    ];
    gpu.dispatch(&k, &[u32_of(cols, "columns")?, eps.to_bits()], &binds, [u32_of(rows, "rows")?, 1, 1])
}

/// Rotates `x (n, n_heads * head_dim)` in place with the (cos, sin) table `cs` (positions, half).
#[allow(clippy::too_many_arguments)]
pub fn rope(gpu: &Gpu, x: &wgpu::Buffer, cs: &wgpu::Buffer, n: usize, n_heads: usize, head_dim: usize, half: usize, pos: usize, neox: bool) -> Result<()> {
    let k = gpu.kernel(("rope", 0), &[Access::Read, Access::ReadWrite], || include_str!("kernels/rope.wgsl").into())?;
    let params = [
        u32_of(n_heads, "heads")?,
        u32_of(head_dim, "head dim")?,
        u32_of(half, "rotated pairs")?,
        u32_of(n, "tokens")?,
        u32_of(pos, "position")?,
        neox as u32,
    ];
    let binds = [Bind { buffer: cs, bytes: ((pos + n) * half * 8) as u64 }, Bind { buffer: x, bytes: bytes_f32(n * n_heads * head_dim) }];
    gpu.dispatch(&k, &params, &binds, [u32_of((n_heads * half).div_ceil(WG as usize), "workgroups")?, u32_of(n, "tokens")?, 1])
}

/// x += y, then out = rms_norm(x) · g, for each of `rows` rows of `cols`; and the rows in 8
/// bits to `q8` when given (`cols` a multiple of 32, at most [`MATVEC_Q8_MAX_K`]), for the
/// matvec after the norm ([`Fused::X8`]).
#[allow(clippy::too_many_arguments)]
pub fn add_rms_norm(gpu: &Gpu, x: &wgpu::Buffer, y: &wgpu::Buffer, g: &wgpu::Buffer, rows: usize, cols: usize, eps: f32, out: &wgpu::Buffer, q8: Option<&wgpu::Buffer>) -> Result<()> {
    let (r, rw) = (Access::Read, Access::ReadWrite);
    let b = bytes_f32(rows * cols);
    let mut binds = vec![Bind { buffer: x, bytes: b }, Bind { buffer: y, bytes: b }, Bind { buffer: g, bytes: bytes_f32(cols) }, Bind { buffer: out, bytes: b }];
    let mut access = vec![rw, r, r, rw];
    if let Some(q) = q8 {
        binds.push(Bind { buffer: q, bytes: q8_bytes(rows, cols) });
        access.push(rw);
    }
    let k = gpu.kernel(("add_rms_norm", q8.is_some() as u32), &access, || {
        let q8_part = match q8 {
            Some(_) => format!("{QUANTIZE_Q8}@group(0) @binding(5) var<storage, read_write> q8: array<u32>;\n{}", include_str!("kernels/norm_q8.wgsl")),
            None => "fn write_q8(row: u32, lid: u32) {}\n".into(),
        };
        format!("{ROW_SUM}{q8_part}{}", include_str!("kernels/add_rms_norm.wgsl"))
    })?;
    gpu.dispatch(&k, &[u32_of(cols, "columns")?, eps.to_bits()], &binds, [u32_of(rows, "rows")?, 1, 1])
}

/// The geometry of one attention call.
pub struct AttnCall {
    pub n: usize,
    pub pos: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub max_ctx: usize,
    /// Sliding window (`AttnShape::window`).
    pub window: Option<usize>,
}

/// Stores k, v (n, kv_dim) into the layer's cache at `pos`.
pub fn kv_store(gpu: &Gpu, c: &AttnCall, k: &wgpu::Buffer, v: &wgpu::Buffer, kc: &wgpu::Buffer, vc: &wgpu::Buffer) -> Result<()> {
    let kern = gpu.kernel(("kv_store", 0), &[Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite], || {
        include_str!("kernels/kv_store.wgsl").into()
    })?;
    let kv_dim = c.n_kv_heads * c.head_dim;
    let params = [u32_of(c.n, "tokens")?, u32_of(kv_dim, "kv dim")?, u32_of(c.head_dim, "head dim")?, u32_of(c.max_ctx, "context")?, u32_of(c.pos, "position")?];
    let binds = [
        Bind { buffer: k, bytes: bytes_f32(c.n * kv_dim) },
        Bind { buffer: v, bytes: bytes_f32(c.n * kv_dim) },
        Bind { buffer: kc, bytes: kc.size() },
        Bind { buffer: vc, bytes: vc.size() },
    ];
    gpu.dispatch(&kern, &params, &binds, [u32_of((kv_dim / 2).div_ceil(WG as usize), "workgroups")?, u32_of(c.n, "tokens")?, 1])
}

/// Where rope_store reads q, k and v: one buffer each, or the columns of one stacked product.
pub struct QkvSource<'a> {
    pub q: &'a wgpu::Buffer,
    pub k: &'a wgpu::Buffer,
    pub v: &'a wgpu::Buffer,
    /// Floats per row of q, and of k and v.
    pub q_stride: usize,
    pub kv_stride: usize,
    /// Offsets of q, k and v in the first row read (columns within it, plus whole rows to
    /// skip).
    pub offsets: [usize; 3],
    /// `[bq; bk; bv]` `(q_dim + 2 kv_dim)` f32, added to q, k and v as they are read.
    pub bias: Option<&'a wgpu::Buffer>,
}

/// How rope_store reads its bias: none ...
const BIAS_NONE: &str = "fn bias(i: u32) -> f32 { return 0.0; }\n";
/// ... or element `i` of `[bq; bk; bv]`.
const BIAS_VEC: &str = "@group(0) @binding(8) var<storage, read> qkv_bias: array<f32>;\nfn bias(i: u32) -> f32 { return qkv_bias[i]; }\n";

/// Writes q rotated into `q_out` and stores k rotated and v into the layer's cache at `pos`, in
/// one pass; `cs` is rope's (cos, sin) table with `half` rotated pairs per head.
#[allow(clippy::too_many_arguments)]
pub fn rope_store(gpu: &Gpu, c: &AttnCall, cs: &wgpu::Buffer, half: usize, neox: bool, src: &QkvSource, q_out: &wgpu::Buffer, kc: &wgpu::Buffer, vc: &wgpu::Buffer) -> Result<()> {
    let (r, rw) = (Access::Read, Access::ReadWrite);
    let kern = match src.bias {
        None => gpu.kernel(("rope_store", 0), &[r, r, r, r, rw, rw, rw], || format!("{BIAS_NONE}{}", include_str!("kernels/rope_store.wgsl")))?,
        Some(_) => gpu.kernel(("rope_store", 1), &[r, r, r, r, rw, rw, rw, r], || format!("{BIAS_VEC}{}", include_str!("kernels/rope_store.wgsl")))?,
    };
    let kv_dim = c.n_kv_heads * c.head_dim;
    let q_dim = c.n_heads * c.head_dim;
    let params = [
        u32_of(c.n_heads, "heads")?,
        u32_of(kv_dim, "kv dim")?,
        u32_of(c.head_dim, "head dim")?,
        u32_of(half, "rotated pairs")?,
        u32_of(c.n, "tokens")?,
        u32_of(c.pos, "position")?,
        neox as u32,
        u32_of(c.max_ctx, "context")?,
        u32_of(src.q_stride, "q stride")?,
        u32_of(src.kv_stride, "kv stride")?,
        u32_of(src.offsets[0], "q offset")?,
        u32_of(src.offsets[1], "k offset")?,
        u32_of(src.offsets[2], "v offset")?,
    ];
    // Row t of a source is `width` floats at `offset + t * stride` (an offset may skip whole
    // rows: one sequence's row of a batch).
    let in_bytes = |stride: usize, offset: usize, width: usize| bytes_f32(c.n.saturating_sub(1) * stride + (offset + width).max(1));
    let mut binds = vec![
        Bind { buffer: cs, bytes: ((c.pos + c.n) * half * 8).max(8) as u64 },
        Bind { buffer: src.q, bytes: in_bytes(src.q_stride, src.offsets[0], q_dim) },
        Bind { buffer: src.k, bytes: in_bytes(src.kv_stride, src.offsets[1], kv_dim) },
        Bind { buffer: src.v, bytes: in_bytes(src.kv_stride, src.offsets[2], kv_dim) },
        Bind { buffer: q_out, bytes: bytes_f32(c.n * q_dim) },
        Bind { buffer: kc, bytes: kc.size() },
        Bind { buffer: vc, bytes: vc.size() },
    ];
    if let Some(b) = src.bias {
        binds.push(Bind { buffer: b, bytes: bytes_f32(q_dim + 2 * kv_dim) });
    }
    let per_token = q_dim / 2 + kv_dim / 2;
    gpu.dispatch(&kern, &params, &binds, [u32_of(per_token.div_ceil(WG as usize), "workgroups")?, u32_of(c.n, "tokens")?, 1])
}

/// How attention.wgsl reads the f16 cache: u32 words unpacked ...
const ATTN_PACKED: &str = "alias KV = u32;\nfn pair(w: KV) -> vec2<f32> { return unpack2x16float(w); }\n";
/// ... or, with shader-f16, bound as vec2<f16> and converted. Every product stays in f32, so
/// both give the same result: products in f16 did not keep the default model's logits within
/// 1e-2 of the f32 reference on lavapipe (gpu_model.rs): q · k and p · v in f16 (q and p
/// rounded to f16) reached 2.5e-2 on its first 4 prompts (a score's error is exponentiated),
/// p · v alone 1.3e-2 on the 16 (8.0e-3 with both in f32).
const ATTN_F16: &str = "enable f16;\nalias KV = vec2<f16>;\nfn pair(w: KV) -> vec2<f32> { return vec2<f32>(w); }\n";

/// Attends `q (n, n_heads * head_dim)` over the cache into `out`, `block` query rows at a time
/// (a dispatch of attention.wgsl and one of its merge per block), through the split scratch
/// buffers `part_o (block, n_heads, n_splits, head_dim)` and `part_ml (block, n_heads, n_splits,
/// 2)`, sized for the splits of the call's last row; every block reuses them.
#[allow(clippy::too_many_arguments)]
pub fn attend(gpu: &Gpu, c: &AttnCall, block: usize, q: &wgpu::Buffer, kc: &wgpu::Buffer, vc: &wgpu::Buffer, part_o: &wgpu::Buffer, part_ml: &wgpu::Buffer, out: &wgpu::Buffer) -> Result<()> {
    let block = block.clamp(1, c.n.max(1));
    let q_len = c.n * c.n_heads * c.head_dim;
    // The scratch every block binds, the same bytes each time (one bind group for all).
    let slots = block * c.n_heads * (c.pos + c.n).div_ceil(ATTN_CHUNK);
    let f16 = gpu.attn_f16();
    let kern = gpu.kernel(("attention", f16 as u32), &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite], || {
        format!("{}{}", if f16 { ATTN_F16 } else { ATTN_PACKED }, include_str!("kernels/attention.wgsl"))
    })?;
    let merge = gpu.kernel(("attention_merge", 0), &[Access::Read, Access::Read, Access::ReadWrite], || {
        include_str!("kernels/attention_merge.wgsl").into()
    })?;
    let scale = 1.0 / (c.head_dim as f32).sqrt();
    let attn_binds = [
        Bind { buffer: q, bytes: bytes_f32(q_len) },
        Bind { buffer: kc, bytes: kc.size() },
        Bind { buffer: vc, bytes: vc.size() },
        Bind { buffer: part_o, bytes: bytes_f32(slots * c.head_dim) },
        Bind { buffer: part_ml, bytes: bytes_f32(slots * 2) },
    ];
    let merge_binds = [
        Bind { buffer: part_o, bytes: bytes_f32(slots * c.head_dim) },
        Bind { buffer: part_ml, bytes: bytes_f32(slots * 2) },
        Bind { buffer: out, bytes: bytes_f32(q_len) },
    ];
    for row0 in (0..c.n).step_by(block) {
        // Rows row0.. of the call: token t of the block sits at position pos + row0 + t.
        let n = block.min(c.n - row0);
        let pos = c.pos + row0;
        let n_splits = (pos + n).div_ceil(ATTN_CHUNK);
        let params = [
            u32_of(c.n_heads, "heads")?,
            u32_of(c.n_heads / c.n_kv_heads.max(1), "group")?,
            u32_of(c.head_dim, "head dim")?,
            u32_of(c.max_ctx, "context")?,
            u32_of(pos, "position")?,
            u32_of(n, "tokens")?,
            u32_of(n_splits, "splits")?,
            scale.to_bits(),
            u32_of(c.window.unwrap_or(0), "window")?,
            u32_of(row0, "row")?,
        ];
        gpu.dispatch(&kern, &params, &attn_binds, [u32_of(c.n_heads, "heads")?, u32_of(n, "tokens")?, u32_of(n_splits, "splits")?])?;
        let params = [u32_of(c.n_heads, "heads")?, u32_of(c.head_dim, "head dim")?, u32_of(n_splits, "splits")?, u32_of(n, "tokens")?, u32_of(row0, "row")?];
        gpu.dispatch(&merge, &params, &merge_binds, [u32_of(c.n_heads, "heads")?, u32_of(n, "tokens")?, 1])?;
    }
    Ok(())
}

/// out (rows, cols) = act(gate) · up, gate and up read with row `stride` and up at `up_off`
/// (two tensors: `stride` = cols, `up_off` = 0; one stacked product: the same buffer twice).
#[allow(clippy::too_many_arguments)]
pub fn glu(gpu: &Gpu, act: Act, gate: &wgpu::Buffer, up: &wgpu::Buffer, rows: usize, cols: usize, stride: usize, up_off: usize, out: &wgpu::Buffer) -> Result<()> {
    let k = gpu.kernel(("glu", act as u32), &[Access::Read, Access::Read, Access::ReadWrite], || format!("{}{}", act.wgsl(), include_str!("kernels/glu.wgsl")))?;
    let len = rows * cols;
    let src = bytes_f32(rows.saturating_sub(1) * stride + cols + up_off);
    let binds = [Bind { buffer: gate, bytes: src }, Bind { buffer: up, bytes: src }, Bind { buffer: out, bytes: bytes_f32(len) }];
    let params = [u32_of(len, "elements")?, u32_of(cols, "columns")?, u32_of(stride, "stride")?, u32_of(up_off, "up offset")?];
    gpu.dispatch(&k, &params, &binds, grid_1d(gpu, len)?)
}

/// out = gelu(x) over `len` elements.
pub fn gelu(gpu: &Gpu, x: &wgpu::Buffer, len: usize, out: &wgpu::Buffer) -> Result<()> {
    let k = gpu.kernel(("gelu", 0), &[Access::Read, Access::ReadWrite], || format!("{GELU_TANH}{}", include_str!("kernels/gelu.wgsl")))?;
    let b = bytes_f32(len);
    gpu.dispatch(&k, &[u32_of(len, "elements")?], &[Bind { buffer: x, bytes: b }, Bind { buffer: out, bytes: b }], grid_1d(gpu, len)?)
}

/// x *= s over `len` elements.
pub fn scale(gpu: &Gpu, x: &wgpu::Buffer, len: usize, s: f32) -> Result<()> {
    let k = gpu.kernel(("scale", 0), &[Access::ReadWrite], || include_str!("kernels/scale.wgsl").into())?;
    gpu.dispatch(&k, &[u32_of(len, "elements")?, s.to_bits()], &[Bind { buffer: x, bytes: bytes_f32(len) }], grid_1d(gpu, len)?)
}

/// x (rows, cols) += bias (cols) on every row.
pub fn add_bias(gpu: &Gpu, x: &wgpu::Buffer, bias: &wgpu::Buffer, rows: usize, cols: usize) -> Result<()> {
    let k = gpu.kernel(("add_bias", 0), &[Access::ReadWrite, Access::Read], || include_str!("kernels/add_bias.wgsl").into())?;
    let len = rows * cols;
    let binds = [Bind { buffer: x, bytes: bytes_f32(len) }, Bind { buffer: bias, bytes: bytes_f32(cols) }];
    gpu.dispatch(&k, &[u32_of(len, "elements")?, u32_of(cols, "columns")?], &binds, grid_1d(gpu, len)?)
}

/// x += y over `len` elements.
pub fn add(gpu: &Gpu, x: &wgpu::Buffer, y: &wgpu::Buffer, len: usize) -> Result<()> {
    let k = gpu.kernel(("add", 0), &[Access::ReadWrite, Access::Read], || include_str!("kernels/add.wgsl").into())?;
    let b = bytes_f32(len);
    gpu.dispatch(&k, &[u32_of(len, "elements")?], &[Bind { buffer: x, bytes: b }, Bind { buffer: y, bytes: b }], grid_1d(gpu, len)?)
}

/// Fills the first `len` words of `out` with the bit pattern `value`.
pub fn fill(gpu: &Gpu, out: &wgpu::Buffer, len: usize, value: u32) -> Result<()> {
    let k = gpu.kernel(("fill", 0), &[Access::ReadWrite], || include_str!("kernels/fill.wgsl").into())?;
    gpu.dispatch(&k, &[u32_of(len, "elements")?, value], &[Bind { buffer: out, bytes: len as u64 * 4 }], grid_1d(gpu, len)?)
}

/// What the argmax writes: the index, its value, and the row's log-sum-exp.
pub const ARGMAX_BYTES: u64 = 12;

/// The largest finite value of `x[offset..offset + len]`: its index (u32::MAX if none), value,
/// and the row's log-sum-exp, into `out` (`ARGMAX_BYTES`). Two dispatches: slices of at least
/// 4096 values in up to 256 workgroups, then one merge of their results.
pub fn argmax(gpu: &Gpu, x: &wgpu::Buffer, offset: usize, len: usize, out: &wgpu::Buffer) -> Result<()> {
    let pass = |n: u32| gpu.kernel(("argmax", n), &[Access::Read, Access::ReadWrite], || format!("const PASS: u32 = {n}u;\n{}", include_str!("kernels/argmax.wgsl")));
    let groups = len.div_ceil(4096).clamp(1, 256);
    let chunk = len.div_ceil(groups);
    let part = gpu.alloc(ARGMAX_BYTES * groups as u64)?;
    let part_bytes = ARGMAX_BYTES * groups as u64;
    let binds = [Bind { buffer: x, bytes: bytes_f32(offset + len) }, Bind { buffer: &part.buffer, bytes: part_bytes }];
    gpu.dispatch(&*pass(0)?, &[u32_of(len, "elements")?, u32_of(offset, "offset")?, u32_of(chunk, "elements")?], &binds, [u32_of(groups, "workgroups")?, 1, 1])?;
    let binds = [Bind { buffer: &part.buffer, bytes: part_bytes }, Bind { buffer: out, bytes: ARGMAX_BYTES }];
    gpu.dispatch(&*pass(1)?, &[u32_of(groups, "workgroups")?, 0, 0], &binds, [1, 1, 1])
}

/// Values per chunk of the top-k's first pass, and the most chunks its merge takes
/// (topk.wgsl's `L`): rows up to `TOPK_CHUNK²` values.
pub const TOPK_CHUNK: usize = 1024;

/// Words of one top-k list (topk.wgsl): the max, Σ exp, Σ exp tempered, the finite count, then
/// `(index, value)` × k.
pub fn top_k_words(k: usize) -> usize {
    4 + 2 * k
}

/// Lists the top-k's first pass writes for a row of `len` values (1: it writes `out` directly).
pub fn top_k_chunks(len: usize) -> usize {
    len.div_ceil(TOPK_CHUNK).max(1)
}

/// The `k` (1 to [`crate::sample::MAX_TOP_K`]; at most `TOPK_CHUNK` chunks) largest finite values of `x[offset..offset + len]`
/// with the row's sums, raw and at `inv_t`, into `out` (`top_k_words(k)` words); through `part`
/// (`top_k_chunks(len)` lists) when the row is longer than one chunk.
#[allow(clippy::too_many_arguments)]
pub fn top_k(gpu: &Gpu, x: &wgpu::Buffer, offset: usize, len: usize, k: usize, inv_t: f32, part: &wgpu::Buffer, out: &wgpu::Buffer) -> Result<()> {
    let chunks = top_k_chunks(len);
    let (r, rw) = (Access::Read, Access::ReadWrite);
    let kernel = |merge: bool| gpu.kernel(("topk", merge as u32), &[r, rw], || format!("const MERGE: bool = {merge};\n{}", include_str!("kernels/topk.wgsl")));
    let list = bytes_f32(top_k_words(k));
    let params = |chunks: usize| -> Result<[u32; 5]> {
        Ok([u32_of(len, "elements")?, u32_of(offset, "offset")?, u32_of(k, "k")?, u32_of(chunks, "chunks")?, inv_t.min(f32::MAX).to_bits()])
    };
    let first = if chunks == 1 { out } else { part };
    let binds = [Bind { buffer: x, bytes: bytes_f32(offset + len) }, Bind { buffer: first, bytes: list * chunks as u64 }];
    let first_pass = kernel(false)?;
    gpu.dispatch(&first_pass, &params(chunks)?, &binds, [u32_of(chunks, "workgroups")?, 1, 1])?;
    if chunks > 1 {
        let binds = [Bind { buffer: part, bytes: list * chunks as u64 }, Bind { buffer: out, bytes: list }];
        let merge = kernel(true)?;
        gpu.dispatch(&merge, &params(chunks)?, &binds, [1, 1, 1])?;
    }
    Ok(())
}
