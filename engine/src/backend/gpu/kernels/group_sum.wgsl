// The sum over the 32 lanes of the group of `lid` of each lane's `v`, for lane 0 of the group,
// in workgroup memory: a tree of 5 halving steps over `sh` (the kernel's array<vec4<f32>, 256>).
// Afterwards sh[lid] holds it for lane 0 of every group (GLU reads its partner's there).
// Call from uniform control flow: it has barriers.
fn group_sum(v: vec4<f32>, lid: u32) -> vec4<f32> {
    sh[lid] = v;
    workgroupBarrier();
    for (var st = 16u; st > 0u; st >>= 1u) {
        if ((lid & 31u) < st) {
            sh[lid] += sh[lid + st];
        }
        workgroupBarrier();
    }
    return sh[lid];
}
