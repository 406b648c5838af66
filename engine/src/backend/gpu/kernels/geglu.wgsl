// out = gelu(gate) · up, elementwise, GELU with the tanh approximation (gelu_tanh.wgsl,
// prepended: Gemma's feed-forward). Grid: 2-D over ceil(len / 256).

struct Params {
    len: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.len) {
        return;
    }
    out[i] = gelu_tanh(vec4<f32>(gate[i])).x * up[i];
}
