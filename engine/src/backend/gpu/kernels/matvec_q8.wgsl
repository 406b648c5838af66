// out (n, m) = x (n, k) · wᵀ for a few tokens with x in 8 bits, for the 32-value formats Q4_0,
// Q4_1 and Q8_0: the dot products of a block run on integers, four byte products per
// dot4I8Packed, as ggml's CPU kernels and llama.cpp's GPU ones do, and are scaled once per block.
// Per weight word that is a few integer instructions instead of eight conversions and eight FMAs,
// and a lane loads 2 words of x instead of 2 vec4s: what keeps a large matrix's product near
// memory bandwidth.
// x in 8 bits (quantize_q8.wgsl's blocks) comes GIVEN, written by the norm before the product
// (norm_q8.wgsl), or else each workgroup first quantizes its token's x into workgroup memory:
// rather than a dispatch before it doing so once, since x is a few KB read from cache and a
// dependent dispatch costs several µs (7 on an H100), as much as the 8-bit dot products save on
// a layer matrix.
// Layout as matvec.wgsl (without its fusions): R rows per 32 lanes, 8 groups at a time per
// workgroup, G times over, four lanes per block, one token per workgroup row of the grid.
// Grid: (ceil(rows / (8 R G)), n); G = 1 with x given.
// WIDE: one lane per block instead, which reads the block's quants in 16-byte loads (`w4`: the
// weight buffer bound a second time, as vec4s; layout.rs puts them on 16-byte units): a
// quarter of the load instructions for the same bytes, each lane with R · 16 or R · 32 bytes in
// flight per block.
// Prepended: quant.wgsl and its constants, quantize_q8.wgsl, R, WIDE, G, GLU (false), SUBGROUP,
// group_sum, GIVEN and `xq_at(i)`: word i of the token's blocks, from `xq` or from binding 5.

struct Params {
    rows: u32,      // rows of this weight part
    k: u32,         // columns of w = columns of x
    n: u32,         // tokens
    m: u32,         // columns of out (rows of the whole weight)
    row0: u32,      // first row of this part in the whole weight
    row_bytes: u32, // bytes per weight row
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> w4: array<vec4<u32>>;

var<workgroup> sh: array<vec4<f32>, 256>;
// The token's x quantized here (unless GIVEN): block b in words 10 b .. 10 b + 10, one block per
// invocation, so k ≤ 8192 (ops::MATVEC_Q8_MAX_K).
var<workgroup> xq: array<u32, 2560>;
// The first word of the token's blocks in binding 5 (GIVEN).
var<private> xg0: u32;

const ONES: u32 = 0x01010101u;
// Blocks per lane and pass of the loop (below).
const U: u32 = 2u;

// Quarter `sub` of block `bi` of the row at byte `row` dotted with the 8 quantized x values
// under it (`xa`, `xc`; `dx` their block's scale, `qsum` their sum, `sx` the block's d · Σq or 0).
fn quarter_q8(row: u32, bi: u32, sub: u32, xa: u32, xc: u32, dx: f32, qsum: f32, sx: f32) -> f32 {
    if (FMT == Q8_0) {
        let q = dot4I8Packed(quant_word(row, bi, 2u * sub), xa) + dot4I8Packed(quant_word(row, bi, 2u * sub + 1u), xc);
        return block_d(row, bi) * dx * f32(q);
    }
    let q = quant_word(row, bi, sub);
    let s = f32(dot4I8Packed(q & 0x0f0f0f0fu, xa) + dot4I8Packed((q >> 4u) & 0x0f0f0f0fu, xc));
    if (FMT == Q4_0) {
        return block_d(row, bi) * dx * (s - 8.0 * qsum);
    }
    let dm = block_dm(row, bi);
    return dm.x * dx * s + dm.y * sx;
}

// Block `bi` of the R rows at bytes `rb` dotted with the quantized x under it (this lane's
// quarter `sub`). Component i: row i.
fn block_rows(rb: vec4<u32>, bi: u32, sub: u32) -> vec4<f32> {
    let xb = 10u * bi;
    // Q8_0: values 8 sub .. 8 sub + 8; Q4: values 4 sub .. and 16 + 4 sub ..
    let xa = xq_at(xb + select(sub, 2u * sub, FMT == Q8_0));
    let xc = xq_at(xb + select(4u + sub, 2u * sub + 1u, FMT == Q8_0));
    let dx = bitcast<f32>(xq_at(xb + 8u));
    // Σq over this lane's 8 values of x (Q4_0's offset of 8); the block's d · Σq (Q4_1's
    // minimum, added once per block, by its first lane).
    let qsum = f32(dot4I8Packed(ONES, xa) + dot4I8Packed(ONES, xc));
    let sx = select(0.0, bitcast<f32>(xq_at(xb + 9u)), sub == 0u);
    var a = vec4<f32>(0.0);
    a.x = quarter_q8(rb.x, bi, sub, xa, xc, dx, qsum, sx);
    if (R > 1u) {
        a.y = quarter_q8(rb.y, bi, sub, xa, xc, dx, qsum, sx);
    }
    if (R > 2u) {
        a.z = quarter_q8(rb.z, bi, sub, xa, xc, dx, qsum, sx);
        a.w = quarter_q8(rb.w, bi, sub, xa, xc, dx, qsum, sx);
    }
    return a;
}

// Block `bi` of the row at byte `row` (all 32 values) dotted with the quantized x under it
// (`xl`: values 0..16, `xh`: 16..32; `dx` their scale, `qsum` their sum, `sx` d · Σq).
fn block_q8(row: u32, bi: u32, xl: vec4<u32>, xh: vec4<u32>, dx: f32, qsum: f32, sx: f32) -> f32 {
    let at = quants_at(row, bi) >> 2u;
    let q = w4[at];
    if (FMT == Q8_0) {
        let q2 = w4[at + 1u];
        let s = dot4I8Packed(q.x, xl.x) + dot4I8Packed(q.y, xl.y) + dot4I8Packed(q.z, xl.z) + dot4I8Packed(q.w, xl.w)
            + dot4I8Packed(q2.x, xh.x) + dot4I8Packed(q2.y, xh.y) + dot4I8Packed(q2.z, xh.z) + dot4I8Packed(q2.w, xh.w);
        return block_d(row, bi) * dx * f32(s);
    }
    // Byte j: value j (low nibble) and j + 16 (high nibble).
    let lo = q & vec4<u32>(0x0f0f0f0fu);
    let hi = (q >> vec4<u32>(4u)) & vec4<u32>(0x0f0f0f0fu);
    let s = f32(dot4I8Packed(lo.x, xl.x) + dot4I8Packed(lo.y, xl.y) + dot4I8Packed(lo.z, xl.z) + dot4I8Packed(lo.w, xl.w)
        + dot4I8Packed(hi.x, xh.x) + dot4I8Packed(hi.y, xh.y) + dot4I8Packed(hi.z, xh.z) + dot4I8Packed(hi.w, xh.w));
    if (FMT == Q4_0) {
        return block_d(row, bi) * dx * (s - 8.0 * qsum);
    }
    let dm = block_dm(row, bi);
    return dm.x * dx * s + dm.y * sx;
}

// block_rows for WIDE: the whole block `bi` of the R rows at bytes `rb`.
fn block_rows_wide(rb: vec4<u32>, bi: u32) -> vec4<f32> {
    let xb = 10u * bi;
    let xl = vec4<u32>(xq_at(xb), xq_at(xb + 1u), xq_at(xb + 2u), xq_at(xb + 3u));
    let xh = vec4<u32>(xq_at(xb + 4u), xq_at(xb + 5u), xq_at(xb + 6u), xq_at(xb + 7u));
    let dx = bitcast<f32>(xq_at(xb + 8u));
    let sx = bitcast<f32>(xq_at(xb + 9u));
    let qsum = f32(dot4I8Packed(ONES, xl.x) + dot4I8Packed(ONES, xl.y) + dot4I8Packed(ONES, xl.z) + dot4I8Packed(ONES, xl.w)
        + dot4I8Packed(ONES, xh.x) + dot4I8Packed(ONES, xh.y) + dot4I8Packed(ONES, xh.z) + dot4I8Packed(ONES, xh.w));
    var a = vec4<f32>(0.0);
    a.x = block_q8(rb.x, bi, xl, xh, dx, qsum, sx);
    if (R > 1u) {
        a.y = block_q8(rb.y, bi, xl, xh, dx, qsum, sx);
    }
    if (R > 2u) {
        a.z = block_q8(rb.z, bi, xl, xh, dx, qsum, sx);
        a.w = block_q8(rb.w, bi, xl, xh, dx, qsum, sx);
    }
    return a;
}

// Block b of token t's x to xq.
fn quantize_x(t: u32, b: u32) {
    var v: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        v[i] = x[(t * p.k) / 4u + 8u * b + i];
    }
    let q = q8_block(v);
    for (var i = 0u; i < 10u; i++) {
        xq[10u * b + i] = q[i];
    }
}

