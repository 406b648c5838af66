// out (n, m) = x (n, k) · wᵀ for a few tokens (decode): 32 lanes per weight row, 8 rows per
// workgroup, one token per workgroup row of the grid. Blocks are dequantized in registers;
// f32 accumulation, lanes summed in workgroup memory.
// Grid: (ceil(rows / 8), n). Prepended: quant.wgsl and its constants.

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
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> sh: array<f32, 256>;

// Dot product of the block at byte `b` with x[xo .. xo + 32].
fn block_dot(b: u32, xo: u32) -> f32 {
    var s = 0.0;
    if (FMT == Q8_0) {
        for (var i = 0u; i < 8u; i++) {
            let q = word_at(b + 2u + 4u * i);
            for (var j = 0u; j < 4u; j++) {
                s += f32(i32(q << (24u - 8u * j)) >> 24u) * x[xo + 4u * i + j];
            }
        }
        return s * f16_at(b);
    }
    let qs = b + 4u - 2u * u32(FMT == Q4_0);
    var sx = 0.0;
    for (var i = 0u; i < 4u; i++) {
        let q = word_at(qs + 4u * i);
        for (var j = 0u; j < 4u; j++) {
            let byte = (q >> (8u * j)) & 0xffu;
            let x_lo = x[xo + 4u * i + j];
            let x_hi = x[xo + 16u + 4u * i + j];
            s += f32(byte & 15u) * x_lo + f32(byte >> 4u) * x_hi;
            sx += x_lo + x_hi;
        }
    }
    if (FMT == Q4_0) {
        return f16_at(b) * (s - 8.0 * sx);
    }
    return f16_at(b) * s + f16_at(b + 2u) * sx;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let lane = lid & 31u;
    let r = wid.x * 8u + (lid >> 5u);
    let t = wid.y;
    var s = 0.0;
    if (r < p.rows && t < p.n) {
        let row = r * p.row_bytes;
        let xo = t * p.k;
        if (FMT == F32 || FMT == F16) {
            for (var c = lane; c < p.k; c += 32u) {
                s += deq(row, c) * x[xo + c];
            }
        } else {
            let nb = p.k / BLK;
            for (var bi = lane; bi < nb; bi += 32u) {
                s += block_dot(row + bi * BLK_BYTES, xo + bi * BLK);
            }
        }
    }
    sh[lid] = s;
    workgroupBarrier();
    for (var st = 16u; st > 0u; st >>= 1u) {
        if (lane < st) {
            sh[lid] += sh[lid + st];
        }
        workgroupBarrier();
    }
    if (lane == 0u && r < p.rows && t < p.n) {
        out[t * p.m + p.row0 + r] = sh[lid];
    }
}
