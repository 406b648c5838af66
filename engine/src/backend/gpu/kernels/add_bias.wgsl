// x (rows, cols) += bias (cols) on every row: the q/k/v biases of projections that are not
// stacked (stacked ones get theirs inside rope_store). Grid: 2-D over ceil(len / 256) workgroups.

struct Params {
    len: u32, // rows * cols
    cols: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.len) {
        return;
    }
    x[i] += bias[i % p.cols];
}
