// out (n, m) = x (n, k) · wᵀ for a few tokens with x in 8 bits (quantize_x.wgsl: 10 words per
// 32 values), for the 32-value formats Q4_0, Q4_1 and Q8_0: the dot products of a block run on
// integers, four byte products per dot4I8Packed, as ggml's CPU kernels and llama.cpp's GPU ones
// do, and are scaled once per block. Per weight word that is a few integer instructions instead
// of eight conversions and eight FMAs, and a lane loads 2 words of x instead of 2 vec4s:
// what keeps a large matrix's product near memory bandwidth.
// Layout as matvec.wgsl (without its fusions): R rows per 32 lanes, 8 groups per workgroup, four
// lanes per block, one token per workgroup row of the grid. Grid: (ceil(rows / (8 R)), n).
// Prepended: quant.wgsl and its constants, R, GLU (false), SUBGROUP and group_sum.

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
@group(0) @binding(2) var<storage, read> xq: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> sh: array<vec4<f32>, 256>;

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

// Block `bi` of the R rows at bytes `rb` dotted with the quantized x of token `t` under it
// (`nb` blocks per row; this lane's quarter `sub`). Component i: row i.
fn block_rows(rb: vec4<u32>, bi: u32, t: u32, nb: u32, sub: u32) -> vec4<f32> {
    let xb = 10u * (t * nb + bi);
    // Q8_0: values 8 sub .. 8 sub + 8; Q4: values 4 sub .. and 16 + 4 sub ..
    let xa = xq[xb + select(sub, 2u * sub, FMT == Q8_0)];
    let xc = xq[xb + select(4u + sub, 2u * sub + 1u, FMT == Q8_0)];
    let dx = bitcast<f32>(xq[xb + 8u]);
    // Σq over this lane's 8 values of x (Q4_0's offset of 8); the block's d · Σq (Q4_1's
    // minimum, added once per block, by its first lane).
    let qsum = f32(dot4I8Packed(ONES, xa) + dot4I8Packed(ONES, xc));
    let sx = select(0.0, bitcast<f32>(xq[xb + 9u]), sub == 0u);
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

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let lane = lid & 31u;
    let o = wid.x * 8u * R + (lid >> 5u) * R;
    let t = wid.y;
    var acc = vec4<f32>(0.0); // component i: row o + i, written out as in matvec.wgsl
    if (o < p.rows && t < p.n) {
        let rb = (min(vec4<u32>(o) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.rows - 1u))) * p.row_bytes;
        let sub = lane & 3u;
        let nb = p.k / 32u;
        // U blocks a pass, so that a lane has U times the weight loads in flight; blocks past
        // the row are read clamped into it, and weigh nothing.
        for (var b0 = lane >> 2u; b0 < nb; b0 += 8u * U) {
            for (var u = 0u; u < U; u++) {
                let bi = b0 + 8u * u;
                acc += select(vec4<f32>(0.0), block_rows(rb, min(bi, nb - 1u), t, nb, sub), bi < nb);
            }
        }
    }
    let s = group_sum(acc, lid);
    if (lane != 0u || o >= p.rows || t >= p.n) {
        return;
    }
    for (var r = 0u; r < R; r++) {
        if (o + r < p.rows) {
            out[t * p.m + p.row0 + o + r] = s[r];
        }
    }
}
