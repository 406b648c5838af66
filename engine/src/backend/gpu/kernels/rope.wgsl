// Rotates x (n, n_heads * head_dim) in place. The angles come from a (positions, dims / 2)
// table of (cos, sin) that the host computes once per rope configuration, with the CPU
// backend's f32 arithmetic (θ by repeated multiplication, as ggml), so both backends rotate by
// the same numbers. Grid: (ceil(n_heads * dims/2 / 256), n).

struct Params {
    n_heads: u32,
    head_dim: u32,
    half: u32, // rotated pairs per head
    n: u32,
    pos: u32,  // position of row 0
    neox: u32, // 0: pairs (2i, 2i+1); 1: pairs (i, i + half)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> cs: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let idx = wid.x * 256u + lid;
    let t = wid.y;
    let h = idx / p.half;
    let i = idx % p.half;
    if (h >= p.n_heads || t >= p.n) {
        return;
    }
    let c = cs[(p.pos + t) * p.half + i];
    let base = t * p.n_heads * p.head_dim + h * p.head_dim;
    let a = base + select(2u * i, i, p.neox != 0u);
    let b = base + select(2u * i + 1u, i + p.half, p.neox != 0u);
    let x0 = x[a];
    let x1 = x[b];
    x[a] = x0 * c.x - x1 * c.y;
    x[b] = x0 * c.y + x1 * c.x;
}
