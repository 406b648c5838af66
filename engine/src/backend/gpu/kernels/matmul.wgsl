// out (n, m) = x (n, k) · wᵀ for many tokens (prefill): a 64-row × 64-token tile per
// workgroup. Each step of 32 columns (one block of the quantized formats, an eighth of a
// K-quant super-block) dequantizes a 64 × 32
// slice of w (four invocations per row, a quarter block each, as in matvec.wgsl) and loads a
// 64 × 32 slice of x into workgroup memory, both column-major so that every invocation reads
// its 4 rows and 4 tokens as two vec4s; each invocation accumulates a 4 × 4 tile in f32.
// The accumulators are four named vec4s, never an array: a private array indexed in a loop
// is kept in local memory by some drivers (NVIDIA's: 4.6× slower prefill on an H100).
// Grid: (ceil(rows / 64), ceil(n / 64)). Prepended: quant.wgsl and its constants.

struct Params {
    rows: u32,
    k: u32,
    n: u32,
    m: u32,
    row0: u32,
    row_bytes: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 32u;

// (TK, TM) and (TK, TN), column k of the slice in row k: vec4 reads along rows and tokens.
var<workgroup> ws: array<vec4<f32>, 512>;
var<workgroup> xs: array<vec4<f32>, 512>;

fn put_w(col: u32, row: u32, v: f32) {
    ws[col * 16u + row / 4u][row % 4u] = v;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = wid.x * TM;
    let tok0 = wid.y * TN;
    let tx = lid % 16u; // rows tx*4 .. tx*4+4 of the tile
    let ty = lid / 16u; // tokens ty*4 .. ty*4+4 of the tile
    // accN[j]: row tx*4+N, token ty*4+j.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // Loaders: row / token lid / 4 of the tile, quarter lid % 4 of the 32 columns.
    let lr = lid / 4u;
    let sub = lid % 4u;
    let gr = row0 + lr;
    let gt = tok0 + lr;
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        if (FMT == F32 || FMT == F16) {
            for (var e = 0u; e < 8u; e++) {
                let c = 8u * sub + e;
                var v = 0.0;
                if (gr < p.rows && k0 + c < p.k) {
                    v = deq(gr * p.row_bytes, k0 + c);
                }
                put_w(c, lr, v);
            }
        } else if (IS_K && gr < p.rows) {
            // K-quants: the step's 32 columns are chunk (k0 / 32) % 8 of a super-block.
            let e = k_eight(gr * p.row_bytes + (k0 / BLK) * BLK_BYTES, (k0 / 32u) % 8u, sub);
            let lo = e.scale * e.lo - e.mn;
            let hi = e.scale * e.hi - e.mn;
            for (var i = 0u; i < 4u; i++) {
                put_w(8u * sub + i, lr, lo[i]);
                put_w(8u * sub + 4u + i, lr, hi[i]);
            }
        } else if (gr < p.rows) {
            let row = gr * p.row_bytes;
            let bi = k0 / BLK;
            if (FMT == Q8_0) {
                let d = block_d(row, bi);
                let lo = d * bytes_i8(quant_word(row, bi, 2u * sub));
                let hi = d * bytes_i8(quant_word(row, bi, 2u * sub + 1u));
                for (var e = 0u; e < 4u; e++) {
                    put_w(8u * sub + e, lr, lo[e]);
                    put_w(8u * sub + 4u + e, lr, hi[e]);
                }
            } else if (IS_Q5) {
                let e = q5_quarter(row + bi * BLK_BYTES, sub);
                let lo = e.d * e.lo + e.m;
                let hi = e.d * e.hi + e.m;
                for (var i = 0u; i < 4u; i++) {
                    put_w(4u * sub + i, lr, lo[i]);
                    put_w(16u + 4u * sub + i, lr, hi[i]);
                }
            } else {
                let q = quant_word(row, bi, sub);
                var lo = lo_nibbles(q);
                var hi = hi_nibbles(q);
                if (FMT == Q4_0) {
                    let d = block_d(row, bi);
                    lo = d * (lo - 8.0);
                    hi = d * (hi - 8.0);
                } else {
                    let dm = block_dm(row, bi);
                    lo = dm.x * lo + dm.y;
                    hi = dm.x * hi + dm.y;
                }
                for (var e = 0u; e < 4u; e++) {
                    put_w(4u * sub + e, lr, lo[e]);
                    put_w(16u + 4u * sub + e, lr, hi[e]);
                }
            }
        } else {
            for (var e = 0u; e < 8u; e++) {
                put_w(8u * sub + e, lr, 0.0);
            }
        }
        for (var e = 0u; e < 8u; e++) {
            let c = 8u * sub + e;
            var v = 0.0;
            if (gt < p.n && k0 + c < p.k) {
                v = x[gt * p.k + k0 + c];
            }
            xs[c * 16u + lr / 4u][lr % 4u] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let wv = ws[kk * 16u + tx];
            let xv = xs[kk * 16u + ty];
            acc0 = fma(vec4<f32>(wv.x), xv, acc0);
            acc1 = fma(vec4<f32>(wv.y), xv, acc1);
            acc2 = fma(vec4<f32>(wv.z), xv, acc2);
            acc3 = fma(vec4<f32>(wv.w), xv, acc3);
        }
        workgroupBarrier();
    }
    let r = row0 + tx * 4u;
    for (var j = 0u; j < 4u; j++) {
        let t = tok0 + ty * 4u + j;
        if (t < p.n) {
            let o = t * p.m + p.row0 + r;
            if (r < p.rows) { out[o] = acc0[j]; }
            if (r + 1u < p.rows) { out[o + 1u] = acc1[j]; }
            if (r + 2u < p.rows) { out[o + 2u] = acc2[j]; }
            if (r + 3u < p.rows) { out[o + 3u] = acc3[j]; }
        }
    }
}
