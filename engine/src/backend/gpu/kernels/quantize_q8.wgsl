// One 32-value block of x in 8 bits by ggml's Q8_0 / Q8_1 rule, as the CPU backend quantizes a
// matvec's x: d = amax / 127, q = round(x / d) (ties to even; 0 where amax = 0). Ten words: the
// 32 quants packed 4 to a word (value order), then d rounded to f16 and d · Σq rounded to f16
// (Q8_1's sum, for Q4_1's minimum), both as f32 bits. Prepended to matvec_q8.wgsl, which
// quantizes its x, and to the norm that hands matvec_q8 its output already quantized
// (norm_q8.wgsl).

fn to_f16(v: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(v, 0.0))).x;
}

fn q8_block(v: array<vec4<f32>, 8>) -> array<u32, 10> {
    var amax = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let a = abs(v[i]);
        amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
    }
    let d = amax / 127.0;
    let id = select(0.0, 127.0 / amax, amax != 0.0);
    var out: array<u32, 10>;
    var sum = 0;
    for (var i = 0u; i < 8u; i++) {
        let q = vec4<i32>(round(v[i] * id));
        sum += q.x + q.y + q.z + q.w;
        out[i] = pack4xI8(q);
    }
    out[8] = bitcast<u32>(to_f16(d));
    out[9] = bitcast<u32>(to_f16(d * f32(sum)));
    return out;
}
