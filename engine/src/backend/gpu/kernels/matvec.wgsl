// out (n, m) = x (n, k) · wᵀ for a few tokens (decode): 32 lanes per group of R weight rows
// (R ≤ 4), 8 groups per workgroup, one token per workgroup row of the grid. f32 accumulation.
// Quantized rows: four lanes share a block, each taking one quarter of its quants, so one pass of
// the 32 lanes reads 8 consecutive blocks (K-quants: 32-value chunks of super-blocks) of each of
// the R rows, and the x values under them as contiguous vec4s: the loads of neighbouring lanes
// touch neighbouring bytes (coalesced). A lane loads its x values once for all R rows and has R
// weight loads in flight, which is what a large matrix needs to run near memory bandwidth; small
// matrices take R = 1 so that they still spread over the GPU's cores.
// With GLU (stacked [gate; up] weights, `glu` rows each), groups come in pairs: the even group on
// R rows of gate, the odd one on the same R rows of up; the pair writes silu(gate) · up.
// x is read through `xin(i)`, the i-th vec4 of x, which the launcher prepends: x itself, or
// silu(x) · up when the kernel also applies SwiGLU to its input (binding 4: up, like x).
// The 32 lanes of a group are summed with subgroup shuffles when SUBGROUP (the adapter has
// subgroups: each subgroup holds whole aligned pieces of a group), else in workgroup memory.
// Grid: (ceil(rows / (8 R)), n), or (ceil(rows / (4 R)), n) with GLU. Prepended: quant.wgsl
// and its constants, R, GLU, SUBGROUP, and `xin`.

struct Params {
    rows: u32,      // rows of this weight part (GLU: outputs)
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

var<workgroup> sh: array<vec4<f32>, 256>;

// Quarter `sub` of block `bi` of the Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 row at byte `row` dotted with
// the x values under it (`xa`, `xb`: the quarter's two vec4s, `sx` their sum).
fn quarter_dot(row: u32, bi: u32, sub: u32, xa: vec4<f32>, xb: vec4<f32>, sx: f32) -> f32 {
    if (FMT == Q8_0) {
        let q = dot(bytes_i8(quant_word(row, bi, 2u * sub)), xa) + dot(bytes_i8(quant_word(row, bi, 2u * sub + 1u)), xb);
        return block_d(row, bi) * q;
    }
    if (IS_Q5) {
        let e = q5_quarter(row + bi * BLK_BYTES, sub);
        return e.d * (dot(e.lo, xa) + dot(e.hi, xb)) + e.m * sx;
    }
    // Q4_0 / Q4_1: byte j holds value j (low nibble) and value j + 16 (high nibble).
    let q = quant_word(row, bi, sub);
    let s = dot(lo_nibbles(q), xa) + dot(hi_nibbles(q), xb);
    if (FMT == Q4_0) {
        return block_d(row, bi) * (s - 8.0 * sx);
    }
    let dm = block_dm(row, bi);
    return dm.x * s + dm.y * sx;
}

// The byte offsets of the R rows of the group whose first output is `o` (components past R
// unused); rows past the part are read from its last row (their sums are never written).
fn rows_at(o: u32, up: u32) -> vec4<u32> {
    return (min(vec4<u32>(o) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.rows - 1u)) + vec4<u32>(up)) * p.row_bytes;
}

// Eight values of the K-quant chunk `ci` of the row at byte `row`, quarter `sub`, dotted with
// the x values under them (`sx` their sum).
fn k_dot(row: u32, ci: u32, sub: u32, xa: vec4<f32>, xb: vec4<f32>, sx: f32) -> f32 {
    let e = k_eight(row + (ci / 8u) * BLK_BYTES, ci % 8u, sub);
    return e.scale * (dot(e.lo, xa) + dot(e.hi, xb)) - e.mn * sx;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let lane = lid & 31u;
    let g = lid >> 5u;
    // First output of this group, and (GLU, odd group) the offset of up's rows.
    let o = select(wid.x * 8u * R + g * R, wid.x * 4u * R + (g >> 1u) * R, GLU);
    let up = select(0u, p.glu * (g & 1u), GLU);
    let t = wid.y;
    // Component i: row o + i. The rows are written out (not a loop over an indexed
    // accumulator), so that the accumulators stay in registers.
    var acc = vec4<f32>(0.0);
    if (o < p.rows && t < p.n) {
        let rb = rows_at(o, up);
        let xo = t * p.k;
        let sub = lane & 3u;
        if (FMT == F32 || FMT == F16) {
            for (var c = lane; c < p.k; c += 32u) {
                let i = xo + c;
                let xv = xin(i >> 2u)[i & 3u];
                acc.x += deq(rb.x, c) * xv;
                if (R > 1u) {
                    acc.y += deq(rb.y, c) * xv;
                }
                if (R > 2u) {
                    acc.z += deq(rb.z, c) * xv;
                    acc.w += deq(rb.w, c) * xv;
                }
            }
        } else if (IS_K) {
            // K-quants: the same pass over 32-value chunks (8 per super-block), four lanes each.
            for (var ci = lane >> 2u; ci < p.k / 32u; ci += 8u) {
                let xv = (xo + ci * 32u) >> 2u;
                let xa = xin(xv + 2u * sub);
                let xb = xin(xv + 2u * sub + 1u);
                let sx = dot(xa + xb, vec4<f32>(1.0));
                acc.x += k_dot(rb.x, ci, sub, xa, xb, sx);
                if (R > 1u) {
                    acc.y += k_dot(rb.y, ci, sub, xa, xb, sx);
                }
                if (R > 2u) {
                    acc.z += k_dot(rb.z, ci, sub, xa, xb, sx);
                    acc.w += k_dot(rb.w, ci, sub, xa, xb, sx);
                }
            }
        } else {
            for (var bi = lane >> 2u; bi < p.k / BLK; bi += 8u) {
                let xv = (xo + bi * BLK) >> 2u;
                // Q8_0: values 8 sub .. 8 sub + 8; Q4: values 4 sub .. and 16 + 4 sub ..
                let xa = xin(xv + select(sub, 2u * sub, FMT == Q8_0));
                let xb = xin(xv + select(4u + sub, 2u * sub + 1u, FMT == Q8_0));
                let sx = dot(xa + xb, vec4<f32>(1.0));
                acc.x += quarter_dot(rb.x, bi, sub, xa, xb, sx);
                if (R > 1u) {
                    acc.y += quarter_dot(rb.y, bi, sub, xa, xb, sx);
                }
                if (R > 2u) {
                    acc.z += quarter_dot(rb.z, bi, sub, xa, xb, sx);
                    acc.w += quarter_dot(rb.w, bi, sub, xa, xb, sx);
                }
            }
        }
    }
    let s = group_sum(acc, lid);
    if (lane != 0u || o >= p.rows || t >= p.n) {
        return;
    }
    for (var r = 0u; r < R; r++) {
        if (o + r >= p.rows) {
            break;
        }
        if (!GLU) {
            out[t * p.m + p.row0 + o + r] = s[r];
        } else if ((g & 1u) == 0u) {
            let gate = s[r];
            out[t * p.m + p.row0 + o + r] = gate / (1.0 + exp(-gate)) * sh[lid + 32u][r];
        }
    }
}
