// Writes k, v (n, kv_dim) into one layer's f16 cache at positions pos .. pos + n. Both caches
// are (n_kv_heads, max_ctx, head_dim) f16, packed two per u32. Grid: (ceil(kv_dim/2 / 256), n).

struct Params {
    n: u32,
    kv_dim: u32,
    head_dim: u32,
    max_ctx: u32,
    pos: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> kc: array<u32>;
@group(0) @binding(4) var<storage, read_write> vc: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = 2u * (wid.x * 256u + lid);
    let t = wid.y;
    if (e >= p.kv_dim || t >= p.n) {
        return;
    }
    let g = e / p.head_dim;
    let d = e % p.head_dim;
    let dst = ((g * p.max_ctx + p.pos + t) * p.head_dim + d) / 2u;
    let src = t * p.kv_dim + e;
    kc[dst] = pack2x16float(vec2<f32>(k[src], k[src + 1u]));
    vc[dst] = pack2x16float(vec2<f32>(v[src], v[src + 1u]));
}
