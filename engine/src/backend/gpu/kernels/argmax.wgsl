// Greedy selection on the GPU: the index of the largest finite value of x[offset .. offset+len]
// (the first one on ties, as sample::argmax), or 0xffffffff when none is finite; that value; and
// log Σ exp over the finite values, so the chosen token's log-probability costs the host 12
// bytes, not the row.
// Two passes, so that a vocabulary of 151,936 logits is read by many cores (one workgroup alone
// waits out ~600 dependent loads per invocation: 140 µs on an H100):
// PASS 0: workgroup g reduces its slice of `chunk` values to part[3g ..]: (index, value, Σ exp(v −
//         value)) as u32 bits. Grid: (groups, 1, 1).
// PASS 1: one workgroup merges the `len` triples of `part` into out[0..3]: (index, value,
//         log-sum-exp). Grid: (1, 1, 1).
// Prepended: PASS.

struct Params {
    len: u32,    // PASS 0: values; PASS 1: partial results
    offset: u32, // PASS 0: first value in x
    chunk: u32,  // PASS 0: values per workgroup
}

@group(0) @binding(0) var<uniform> p: Params;
// PASS 0: x as f32 bits; PASS 1: the partial triples.
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

// The best value seen, its index, and Σ exp(v − value) over what was seen.
struct Best {
    v: f32,
    i: u32,
    s: f32,
}

var<workgroup> sh: array<Best, 256>;

const NONE: u32 = 0xffffffffu;

fn finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

// a and b merged: the larger value (the lower index on ties), the sums rescaled to it.
fn merge(a: Best, b: Best) -> Best {
    if (b.i == NONE) {
        return a;
    }
    if (a.i == NONE) {
        return b;
    }
    if (b.v > a.v || (b.v == a.v && b.i < a.i)) {
        return Best(b.v, b.i, b.s + a.s * exp(a.v - b.v));
    }
    return Best(a.v, a.i, a.s + b.s * exp(b.v - a.v));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    var b = Best(0.0, NONE, 0.0);
    if (PASS == 0u) {
        let end = min(p.len, (wid.x + 1u) * p.chunk);
        for (var i = wid.x * p.chunk + lid; i < end; i += 256u) {
            let v = bitcast<f32>(x[p.offset + i]);
            if (finite(v)) {
                if (b.i == NONE || v > b.v) {
                    // A new maximum rescales the running sum (online log-sum-exp).
                    b.s = select(1.0, b.s * exp(b.v - v) + 1.0, b.i != NONE);
                    b.v = v;
                    b.i = i;
                } else {
                    b.s += exp(v - b.v);
                }
            }
        }
    } else {
        for (var j = lid; j < p.len; j += 256u) {
            b = merge(b, Best(bitcast<f32>(x[3u * j + 1u]), x[3u * j], bitcast<f32>(x[3u * j + 2u])));
        }
    }
    sh[lid] = b;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st >>= 1u) {
        if (lid < st) {
            sh[lid] = merge(sh[lid], sh[lid + st]);
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let r = sh[0];
        if (PASS == 0u) {
            out[3u * wid.x] = r.i;
            out[3u * wid.x + 1u] = bitcast<u32>(r.v);
            out[3u * wid.x + 2u] = bitcast<u32>(r.s);
        } else {
            out[0] = r.i;
            out[1] = bitcast<u32>(r.v);
            out[2] = bitcast<u32>(r.v + log(r.s));
        }
    }
}
