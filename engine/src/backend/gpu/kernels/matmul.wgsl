// out (n, m) = x (n, k) · wᵀ for many tokens (prefill): a 64-row × 32-token tile per
// workgroup; each step dequantizes a 64 × 32 slice of w and loads a 32 × 32 slice of x into
// workgroup memory, then every thread accumulates 4 rows × 2 tokens in f32.
// Grid: (ceil(rows / 64), ceil(n / 32)). Prepended: quant.wgsl and its constants.

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
const TN: u32 = 32u;
const TK: u32 = 32u;
const PAD: u32 = 33u; // row stride of the tiles, off the bank conflicts

var<workgroup> ws: array<f32, 2112>; // (TM, PAD)
var<workgroup> xs: array<f32, 1056>; // (TN, PAD)

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = wid.x * TM;
    let tok0 = wid.y * TN;
    let tx = lid % 16u; // rows tx*4 .. tx*4+4 of the tile
    let ty = lid / 16u; // tokens ty*2 .. ty*2+2 of the tile
    var acc: array<array<f32, 2>, 4>;
    for (var i = 0u; i < 4u; i++) {
        acc[i][0] = 0.0;
        acc[i][1] = 0.0;
    }
    // Loaders: 8 w values (one row, 8 columns) and 4 x values per thread per step.
    let wr = lid / 4u;
    let wc = (lid % 4u) * 8u;
    let xr = lid / 8u;
    let xc = (lid % 8u) * 4u;
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        let gr = row0 + wr;
        for (var e = 0u; e < 8u; e++) {
            let c = k0 + wc + e;
            var v = 0.0;
            if (gr < p.rows && c < p.k) {
                v = deq(gr * p.row_bytes, c);
            }
            ws[wr * PAD + wc + e] = v;
        }
        let gt = tok0 + xr;
        for (var e = 0u; e < 4u; e++) {
            let c = k0 + xc + e;
            var v = 0.0;
            if (gt < p.n && c < p.k) {
                v = x[gt * p.k + c];
            }
            xs[xr * PAD + xc + e] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let x0 = xs[(ty * 2u) * PAD + kk];
            let x1 = xs[(ty * 2u + 1u) * PAD + kk];
            for (var i = 0u; i < 4u; i++) {
                let wv = ws[(tx * 4u + i) * PAD + kk];
                acc[i][0] = fma(wv, x0, acc[i][0]);
                acc[i][1] = fma(wv, x1, acc[i][1]);
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let r = row0 + tx * 4u + i;
        for (var j = 0u; j < 2u; j++) {
            let t = tok0 + ty * 2u + j;
            if (r < p.rows && t < p.n) {
                out[t * p.m + p.row0 + r] = acc[i][j];
            }
        }
    }
}
