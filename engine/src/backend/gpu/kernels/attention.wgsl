// Split-KV attention, first pass: for query head h of token t, the keys of one chunk of 64
// positions (split s). Writes the chunk's max score m, Σ exp(score − m) and the unnormalized
// Σ exp(score − m) · v; attention_merge.wgsl combines the chunks. Causal: token t sees
// positions 0 ..= pos + t, or with a sliding window w > 0 only the last w of them (a chunk
// wholly before the window gives m = −3e38, l = 0, and weighs nothing in the merge). Four
// invocations per position: each takes a quarter of the head's dimension pairs for the scores,
// then a quarter of the chunk's positions for the weighted sum of values, so no invocation runs
// a long chain of dependent loads. Grid: (n_heads, n, n_splits): a block of n query rows,
// rows row0 .. row0 + n of q (the launcher takes a long prefill in blocks, so that the split
// scratch stays small), their splits indexed within the block.
// q stays f32 against the f16 keys (ggml rounds it to f16 for its f16 dot products: that moved
// the default model's logits by 1.9e-2 against the f32 reference). Prepended by the launcher:
// `KV`, one word of the f16 cache (two values), and `pair(w)`, its values as f32: a u32
// unpacked, or vec2<f16> converted where the device has shader-f16.

struct Params {
    n_heads: u32,
    group: u32,     // query heads per KV head
    head_dim: u32,
    max_ctx: u32,
    pos: u32,
    n: u32,
    n_splits: u32,
    scale: f32,
    window: u32,    // sliding window (0: none)
    row0: u32,      // the block's first row of q (pos is already that row's position)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kc: array<KV>;
@group(0) @binding(3) var<storage, read> vc: array<KV>;
@group(0) @binding(4) var<storage, read_write> part_o: array<f32>;
@group(0) @binding(5) var<storage, read_write> part_ml: array<f32>;

const CH: u32 = 64u;
const NEG: f32 = -3.0e38;
// Positions per quarter of the chunk in the value pass.
const QUARTER: u32 = 16u;

var<workgroup> qs: array<vec2<f32>, 128>;
// Partial dot products, four per position.
var<workgroup> part: array<f32, 256>;
var<workgroup> ps: array<f32, 64>;
var<workgroup> red: array<f32, 64>;
// Partial outputs of the four quarters of the chunk, 128 dimension pairs each.
var<workgroup> po: array<vec2<f32>, 512>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    let s = wid.z;
    let hd = p.head_dim;
    let g = h / p.group;
    let len = p.pos + t + 1u;
    let first = select(0u, len - min(len, p.window), p.window > 0u);
    let j0 = s * CH;
    let q_dim = p.n_heads * hd;
    let pairs = hd / 2u;
    if (lid < pairs) {
        let qi = (p.row0 + t) * q_dim + h * hd + 2u * lid;
        qs[lid] = vec2<f32>(q[qi], q[qi + 1u]);
    }
    workgroupBarrier();

    // Scores: position lid / 4 of the chunk, quarter lid % 4 of its dimension pairs.
    let j = j0 + (lid >> 2u);
    let per = (pairs + 3u) / 4u;
    let d_begin = (lid & 3u) * per;
    let d_end = min(d_begin + per, pairs);
    var acc = 0.0;
    if (j < len && j >= first) {
        let kb = (g * p.max_ctx + j) * pairs;
        for (var d2 = d_begin; d2 < d_end; d2++) {
            let kv = pair(kc[kb + d2]);
            acc = fma(qs[d2].x, kv.x, acc);
            acc = fma(qs[d2].y, kv.y, acc);
        }
    }
    part[lid] = acc;
    workgroupBarrier();
    let valid = lid < CH && j0 + lid < len && j0 + lid >= first;
    var sc = NEG;
    if (valid) {
        let b = 4u * lid;
        sc = ((part[b] + part[b + 1u]) + (part[b + 2u] + part[b + 3u])) * p.scale;
    }
    if (lid < CH) {
        red[lid] = sc;
    }
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
    if (lid < CH) {
        ps[lid] = e;
        red[lid] = e;
    }
    workgroupBarrier();
    for (var st = 32u; st > 0u; st >>= 1u) {
        if (lid < st) {
            red[lid] += red[lid + st];
        }
        workgroupBarrier();
    }
    let l = red[0];

    // Values: quarter lid / 64 of the chunk's positions, dimension pairs lid % 64 (step 64).
    let count = min(CH, len - min(len, j0));
    let jq = (lid >> 6u) * QUARTER;
    let jq_end = min(jq + QUARTER, count);
    for (var d2 = lid & 63u; d2 < pairs; d2 += 64u) {
        var o = vec2<f32>(0.0);
        for (var jj = jq; jj < jq_end; jj++) {
            o = fma(vec2<f32>(ps[jj]), pair(vc[(g * p.max_ctx + j0 + jj) * pairs + d2]), o);
        }
        po[(lid >> 6u) * 128u + d2] = o;
    }
    workgroupBarrier();
    let slot = (t * p.n_heads + h) * p.n_splits + s;
    if (lid < 64u) {
        for (var d2 = lid; d2 < pairs; d2 += 64u) {
            let o = (po[d2] + po[128u + d2]) + (po[256u + d2] + po[384u + d2]);
            part_o[slot * hd + 2u * d2] = o.x;
            part_o[slot * hd + 2u * d2 + 1u] = o.y;
        }
    }
    if (lid == 0u) {
        part_ml[2u * slot] = m;
        part_ml[2u * slot + 1u] = l;
    }
}
