// out = gelu(x), elementwise, with the tanh approximation (gelu_tanh.wgsl, prepended) and
// ggml's cut-offs (x ≤ -10 → 0, x ≥ 10 → x). Grid: 2-D over ceil(len / 256) workgroups.

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
    var y = gelu_tanh(vec4<f32>(v)).x;
    if (v <= -10.0) {
        y = 0.0;
    } else if (v >= 10.0) {
        y = v;
    }
    out[i] = y;
}
