// Top-k selection on the GPU for sampling: the k (≤ 64) largest finite values of
// x[offset .. offset+len], most likely first (ties: the lower index first, in f32 total order, as
// sample::top_k_finite), with the sums sampling needs of the rest of the row, so a sampled token
// costs the host 16 + 8k bytes, not the row. A list (what each pass writes) is 4 + 2k words:
//   [max, Σ exp(v - max), Σ exp((v - max) · inv_t), finite count, (index, value) × k]
// (f32 bits; the sums over the finite values; an unused entry is (0xffffffff, NaN)).
// Two passes, chosen by MERGE (prepended by the launcher):
// - chunks (MERGE = false): workgroup g takes values g·L .. g·L + L into a tournament tree (a heap
//   of winners in workgroup memory), pops its k best and writes list g.
// - merge (MERGE = true): one workgroup merges the p.chunks ≤ L sorted lists the same way: leaf j is
//   the head of list j, refilled from that list when popped; the lists' sums are merged.
// The pops run on one invocation: each is a walk of log2(L) steps up the tree, no barrier.

struct Params {
    len: u32,
    offset: u32,
    k: u32,
    // Lists to merge (the merge pass).
    chunks: u32,
    inv_t: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
// The values (f32 bits), or the chunk pass's lists.
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

const WG: u32 = 256u;
// Leaves of the tree: values per chunk, and lists per merge.
const L: u32 = 1024u;
const NONE: u32 = 0xffffffffu;
const NAN_BITS: u32 = 0x7fc00000u;

// Leaf j's key: its value's bits mapped so that u32 order is f32 total order; 0 = empty (not
// finite, popped, or a list run out): no finite value maps to 0.
var<workgroup> key: array<u32, 1024>;
// Internal node n (1 ≤ n < L) holds the leaf that wins its subtree; children 2n and 2n + 1.
// Before the tree is built it holds the sums' reduction (see `reduce`): 12 KiB of workgroup
// memory in all, within WebGPU's 16 KiB.
var<workgroup> tree: array<u32, 1024>;
// The merge pass: the position of leaf j's head within list j.
var<workgroup> head: array<u32, 1024>;

fn key_of(bits: u32) -> u32 {
    if ((bits & 0x7f800000u) == 0x7f800000u) {
        return 0u;
    }
    return select(bits | 0x80000000u, ~bits, (bits & 0x80000000u) != 0u);
}

fn bits_of(k: u32) -> u32 {
    return select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u);
}

// The better of two leaves: the larger key, then the lower leaf (a lower index, or a list of
// lower indices: chunks are contiguous and in order).
fn better(a: u32, b: u32) -> u32 {
    if (key[b] > key[a] || (key[b] == key[a] && b < a)) {
        return b;
    }
    return a;
}

fn winner(c: u32) -> u32 {
    if (c >= L) {
        return c - L;
    }
    return tree[c];
}

fn list_words() -> u32 {
    return 4u + 2u * p.k;
}

// Merges the running sums (m, s, t) with (m2, s2, t2); s = 0 means nothing seen.
fn merge_m(m: f32, s: f32, m2: f32, s2: f32) -> f32 {
    if (s == 0.0) {
        return m2;
    }
    if (s2 == 0.0) {
        return m;
    }
    return max(m, m2);
}

