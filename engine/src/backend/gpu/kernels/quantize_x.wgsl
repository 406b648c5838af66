// Activations to 8 bits for matvec_q8.wgsl, as the CPU backend and ggml quantize them (Q8_0 /
// Q8_1): per block of 32 values, d = amax / 127, q = round(x · 127 / amax) (ties to even; 0 when
// amax = 0). One invocation per block; block b of x (n, k), k a multiple of 32, goes to
// xq[10 b ..]: the 32 quants packed 4 to a u32 (value order), d rounded to f16, and d · Σq
// rounded to f16 (Q8_1's sum, for Q4_1's minimum), both as f32 bits.
// Grid: grid_1d over the n k / 32 blocks.

struct Params {
    blocks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> xq: array<u32>;

fn to_f16(v: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(v, 0.0))).x;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (b >= p.blocks) {
        return;
    }
    var v: array<vec4<f32>, 8>;
    var amax = 0.0;
    for (var i = 0u; i < 8u; i++) {
        v[i] = x[8u * b + i];
        let a = abs(v[i]);
        amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
    }
    let d = amax / 127.0;
    let id = select(0.0, 127.0 / amax, amax != 0.0);
    var sum = 0;
    for (var i = 0u; i < 8u; i++) {
        let q = vec4<i32>(round(v[i] * id));
        sum += q.x + q.y + q.z + q.w;
        xq[10u * b + i] = pack4xI8(q);
    }
    xq[10u * b + 8u] = bitcast<u32>(to_f16(d));
    xq[10u * b + 9u] = bitcast<u32>(to_f16(d * f32(sum)));
}
