// Shared by the kernels that read weights: GGML blocks from `w`, the weight's bytes as
// little-endian u32 words (padded by 4 bytes past the end). Most formats are read in place:
// every block (Q6_K's 210 bytes included) starts at an even byte, so a u32 at a block-relative
// offset is either one word or the high half of one word joined to the low half of the next.
// Q4_0, Q4_1 and Q8_0 are uploaded in groups of 8 blocks instead (layout.rs): [scales][quants],
// so that every quant word, and each block's quants as 16 bytes, is an aligned load.
// The launcher prepends FMT (the ggml type id), BLK (values per block), BLK_BYTES.

const F32: u32 = 0u;
const F16: u32 = 1u;
const Q4_0: u32 = 2u;
const Q4_1: u32 = 3u;
const Q5_0: u32 = 6u;
const Q5_1: u32 = 7u;
const Q8_0: u32 = 8u;
const Q4_K: u32 = 12u;
const Q5_K: u32 = 13u;
const Q6_K: u32 = 14u;
const IS_K: bool = FMT == Q4_K || FMT == Q5_K || FMT == Q6_K;
const IS_Q5: bool = FMT == Q5_0 || FMT == Q5_1;
// Bytes of a grouped block's scale (Q4_1: scale and minimum); the rest are its quants.
const SB: u32 = select(2u, 4u, FMT == Q4_1);

// The 4 bytes at byte offset `b` (even).
fn word_at(b: u32) -> u32 {
    let i = b >> 2u;
    if ((b & 2u) == 0u) {
        return w[i];
    }
    return (w[i] >> 16u) | (w[i + 1u] << 16u);
}

// The f16 at byte offset `b` (even), as f32.
fn f16_at(b: u32) -> f32 {
    let v = w[b >> 2u];
    return unpack2x16float(select(v & 0xffffu, v >> 16u, (b & 2u) != 0u)).x;
}

// The byte at offset `b`.
fn byte_at(b: u32) -> u32 {
    return (w[b >> 2u] >> ((b & 3u) * 8u)) & 0xffu;
}

// The functions below read block `bi` of the Q4_0/Q4_1/Q8_0 row that starts at byte `row` (on
// a 16-byte unit: these rows are whole units long).

// The word where the group of block `bi` starts: 8 blocks of BLK_BYTES, 2 BLK_BYTES words.
fn group_at(row: u32, bi: u32) -> u32 {
    return (row >> 2u) + (bi >> 3u) * (2u * BLK_BYTES);
}

// The block's scale d.
fn block_d(row: u32, bi: u32) -> f32 {
    if (FMT == Q4_1) {
        return block_dm(row, bi).x;
    }
    return unpack2x16float(w[group_at(row, bi) + ((bi & 7u) >> 1u)])[bi & 1u];
}

// Q4_1's scale and minimum.
fn block_dm(row: u32, bi: u32) -> vec2<f32> {
    return unpack2x16float(w[group_at(row, bi) + (bi & 7u)]);
}

// The word where the block's quants start (a multiple of 4: a 16-byte unit), after the
// group's 8 scale slots.
fn quants_at(row: u32, bi: u32) -> u32 {
    return group_at(row, bi) + 2u * SB + (bi & 7u) * ((BLK_BYTES - SB) / 4u);
}

// Word `i` of the block's quants.
fn quant_word(row: u32, bi: u32, i: u32) -> u32 {
    return w[quants_at(row, bi) + i];
}

// Small unsigned integers as f32 without a conversion instruction (an eighth of the FMA rate on
// some GPUs, and a matvec does 8 per weight word): OR'd into the mantissa of 2^23 they are
// 2^23 + n exactly, and one subtraction leaves n.
const MAGIC: u32 = 0x4b000000u;
const TWO23: f32 = 8388608.0;
fn small_u32s(v: vec4<u32>) -> vec4<f32> {
    return bitcast<vec4<f32>>(v | vec4<u32>(MAGIC)) - vec4<f32>(TWO23);
}

// The 4 low and 4 high nibbles of the bytes of `q`, in byte order.
fn lo_nibbles(q: u32) -> vec4<f32> {
    return small_u32s(vec4<u32>(q, q >> 8u, q >> 16u, q >> 24u) & vec4<u32>(15u));
}
fn hi_nibbles(q: u32) -> vec4<f32> {
    return small_u32s(vec4<u32>(q >> 4u, q >> 12u, q >> 20u, q >> 28u) & vec4<u32>(15u));
}
// The 4 signed bytes of `q`, in byte order: b ^ 0x80 is the signed value + 128.
fn bytes_i8(q: u32) -> vec4<f32> {
    let v = (vec4<u32>(q, q >> 8u, q >> 16u, q >> 24u) & vec4<u32>(255u)) ^ vec4<u32>(128u);
    return bitcast<vec4<f32>>(v | vec4<u32>(MAGIC)) - vec4<f32>(TWO23 + 128.0);
}

// The 4 unsigned bytes of `q`, in byte order.
fn bytes_u8(q: u32) -> vec4<f32> {
    return small_u32s(vec4<u32>(q, q >> 8u, q >> 16u, q >> 24u) & vec4<u32>(255u));
}

// Quarter `sub` of the Q5_0/Q5_1 block at byte `b`: quants (0..32) of values 4·sub .. 4·sub + 4
// (lo) and 16 + 4·sub .. (hi), nibbles joined to their fifth bit from the u32 qh; `d` and the
// offset `m` (Q5_0: -16·d) make a value `d · q + m`.
struct Q5Quarter {
    lo: vec4<f32>,
    hi: vec4<f32>,
    d: f32,
    m: f32,
}

