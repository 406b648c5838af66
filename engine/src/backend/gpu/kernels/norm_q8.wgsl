// add_rms_norm.wgsl's output row also in 8 bits (quantize_q8.wgsl, prepended), for
// matvec_q8.wgsl to take as given: the norm before the output projection writes it, so the
// product neither quantizes x in each workgroup nor waits on a dispatch that does. Block b of
// the row by invocation b, once the row is written (`out`, `p.cols`: the norm's; cols a multiple
// of 32, at most 8192). The `q8` binding's declaration comes prepended.

fn write_q8(row: u32, lid: u32) {
    storageBarrier();
    let nb = p.cols / 32u;
    if (lid < nb) {
        let at = row * p.cols + 32u * lid;
        var v: array<vec4<f32>, 8>;
        for (var i = 0u; i < 8u; i++) {
            let j = at + 4u * i;
            v[i] = vec4<f32>(out[j], out[j + 1u], out[j + 2u], out[j + 3u]);
        }
        let q = q8_block(v);
        for (var i = 0u; i < 10u; i++) {
            q8[(row * nb + lid) * 10u + i] = q[i];
        }
    }
}
