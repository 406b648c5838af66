// group_sum.wgsl with subgroup shuffles, for adapters with subgroups. SG = min(32, the adapter's
// smallest subgroup size): lanes that differ only in their low log2(SG) bits share a subgroup
// (consecutive invocations of a 1-D workgroup fill subgroups in order), so the XOR shuffles
// below stay inside the group; with SG < 32 the 32 / SG partial sums meet in workgroup memory.
// With GLU, sh[lid] holds the sum afterwards for lane 0 of every group. Call from uniform
// control flow.
fn group_sum(v: vec4<f32>, lid: u32) -> vec4<f32> {
    var s = v;
    for (var o = 1u; o < SG; o <<= 1u) {
        s += subgroupShuffleXor(s, o);
    }
    if (SG < 32u) {
        sh[lid] = s;
        workgroupBarrier();
        if ((lid & 31u) == 0u) {
            for (var j = SG; j < 32u; j += SG) {
                s += sh[lid + j];
            }
        }
        workgroupBarrier();
    }
    if (GLU) {
        sh[lid] = s;
        workgroupBarrier();
    }
    return s;
}