fn q5_quarter(b: u32, sub: u32) -> Q5Quarter {
    let qh_at = b + select(2u, 4u, FMT == Q5_1);
    let qh = word_at(qh_at);
    let q = word_at(qh_at + 4u + 4u * sub);
    let bl = qh >> (4u * sub);
    let bh = qh >> (16u + 4u * sub);
    let lo = lo_nibbles(q) + 16.0 * vec4<f32>(vec4<u32>(bl, bl >> 1u, bl >> 2u, bl >> 3u) & vec4<u32>(1u));
    let hi = hi_nibbles(q) + 16.0 * vec4<f32>(vec4<u32>(bh, bh >> 1u, bh >> 2u, bh >> 3u) & vec4<u32>(1u));
    let d = f16_at(b);
    return Q5Quarter(lo, hi, d, select(-16.0 * d, f16_at(b + 2u), FMT == Q5_1));
}

// The 6-bit (scale, min) of sub-block `s` of the Q4_K/Q5_K super-block at byte `b` (ggml's
// get_scale_min_k4 over the 12 scale bytes at b + 4).
fn k_scale_min(b: u32, s: u32) -> vec2<f32> {
    if (s < 4u) {
        return vec2<f32>(f32(byte_at(b + 4u + s) & 63u), f32(byte_at(b + 8u + s) & 63u));
    }
    let x = byte_at(b + 8u + s);
    let sc = (x & 15u) | ((byte_at(b + s) >> 6u) << 4u);
    let mn = (x >> 4u) | ((byte_at(b + 4u + s) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(mn));
}

// Eight values of the K-quant super-block at byte `b`: values 8·sub .. 8·sub + 8 of its 32-value
// chunk `s`, each `scale · q - mn` with q in lo (the first four) and hi.
struct KEight {
    lo: vec4<f32>,
    hi: vec4<f32>,
    scale: f32,
    mn: f32,
}

fn k_eight(b: u32, s: u32, sub: u32) -> KEight {
    if (FMT == Q6_K) {
        // Half h, group g: low 4 bits from nibble g / 2 of ql, high 2 from qh >> 2g; q - 32.
        let h = s / 4u;
        let g = s % 4u;
        let ql = b + 64u * h + 32u * (g % 2u) + 8u * sub;
        let qh = b + 128u + 32u * h + 8u * sub;
        let nib = 4u * (g / 2u);
        let q0 = ((word_at(ql) >> nib) & 0x0f0f0f0fu) | (((word_at(qh) >> (2u * g)) & 0x03030303u) << 4u);
        let q1 = ((word_at(ql + 4u) >> nib) & 0x0f0f0f0fu) | (((word_at(qh + 4u) >> (2u * g)) & 0x03030303u) << 4u);
        let sc = f32(i32(byte_at(b + 192u + 2u * s + sub / 2u) << 24u) >> 24u);
        return KEight(bytes_u8(q0) - 32.0, bytes_u8(q1) - 32.0, f16_at(b + 208u) * sc, 0.0);
    }
    // Q4_K / Q5_K: nibble s % 2 of bytes 32·(s / 2) + l; Q5_K's fifth bit is bit s of qh[l].
    let sm = k_scale_min(b, s);
    let qs = b + select(16u, 48u, FMT == Q5_K) + 32u * (s / 2u) + 8u * sub;
    var q0 = (word_at(qs) >> (4u * (s % 2u))) & 0x0f0f0f0fu;
    var q1 = (word_at(qs + 4u) >> (4u * (s % 2u))) & 0x0f0f0f0fu;
    if (FMT == Q5_K) {
        q0 |= ((word_at(b + 16u + 8u * sub) >> s) & 0x01010101u) << 4u;
        q1 |= ((word_at(b + 20u + 8u * sub) >> s) & 0x01010101u) << 4u;
    }
    return KEight(bytes_u8(q0), bytes_u8(q1), f16_at(b) * sm.x, f16_at(b + 2u) * sm.y);
}

// Value `c` of the row that starts at byte `row`.
fn deq(row: u32, c: u32) -> f32 {
    if (FMT == F32) {
        return bitcast<f32>(w[(row >> 2u) + c]);
    }
    if (FMT == F16) {
        return f16_at(row + 2u * c);
    }
    let bi = c / BLK;
    let b = row + bi * BLK_BYTES;
    let j = c % BLK;
    if (IS_K) {
        let e = k_eight(b, j / 32u, (j % 32u) / 8u);
        let i = j % 8u;
        return e.scale * select(e.lo[i & 3u], e.hi[i & 3u], i >= 4u) - e.mn;
    }
    if (FMT == Q8_0) {
        let q = i32(quant_word(row, bi, j / 4u) << (24u - 8u * (j & 3u))) >> 24u;
        return f32(q) * block_d(row, bi);
    }
    if (IS_Q5) {
        let e = q5_quarter(b, (j % 16u) / 4u);
        return e.d * select(e.lo[j & 3u], e.hi[j & 3u], j >= 16u) + e.m;
    }
    let byte = (quant_word(row, bi, (j & 15u) / 4u) >> (8u * (j & 3u))) & 0xffu;
    let nib = select(byte & 15u, byte >> 4u, j >= 16u);
    if (FMT == Q4_0) {
        return f32(i32(nib) - 8) * block_d(row, bi);
    }
    // Q4_1
    let dm = block_dm(row, bi);
    return f32(nib) * dm.x + dm.y;
}
