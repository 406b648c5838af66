// Rotary positions and the KV cache append in one pass: writes q rotated to qo (n, n_heads *
// head_dim), and k rotated and v as they are into one layer's f16 caches at positions
// pos .. pos + n (both (n_kv_heads, max_ctx, head_dim), two f16 per u32). q, k and v are read at
// offsets and row strides of their own, so they may be three tensors or the columns of one
// (n, q_dim + 2 kv_dim) product of stacked weights. The angles are rope.wgsl's (cos, sin) table.
// `bias(i)`, defined by the launcher before this file, is element i of [bq; bk; bv] (q/k/v
// biases, Qwen2), or 0: added to every element of q, k and v as it is read.
// Per token, the first n_heads * head_dim / 2 invocations each write one pair of q; the next
// kv_dim / 2 each write one u32 of each cache.
// Grid: (ceil((n_heads * head_dim / 2 + kv_dim / 2) / 256), n).

struct Params {
    n_heads: u32,
    kv_dim: u32,
    head_dim: u32,
    half: u32, // rotated pairs per head
    n: u32,
    pos: u32,  // position of row 0
    neox: u32, // 0: pairs (2i, 2i+1); 1: pairs (i, i + half)
    max_ctx: u32,
    q_stride: u32, // floats per row of qi
    kv_stride: u32, // floats per row of k and v
    q_off: u32,
    k_off: u32,
    v_off: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> cs: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> qi: array<f32>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> qo: array<f32>;
@group(0) @binding(6) var<storage, read_write> kc: array<u32>;
@group(0) @binding(7) var<storage, read_write> vc: array<u32>;

// Element d of the head of k that starts at `base` (its bias at `bb`), rotated for position `at`.
fn k_rotated(base: u32, bb: u32, d: u32, at: u32) -> f32 {
    if (d >= 2u * p.half) {
        return k[base + d] + bias(bb + d);
    }
    var i: u32;
    var second: bool;
    var x0: f32;
    var x1: f32;
    if (p.neox != 0u) {
        i = d % p.half;
        second = d >= p.half;
        x0 = k[base + i] + bias(bb + i);
        x1 = k[base + i + p.half] + bias(bb + i + p.half);
    } else {
        i = d / 2u;
        second = (d & 1u) == 1u;
        x0 = k[base + 2u * i] + bias(bb + 2u * i);
        x1 = k[base + 2u * i + 1u] + bias(bb + 2u * i + 1u);
    }
    let c = cs[at * p.half + i];
    return select(x0 * c.x - x1 * c.y, x0 * c.y + x1 * c.x, second);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let idx = wid.x * 256u + lid;
    let t = wid.y;
    let at = p.pos + t;
    let hp = p.head_dim / 2u; // pairs per head
    let q_pairs = p.n_heads * hp;
    if (t >= p.n) {
        return;
    }
    if (idx < q_pairs) {
        let h = idx / hp;
        let j = idx % hp;
        let src = t * p.q_stride + p.q_off + h * p.head_dim;
        let dst = t * p.n_heads * p.head_dim + h * p.head_dim;
        if (j >= p.half) {
            // Past the rotated dimensions: copied as they are, two at a time.
            let e = 2u * j;
            qo[dst + e] = qi[src + e] + bias(h * p.head_dim + e);
            qo[dst + e + 1u] = qi[src + e + 1u] + bias(h * p.head_dim + e + 1u);
            return;
        }
        let c = cs[at * p.half + j];
        let a = select(2u * j, j, p.neox != 0u);
        let b = select(2u * j + 1u, j + p.half, p.neox != 0u);
        let x0 = qi[src + a] + bias(h * p.head_dim + a);
        let x1 = qi[src + b] + bias(h * p.head_dim + b);
        qo[dst + a] = x0 * c.x - x1 * c.y;
        qo[dst + b] = x0 * c.y + x1 * c.x;
        return;
    }
    let e = 2u * (idx - q_pairs);
    if (e >= p.kv_dim) {
        return;
    }
    let g = e / p.head_dim;
    let d = e % p.head_dim;
    let kh = t * p.kv_stride + p.k_off + g * p.head_dim;
    let vh = t * p.kv_stride + p.v_off + g * p.head_dim;
    let kb = q_pairs * 2u + e; // bias of k element e, then of v element e
    let vb = kb + p.kv_dim;
    let dst = ((g * p.max_ctx + at) * p.head_dim + d) / 2u;
    kc[dst] = pack2x16float(vec2<f32>(k_rotated(kh, kb - d, d, at), k_rotated(kh, kb - d, d + 1u, at)));
    vc[dst] = pack2x16float(vec2<f32>(v[vh + d] + bias(vb), v[vh + d + 1u] + bias(vb + 1u)));
}
