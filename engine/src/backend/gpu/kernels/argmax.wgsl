// Greedy selection on the GPU: the index of the largest finite value of x[offset .. offset+len]
// (the first one on ties, as sample::argmax), or 0xffffffff when none is finite. One workgroup.

struct Params {
    len: u32,
    offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;

const NONE: u32 = 0xffffffffu;

fn finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    var bv = 0.0;
    var bi = NONE;
    for (var i = lid; i < p.len; i += 256u) {
        let v = x[p.offset + i];
        if (finite(v) && (bi == NONE || v > bv)) {
            bv = v;
            bi = i;
        }
    }
    best_v[lid] = bv;
    best_i[lid] = bi;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st >>= 1u) {
        if (lid < st) {
            let oi = best_i[lid + st];
            let ov = best_v[lid + st];
            let mi = best_i[lid];
            let mv = best_v[lid];
            if (oi != NONE && (mi == NONE || ov > mv || (ov == mv && oi < mi))) {
                best_v[lid] = ov;
                best_i[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[0] = best_i[0];
    }
}