// Σ over the row's blocks for this lane, of the R rows from `o` (none past the part: zeros).
fn rows_dot(o: u32, lane: u32, nb: u32) -> vec4<f32> {
    var acc = vec4<f32>(0.0); // component i: row o + i, written out as in matvec.wgsl
    if (o >= p.rows) {
        return acc;
    }
    let rb = (min(vec4<u32>(o) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.rows - 1u))) * p.row_bytes;
    if (WIDE) {
        // 32 blocks a pass; a row of at most 32 (k ≤ 1024) takes one.
        for (var bi = lane; bi < nb; bi += 32u) {
            acc += block_rows_wide(rb, bi);
        }
        return acc;
    }
    // U blocks a pass, so that a lane has U times the weight loads in flight; blocks past the
    // row are read clamped into it, and weigh nothing.
    let sub = lane & 3u;
    for (var b0 = lane >> 2u; b0 < nb; b0 += 8u * U) {
        for (var u = 0u; u < U; u++) {
            let bi = b0 + 8u * u;
            acc += select(vec4<f32>(0.0), block_rows(rb, min(bi, nb - 1u), sub), bi < nb);
        }
    }
    return acc;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let lane = lid & 31u;
    let t = wid.y;
    let nb = p.k / 32u;
    xg0 = t * 10u * nb;
    if (!GIVEN) {
        if (lid < nb) {
            quantize_x(t, lid);
        }
        workgroupBarrier();
    }
    for (var g = 0u; g < G; g++) {
        let o = ((wid.x * G + g) * 8u + (lid >> 5u)) * R;
        let s = group_sum(rows_dot(o, lane, nb), lid);
        if (lane == 0u) {
            for (var r = 0u; r < R && o + r < p.rows; r++) {
                out[t * p.m + p.row0 + o + r] = s[r];
            }
        }
    }
}
