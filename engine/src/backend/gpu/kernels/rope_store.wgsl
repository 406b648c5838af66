// Rotary positions and the KV cache append in one pass: rotates q (n, n_heads * head_dim) in
// place, and writes k rotated and v as they are into one layer's f16 caches at positions
// pos .. pos + n (both (n_kv_heads, max_ctx, head_dim), two f16 per u32). The angles are
// rope.wgsl's (cos, sin) table. Per token, the first n_heads * half invocations each rotate one
// pair of q; the next kv_dim / 2 each write one u32 of each cache.
// Grid: (ceil((n_heads * half + kv_dim / 2) / 256), n).

struct Params {
    n_heads: u32,
    kv_dim: u32,
    head_dim: u32,
    half: u32, // rotated pairs per head
    n: u32,
    pos: u32,  // position of row 0
    neox: u32, // 0: pairs (2i, 2i+1); 1: pairs (i, i + half)
    max_ctx: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> cs: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> q: array<f32>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> kc: array<u32>;
@group(0) @binding(6) var<storage, read_write> vc: array<u32>;

// Element d of the head of k that starts at `base`, rotated for position `at`.
fn k_rotated(base: u32, d: u32, at: u32) -> f32 {
    if (d >= 2u * p.half) {
        return k[base + d];
    }
    var i: u32;
    var second: bool;
    var x0: f32;
    var x1: f32;
    if (p.neox != 0u) {
        i = d % p.half;
        second = d >= p.half;
        x0 = k[base + i];
        x1 = k[base + i + p.half];
    } else {
        i = d / 2u;
        second = (d & 1u) == 1u;
        x0 = k[base + 2u * i];
        x1 = k[base + 2u * i + 1u];
    }
    let c = cs[at * p.half + i];
    return select(x0 * c.x - x1 * c.y, x0 * c.y + x1 * c.x, second);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let idx = wid.x * 256u + lid;
    let t = wid.y;
    let at = p.pos + t;
    let q_pairs = p.n_heads * p.half;
    if (t >= p.n) {
        return;
    }
    if (idx < q_pairs) {
        let h = idx / p.half;
        let i = idx % p.half;
        let c = cs[at * p.half + i];
        let base = t * p.n_heads * p.head_dim + h * p.head_dim;
        let a = base + select(2u * i, i, p.neox != 0u);
        let b = base + select(2u * i + 1u, i + p.half, p.neox != 0u);
        let x0 = q[a];
        let x1 = q[b];
        q[a] = x0 * c.x - x1 * c.y;
        q[b] = x0 * c.y + x1 * c.x;
        return;
    }
    let e = 2u * (idx - q_pairs);
    if (e >= p.kv_dim) {
        return;
    }
    let g = e / p.head_dim;
    let d = e % p.head_dim;
    let head = t * p.kv_dim + g * p.head_dim;
    let dst = ((g * p.max_ctx + at) * p.head_dim + d) / 2u;
    kc[dst] = pack2x16float(vec2<f32>(k_rotated(head, d, at), k_rotated(head, d + 1u, at)));
    vc[dst] = pack2x16float(vec2<f32>(v[head + d], v[head + d + 1u]));
}