fn rescale(s: f32, m: f32, to: f32, scale: f32) -> f32 {
    if (s == 0.0) {
        return 0.0;
    }
    return s * exp((m - to) * scale);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let g = wg.x;
    let lw = list_words();
    // Leaves and this invocation's share of the sums.
    var m = 0.0;
    var s = 0.0;
    var t = 0.0;
    var n = 0u;
    for (var j = lid; j < L; j += WG) {
        var kj = 0u;
        if (MERGE) {
            head[j] = 0u;
            if (j < p.chunks) {
                let b = j * lw;
                kj = key_of(src[b + 5u]);
                let m2 = bitcast<f32>(src[b]);
                let s2 = bitcast<f32>(src[b + 1u]);
                let t2 = bitcast<f32>(src[b + 2u]);
                let to = merge_m(m, s, m2, s2);
                s = rescale(s, m, to, 1.0) + rescale(s2, m2, to, 1.0);
                t = rescale(t, m, to, p.inv_t) + rescale(t2, m2, to, p.inv_t);
                m = to;
                n += src[b + 3u];
            }
        } else {
            let i = g * L + j;
            if (i < p.len) {
                let bits = src[p.offset + i];
                kj = key_of(bits);
                if (kj != 0u) {
                    let v = bitcast<f32>(bits);
                    let to = merge_m(m, s, v, 1.0);
                    s = rescale(s, m, to, 1.0) + exp(v - to);
                    t = rescale(t, m, to, p.inv_t) + exp((v - to) * p.inv_t);
                    m = to;
                    n += 1u;
                }
            }
        }
        key[j] = kj;
    }
    // The sums, reduced as argmax.wgsl reduces its own, in `tree` used as four arrays of WG:
    // running (max, Σ exp, Σ exp tempered, finite count) of each invocation, then of each pair.
    tree[lid] = bitcast<u32>(m);
    tree[WG + lid] = bitcast<u32>(s);
    tree[2u * WG + lid] = bitcast<u32>(t);
    tree[3u * WG + lid] = n;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
        if (lid < st) {
            let m1 = bitcast<f32>(tree[lid]);
            let s1 = bitcast<f32>(tree[WG + lid]);
            let m2 = bitcast<f32>(tree[lid + st]);
            let s2 = bitcast<f32>(tree[WG + lid + st]);
            let to = merge_m(m1, s1, m2, s2);
            let t12 = rescale(bitcast<f32>(tree[2u * WG + lid]), m1, to, p.inv_t) + rescale(bitcast<f32>(tree[2u * WG + lid + st]), m2, to, p.inv_t);
            tree[lid] = bitcast<u32>(to);
            tree[WG + lid] = bitcast<u32>(rescale(s1, m1, to, 1.0) + rescale(s2, m2, to, 1.0));
            tree[2u * WG + lid] = bitcast<u32>(t12);
            tree[3u * WG + lid] += tree[3u * WG + lid + st];
        }
        workgroupBarrier();
    }
    let sums = vec4<u32>(tree[0], tree[WG], tree[2u * WG], tree[3u * WG]);
    workgroupBarrier();
    // The tree, one level at a time from the leaves' parents up.
    for (var level = L / 2u; level > 0u; level >>= 1u) {
        for (var nd = level + lid; nd < 2u * level; nd += WG) {
            tree[nd] = better(winner(2u * nd), winner(2u * nd + 1u));
        }
        workgroupBarrier();
    }
    if (lid != 0u) {
        return;
    }
    let out = g * lw;
    dst[out] = sums.x;
    dst[out + 1u] = sums.y;
    dst[out + 2u] = sums.z;
    dst[out + 3u] = sums.w;
    for (var r = 0u; r < p.k; r++) {
        let w = tree[1];
        let o = out + 4u + 2u * r;
        if (key[w] == 0u) {
            dst[o] = NONE;
            dst[o + 1u] = NAN_BITS;
            continue;
        }
        dst[o + 1u] = bits_of(key[w]);
        // Pop the winner: its leaf becomes empty, or the next of its list.
        if (MERGE) {
            let b = w * lw + 4u + 2u * head[w];
            dst[o] = src[b];
            head[w] += 1u;
            key[w] = 0u;
            if (head[w] < p.k) {
                key[w] = key_of(src[b + 3u]);
            }
        } else {
            dst[o] = g * L + w;
            key[w] = 0u;
        }
        for (var nd = (w + L) >> 1u; nd > 0u; nd >>= 1u) {
            tree[nd] = better(winner(2u * nd), winner(2u * nd + 1u));
        }
    }
}
