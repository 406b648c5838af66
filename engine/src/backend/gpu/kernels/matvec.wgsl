// out (n, m) = x (n, k) · wᵀ for a few tokens (decode): 32 lanes per weight row, 8 rows per
// workgroup, one token per workgroup row of the grid. f32 accumulation, lanes summed in
// workgroup memory.
// Quantized rows: four lanes share a block, each taking one quarter of its quants, so one pass of
// the 32 lanes reads 8 consecutive blocks (K-quants: 32-value chunks of super-blocks) and the x
// values under them as contiguous vec4s: the
// loads of neighbouring lanes touch neighbouring bytes (coalesced), which is what lets a matvec
// run at memory bandwidth on a GPU.
// With GLU (stacked [gate; up] weights, `glu` rows each), a workgroup computes 4 outputs with
// 64 lanes each, 32 on row r of gate and 32 on row r of up, and writes silu(gate) · up.
// x is read through `xin(i)`, the i-th vec4 of x, which the launcher prepends: x itself, or
// silu(x) · up when the kernel also applies SwiGLU to its input (binding 4: up, like x).
// Grid: (ceil(rows / 8), n), or (ceil(rows / 4), n) with GLU. Prepended: quant.wgsl and its
// constants, GLU, and `xin`.

struct Params {
    rows: u32,      // rows of this weight part
    k: u32,         // columns of w = columns of x
    n: u32,         // tokens
    m: u32,         // columns of out (rows of the whole weight)
    row0: u32,      // first row of this part in the whole weight
    row_bytes: u32, // bytes per weight row
    glu: u32,       // GLU: rows of gate (= of up), up's first row; else 0
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> sh: array<f32, 256>;

// Quarter `sub` of the block at byte `b` dotted with the x values under it; `xv` indexes the
// block's first vec4 of x.
fn quarter_dot(b: u32, xv: u32, sub: u32) -> f32 {
    if (FMT == Q8_0) {
        let xa = xin(xv + 2u * sub);
        let xb = xin(xv + 2u * sub + 1u);
        let q = dot(bytes_i8(word_at(b + 2u + 8u * sub)), xa) + dot(bytes_i8(word_at(b + 6u + 8u * sub)), xb);
        return f16_at(b) * q;
    }
    if (IS_Q5) {
        let e = q5_quarter(b, sub);
        let xl = xin(xv + sub);
        let xh = xin(xv + 4u + sub);
        return e.d * (dot(e.lo, xl) + dot(e.hi, xh)) + e.m * dot(xl + xh, vec4<f32>(1.0));
    }
    // Q4_0 / Q4_1: byte j holds value j (low nibble) and value j + 16 (high nibble).
    let q = word_at(b + 4u - 2u * u32(FMT == Q4_0) + 4u * sub);
    let xl = xin(xv + sub);
    let xh = xin(xv + 4u + sub);
    let s = dot(lo_nibbles(q), xl) + dot(hi_nibbles(q), xh);
    let sx = dot(xl + xh, vec4<f32>(1.0));
    if (FMT == Q4_0) {
        return f16_at(b) * (s - 8.0 * sx);
    }
    return f16_at(b) * s + f16_at(b + 2u) * sx;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let lane = lid & 31u;
    // GLU: output r = wid.x * 4 + lid / 64, on gate row r or (second 32 lanes) up row glu + r.
    let r = select(wid.x * 8u + (lid >> 5u), wid.x * 4u + (lid >> 6u), GLU);
    let w_row = r + select(0u, p.glu * ((lid >> 5u) & 1u), GLU);
    let t = wid.y;
    var s = 0.0;
    if (r < p.rows && t < p.n) {
        let row = w_row * p.row_bytes;
        let xo = t * p.k;
        if (FMT == F32 || FMT == F16) {
            for (var c = lane; c < p.k; c += 32u) {
                let i = xo + c;
                s += deq(row, c) * xin(i >> 2u)[i & 3u];
            }
        } else if (IS_K) {
            // K-quants: the same pass over 32-value chunks (8 per super-block), four lanes each.
            let sub = lane & 3u;
            for (var ci = lane >> 2u; ci < p.k / 32u; ci += 8u) {
                let e = k_eight(row + (ci / 8u) * BLK_BYTES, ci % 8u, sub);
                let xv = (xo + ci * 32u) >> 2u;
                let xa = xin(xv + 2u * sub);
                let xb = xin(xv + 2u * sub + 1u);
                s += e.scale * (dot(e.lo, xa) + dot(e.hi, xb)) - e.mn * dot(xa + xb, vec4<f32>(1.0));
            }
        } else {
            let nb = p.k / BLK;
            let sub = lane & 3u;
            for (var bi = lane >> 2u; bi < nb; bi += 8u) {
                s += quarter_dot(row + bi * BLK_BYTES, (xo + bi * BLK) >> 2u, sub);
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
        if (!GLU) {
            out[t * p.m + p.row0 + r] = sh[lid];
        } else if (((lid >> 5u) & 1u) == 0u) {
            let g = sh[lid];
            out[t * p.m + p.row0 + r] = g / (1.0 + exp(-g)) * sh[lid + 32u];
        }
    }
}
