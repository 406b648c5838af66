// GELU with the tanh approximation, 0.5·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²))), for
// gelu.wgsl, glu.wgsl (GEGLU) and matvec's GEGLU input (ops.rs). tanh's argument is clamped to
// ±10, where tanh is ±1 in f32, so that no driver's tanh (exp-based on some) overflows to NaN.
fn gelu_tanh(v: vec4<f32>) -> vec4<f32> {
    let u = 0.7978846 * v * (vec4<f32>(1.0) + 0.044715 * v * v);
    return 0.5 * v * (vec4<f32>(1.0) + tanh(clamp(u, vec4<f32>(-10.0), vec4<f32>(10.0))));
}
