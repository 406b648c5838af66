// out = x / sqrt(mean(x²) + eps) · g along each row of x (rows, cols): one workgroup per row,
// the sum of squares reduced by row_sum.wgsl (prepended). Grid: (rows).

struct Params {
    cols: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let base = wid.x * p.cols;
    var s = 0.0;
    for (var c = lid; c < p.cols; c += 256u) {
        let v = x[base + c];
        s = fma(v, v, s);
    }
    let scale = 1.0 / sqrt(row_sum(lid, s) / f32(p.cols) + p.eps);
    for (var c = lid; c < p.cols; c += 256u) {
        out[base + c] = x[base + c] * scale * g[c];
    }
}
