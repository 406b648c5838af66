// The sum over a 256-invocation workgroup of every invocation's `s`, for all of them: a tree of
// halving steps in workgroup memory. For the row kernels (rms_norm.wgsl, add_rms_norm.wgsl,
// layer_norm.wgsl), prepended. Call from uniform control flow: it has barriers.

var<workgroup> sh: array<f32, 256>;

fn row_sum(lid: u32, s: f32) -> f32 {
    sh[lid] = s;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st >>= 1u) {
        if (lid < st) {
            sh[lid] += sh[lid + st];
        }
        workgroupBarrier();
    }
    let total = sh[0];
    workgroupBarrier();
    return total;
}
