//! How a weight's rows sit in a GPU buffer. Most formats go as the file has them. Q4_0, Q4_1
//! and Q8_0 blocks (18, 20 and 34 bytes: most start off a 16-byte unit, half of Q4_0's and
//! Q8_0's off a word) go in groups of 8, each `[scales of the 8][quants of the 8]`: a group is
//! a whole number of 16-byte units (144, 160, 272 bytes), every block's quants start on one, and
//! a lane reads them with one aligned 16-byte load (matvec_q8.wgsl's wide variant) or aligned
//! words (quant.wgsl `quant_word`, `block_d`). A row's last group may be short: its scale slots
//! are all there, its quants only for its blocks. Rows are padded to 16 bytes, and keep their
//! block order, so kernels find block `bi` of a row by its index.

use crate::quant::GgmlType;

/// Blocks per group.
const GROUP: usize = 8;

/// Bytes of one block's scale (Q4_1: scale and minimum) in a group of `ty`, or `None` where
/// `ty`'s rows go as they are.
fn scale_bytes(ty: GgmlType) -> Option<usize> {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q8_0 => Some(2),
        GgmlType::Q4_1 => Some(4),
        _ => None,
    }
}

/// Bytes of one GPU row of `ty` whose file row has `file_row_bytes`.
pub fn row_bytes(ty: GgmlType, file_row_bytes: usize) -> usize {
    let Some(sb) = scale_bytes(ty) else { return file_row_bytes };
    let blk = ty.type_size();
    let (full, rest) = (file_row_bytes / blk / GROUP, file_row_bytes / blk % GROUP);
    let last = if rest == 0 { 0 } else { GROUP * sb + rest * (blk - sb) };
    (full * GROUP * blk + last).next_multiple_of(16)
}

/// Appends `rows` (whole file rows of `file_row_bytes`) to `out` in the GPU layout.
pub fn push_rows(ty: GgmlType, file_row_bytes: usize, rows: &[u8], out: &mut Vec<u8>) {
    let Some(sb) = scale_bytes(ty).filter(|_| file_row_bytes > 0) else {
        out.extend_from_slice(rows);
        return;
    };
    let blk = ty.type_size();
    for row in rows.chunks_exact(file_row_bytes) {
        let end = out.len() + row_bytes(ty, file_row_bytes);
        for group in row.chunks(GROUP * blk) {
            let scales = out.len() + GROUP * sb;
            for block in group.chunks_exact(blk) {
                out.extend_from_slice(&block[..sb]);
            }
            out.resize(scales, 0);
            for block in group.chunks_exact(blk) {
                out.extend_from_slice(&block[sb..]);
            }
        }
        out.resize(end, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_put_scales_first_and_pad_rows_to_16_bytes() {
        // One Q4_0 row of ten 18-byte blocks: scale bytes (i, 100 + i), quants all i.
        let block = |i: u8| [vec![i, 100 + i], vec![i; 16]].concat();
        let row: Vec<u8> = (1..=10).flat_map(block).collect();
        assert_eq!(row_bytes(GgmlType::Q4_0, row.len()), 192); // 144 + 16 + 2 · 16
        let mut out = Vec::new();
        push_rows(GgmlType::Q4_0, row.len(), &[row.clone(), row].concat(), &mut out);
        let scales = |r: std::ops::RangeInclusive<u8>| r.flat_map(|i| [i, 100 + i]).collect::<Vec<u8>>();
        let quants = |r: std::ops::RangeInclusive<u8>| r.flat_map(|i| [i; 16]).collect::<Vec<u8>>();
        let want = [scales(1..=8), quants(1..=8), scales(9..=10), vec![0; 12], quants(9..=10)].concat();
        assert_eq!(out.len(), 2 * 192);
        assert_eq!(&out[..192], &want[..]);
        assert_eq!(out[..192], out[192..]);
        // Q4_1's scale slots are 4 bytes; one block: 32 bytes of slots and 16 of quants.
        assert_eq!(row_bytes(GgmlType::Q4_1, 20), 48);
        assert_eq!(row_bytes(GgmlType::Q8_0, 34 * 18), 2 * 272 + 16 + 2 * 32);
        // Other formats stay as they are.
        let mut same = Vec::new();
        push_rows(GgmlType::Q5_0, 22, &[7; 44], &mut same);
        assert_eq!(same, vec![7; 44]);
        assert_eq!(row_bytes(GgmlType::Q6K, 210), 210);
    }
}
