// Greedy selection on the GPU: out[0] = the index of the largest finite value of
// x[offset .. offset+len] (the first one on ties, as sample::argmax), or 0xffffffff when none is
// finite; out[1] = that value and out[2] = log Σ exp over the finite values (f32 bits), so
// the chosen token's log-probability costs the host 12 bytes, not the row. One workgroup.

struct Params {
    len: u32,
    offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;
// Σ exp(v - best_v) over what each invocation (then each reduced pair) has seen.
var<workgroup> sum_e: array<f32, 256>;

const NONE: u32 = 0xffffffffu;

fn finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    var bv = 0.0;
    var bi = NONE;
    var s = 0.0;
    for (var i = lid; i < p.len; i += 256u) {
        let v = x[p.offset + i];
        if (finite(v)) {
            if (bi == NONE || v > bv) {
                // A new maximum rescales the running sum (online log-sum-exp).
                s = select(1.0, s * exp(bv - v) + 1.0, bi != NONE);
                bv = v;
                bi = i;
            } else {
                s += exp(v - bv);
            }
        }
    }
    best_v[lid] = bv;
    best_i[lid] = bi;
    sum_e[lid] = s;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st >>= 1u) {
        if (lid < st) {
            let oi = best_i[lid + st];
            let ov = best_v[lid + st];
            let os = sum_e[lid + st];
            let mi = best_i[lid];
            let mv = best_v[lid];
            let ms = sum_e[lid];
            if (oi != NONE) {
                if (mi == NONE) {
                    best_v[lid] = ov;
                    best_i[lid] = oi;
                    sum_e[lid] = os;
                } else if (ov > mv || (ov == mv && oi < mi)) {
                    best_v[lid] = ov;
                    best_i[lid] = oi;
                    sum_e[lid] = os + ms * exp(mv - ov);
                } else {
                    sum_e[lid] = ms + os * exp(ov - mv);
                }
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[0] = best_i[0];
        out[1] = bitcast<u32>(best_v[0]);
        out[2] = bitcast<u32>(best_v[0] + log(sum_e[0]));
    }
}
