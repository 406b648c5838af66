// out = gelu(x), elementwise, with the tanh approximation: 0.5·x·(1 + tanh(√(2/π)·x·(1 +
// 0.044715·x²))), and ggml's cut-offs (x ≤ -10 → 0, x ≥ 10 → x). tanh's argument is clamped to
// ±10, where tanh is ±1 in f32, so no implementation overflows inside it. Grid: 2-D over
// ceil(len / 256) workgroups.

struct Params {
    len: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.len) {
        return;
    }
    let v = x[i];
    let u = 0.7978846 * v * (1.0 + 0.044715 * v * v);
    var y = 0.5 * v * (1.0 + tanh(clamp(u, -10.0, 10.0)));
    if (v <= -10.0) {
        y = 0.0;
    } else if (v >= 10.0) {
        y = v;
    }
    out[i] = y;
}
