// out = gelu(gate) · up, elementwise, GELU with the tanh approximation (Gemma's feed-forward).
// The tanh argument is clamped to ±10, where tanh is ±1 in f32, so that no driver's tanh
// (exp-based on some) overflows to NaN. Grid: 2-D over ceil(len / 256).

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
    let g = gate[i];
    let t = tanh(clamp(0.7978846 * g * (1.0 + 0.044715 * g * g), -10.0, 10.0));
    out[i] = 0.5 * g * (1.0 + t) * up[i];
}
