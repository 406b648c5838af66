// Split-KV attention, first pass: for query head h of token t, the keys of one chunk of 64
// positions (split s). Writes the chunk's max score m, Σ exp(score − m) and the unnormalized
// Σ exp(score − m) · v; attention_merge.wgsl combines the chunks. Causal: token t sees
// positions 0 ..= pos + t. As in the CPU backend, q is rounded to f16 before it meets the f16
// keys. Grid: (n_heads, n, n_splits).

struct Params {
    n_heads: u32,
    group: u32,     // query heads per KV head
    head_dim: u32,
    max_ctx: u32,
    pos: u32,
    n: u32,
    n_splits: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kc: array<u32>;
@group(0) @binding(3) var<storage, read> vc: array<u32>;
@group(0) @binding(4) var<storage, read_write> part_o: array<f32>;
@group(0) @binding(5) var<storage, read_write> part_ml: array<f32>;

const CH: u32 = 64u;
const NEG: f32 = -3.0e38;

var<workgroup> qs: array<f32, 256>;
var<workgroup> ps: array<f32, 64>;
var<workgroup> red: array<f32, 64>;

fn v_at(i: u32) -> f32 {
    let pair = unpack2x16float(vc[i >> 1u]);
    return select(pair.x, pair.y, (i & 1u) != 0u);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    let s = wid.z;
    let hd = p.head_dim;
    let g = h / p.group;
    let len = p.pos + t + 1u;
    let j0 = s * CH;
    let q_dim = p.n_heads * hd;
    for (var d = lid; d < hd; d += CH) {
        qs[d] = quantizeToF16(q[t * q_dim + h * hd + d]);
    }
    workgroupBarrier();

    let j = j0 + lid;
    let valid = j < len;
    var sc = NEG;
    if (valid) {
        let kb = (g * p.max_ctx + j) * hd / 2u;
        var acc = 0.0;
        for (var d2 = 0u; d2 < hd / 2u; d2++) {
            let kv = unpack2x16float(kc[kb + d2]);
            acc = fma(qs[2u * d2], kv.x, acc);
            acc = fma(qs[2u * d2 + 1u], kv.y, acc);
        }
        sc = acc * p.scale;
    }
    red[lid] = sc;
    workgroupBarrier();
    for (var st = 32u; st > 0u; st >>= 1u) {
        if (lid < st) {
            red[lid] = max(red[lid], red[lid + st]);
        }
        workgroupBarrier();
    }
    let m = red[0];
    workgroupBarrier();
    var e = 0.0;
    if (valid) {
        e = exp(sc - m);
    }
    ps[lid] = e;
    red[lid] = e;
    workgroupBarrier();
    for (var st = 32u; st > 0u; st >>= 1u) {
        if (lid < st) {
            red[lid] += red[lid + st];
        }
        workgroupBarrier();
    }
    let l = red[0];

    let slot = (t * p.n_heads + h) * p.n_splits + s;
    let count = min(CH, len - min(len, j0));
    for (var d = lid; d < hd; d += CH) {
        var o = 0.0;
        for (var jj = 0u; jj < count; jj++) {
            o = fma(ps[jj], v_at((g * p.max_ctx + j0 + jj) * hd + d), o);
        }
        part_o[slot * hd + d] = o;
    }
    if (lid == 0u) {
        part_ml[2u * slot] = m;
        part_ml[2u * slot + 1u] = l;
    }
}
