// out = (x - mean) / sqrt(var + eps) · g + b along each row of x (rows, cols): one workgroup per
// row, the mean and then the variance reduced by row_sum.wgsl (prepended): two passes over the
// row, as ggml's norm computes them. Grid: (rows).

struct Params {
    cols: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let base = wid.x * p.cols;
    var s = 0.0;
    for (var c = lid; c < p.cols; c += 256u) {
        s += x[base + c];
    }
    let mean = row_sum(lid, s) / f32(p.cols);
    var s2 = 0.0;
    for (var c = lid; c < p.cols; c += 256u) {
        let d = x[base + c] - mean;
        s2 = fma(d, d, s2);
    }
    let scale = 1.0 / sqrt(row_sum(lid, s2) / f32(p.cols) + p.eps);
    for (var c = lid; c < p.cols; c += 256u) {
        out[base + c] = (x[base + c] - mean) * scale * g[c] + b[c];
    }
}
