// Split-KV attention, second pass: combines the chunks of attention.wgsl for query head h of
// token t into out (n, n_heads * head_dim). Grid: (n_heads, n): a block of n rows, out's rows
// row0 .. row0 + n, as attention.wgsl took them.

struct Params {
    n_heads: u32,
    head_dim: u32,
    n_splits: u32,
    n: u32,
    row0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> part_o: array<f32>;
@group(0) @binding(2) var<storage, read> part_ml: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    let hd = p.head_dim;
    let base = (t * p.n_heads + h) * p.n_splits;
    var mx = part_ml[2u * base];
    for (var s = 1u; s < p.n_splits; s++) {
        mx = max(mx, part_ml[2u * (base + s)]);
    }
    var l = 0.0;
    for (var s = 0u; s < p.n_splits; s++) {
        l += part_ml[2u * (base + s) + 1u] * exp(part_ml[2u * (base + s)] - mx);
    }
    let inv = 1.0 / l;
    for (var d = lid; d < hd; d += 64u) {
        var o = 0.0;
        for (var s = 0u; s < p.n_splits; s++) {
            o = fma(part_o[(base + s) * hd + d], exp(part_ml[2u * (base + s)] - mx), o);
        }
        out[((p.row0 + t) * p.n_heads + h) * hd + d] = o * inv;
    }
}
