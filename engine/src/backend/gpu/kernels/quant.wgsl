// Shared by the kernels that read weights: GGML blocks read in place from `w`, the weight's
// bytes as little-endian u32 words (padded by 4 bytes past the end). Every block of these
// formats starts at an even byte, so a u32 at a block-relative offset is either one word or the
// high half of one word joined to the low half of the next: no repacking on upload.
// The launcher prepends FMT (the ggml type id), BLK (values per block), BLK_BYTES.

const F32: u32 = 0u;
const F16: u32 = 1u;
const Q4_0: u32 = 2u;
const Q4_1: u32 = 3u;
const Q8_0: u32 = 8u;

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

// The 4 low and 4 high nibbles of the bytes of `q`, in byte order.
fn lo_nibbles(q: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(q, q >> 8u, q >> 16u, q >> 24u) & vec4<u32>(15u));
}
fn hi_nibbles(q: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(q >> 4u, q >> 12u, q >> 20u, q >> 28u) & vec4<u32>(15u));
}
// The 4 signed bytes of `q`, in byte order.
fn bytes_i8(q: u32) -> vec4<f32> {
    let v = bitcast<vec4<i32>>(vec4<u32>(q << 24u, q << 16u, q << 8u, q));
    return vec4<f32>(v >> vec4<u32>(24u));
}

// Value `c` of the row that starts at byte `row`.
fn deq(row: u32, c: u32) -> f32 {
    if (FMT == F32) {
        return bitcast<f32>(w[(row >> 2u) + c]);
    }
    if (FMT == F16) {
        return f16_at(row + 2u * c);
    }
    let b = row + (c / BLK) * BLK_BYTES;
    let j = c % BLK;
    if (FMT == Q8_0) {
        let q = i32(byte_at(b + 2u + j) << 24u) >> 24u;
        return f32(q) * f16_at(b);
    }
    let byte = byte_at(b + 4u - 2u * u32(FMT == Q4_0) + (j & 15u));
    let nib = select(byte & 15u, byte >> 4u, j >= 16u);
    if (FMT == Q4_0) {
        return f32(i32(nib) - 8) * f16_at(b);
    }
    // Q4_1
    return f32(nib) * f16_at(b) + f16_at(b + 2u);
}
