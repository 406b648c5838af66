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

// Quarter `sub` of the block at byte `b` dotted with the 8 quantized x values under it
// (`xa`, `xc`; `dx` their block's scale, `qsum` their sum, `sx` the block's d · Σq or 0).
fn quarter_q8(b: u32, sub: u32, xa: u32, xc: u32, dx: f32, qsum: f32, sx: f32) -> f32 {
    if (FMT == Q8_0) {
        let q = dot4I8Packed(word_at(b + 2u + 8u * sub), xa) + dot4I8Packed(word_at(b + 6u + 8u * sub), xc);
        return f16_at(b) * dx * f32(q);
    }
    let q = word_at(b + 4u - 2u * u32(FMT == Q4_0) + 4u * sub);
    let s = f32(dot4I8Packed(q & 0x0f0f0f0fu, xa) + dot4I8Packed((q >> 4u) & 0x0f0f0f0fu, xc));
    if (FMT == Q4_0) {
        return f16_at(b) * dx * (s - 8.0 * qsum);
    }
    return f16_at(b) * dx * s + f16_at(b + 2u) * sx;
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
        for (var bi = lane >> 2u; bi < nb; bi += 8u) {
            let xb = 10u * (t * nb + bi);
            // Q8_0: values 8 sub .. 8 sub + 8; Q4: values 4 sub .. and 16 + 4 sub ..
            let xa = xq[xb + select(sub, 2u * sub, FMT == Q8_0)];
            let xc = xq[xb + select(4u + sub, 2u * sub + 1u, FMT == Q8_0)];
            let dx = bitcast<f32>(xq[xb + 8u]);
            // Σq over this lane's 8 values of x (Q4_0's offset of 8); the block's d · Σq (Q4_1's
            // minimum, added once per block, by its first lane).
            let qsum = f32(dot4I8Packed(ONES, xa) + dot4I8Packed(ONES, xc));
            let sx = select(0.0, bitcast<f32>(xq[xb + 9u]), sub == 0u);
            let b = bi * BLK_BYTES;
            acc.x += quarter_q8(rb.x + b, sub, xa, xc, dx, qsum, sx);
            if (R > 1u) {
                acc.y += quarter_q8(rb.y + b, sub, xa, xc, dx, qsum, sx);
            }
            if (R > 2u) {
                acc.z += quarter_q8(rb.z + b, sub, xa, xc, dx, qsum, sx);
                acc.w += quarter_q8(rb.w + b, sub, xa, xc, dx, qsum, sx);
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
