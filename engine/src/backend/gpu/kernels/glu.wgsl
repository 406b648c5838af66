// out (rows, cols) = act(gate) · up, elementwise: SwiGLU (act = silu) or GEGLU (gelu's tanh
// approximation, Gemma's feed-forward); the launcher prepends `act4`. gate and up are read with a
// row stride of their own and up at an offset, so they may be two (rows, cols) tensors or the
// two halves of one (rows, 2 cols) product of stacked [gate; up] weights.
// Grid: 2-D over ceil(len / 256).

struct Params {
    len: u32,    // rows * cols
    cols: u32,
    stride: u32, // floats per row of gate and up
    up_off: u32, // offset of up's row in its buffer
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
    let src = (i / p.cols) * p.stride + i % p.cols;
    out[i] = act4(vec4<f32>(gate[src])).x * up[src + p.up_off];
}
