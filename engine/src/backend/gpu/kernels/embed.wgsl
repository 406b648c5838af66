// out (n, cols) = rows ids[t] of a (possibly quantized) embedding table part, dequantized.
// Tokens whose row lies in another part are left to that part's dispatch.
// Grid: (ceil(cols / 256), n). Prepended: quant.wgsl and its constants.

struct Params {
    cols: u32,
    n: u32,
    row0: u32,      // first row of this table part
    rows: u32,      // rows in this part
    row_bytes: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wid.x * 256u + lid;
    let t = wid.y;
    if (c >= p.cols || t >= p.n) {
        return;
    }
    let id = ids[t];
    if (id < p.row0 || id - p.row0 >= p.rows) {
        return;
    }
    out[t * p.cols + c] = deq((id - p.row0) * p.row_bytes, c);
}
