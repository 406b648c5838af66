//! How a weight's rows sit in a GPU buffer. Most formats go as the file has them. Q4_0 and Q8_0
//! blocks (18 and 34 bytes: every other one starts 2 bytes off a word, and reading its quants
//! took two loads and shifts) go in pairs, `[d₀ d₁][quants₀][quants₁]`, so that every quant
//! word and a pair's two scales are one aligned load (quant.wgsl `quant_word`, `block_d`); a
//! row with an odd number of blocks ends with a zero block that no kernel reads. Rows keep their
//! length (but for that block), so kernels find block `bi` of a row by its index.

use crate::quant::GgmlType;

/// Whether `ty`'s blocks go to the GPU in pairs.
fn paired(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q8_0)
}

/// Bytes of one GPU row of `ty` whose file row has `file_row_bytes`.
pub fn row_bytes(ty: GgmlType, file_row_bytes: usize) -> usize {
    if !paired(ty) {
        return file_row_bytes;
    }
    let pair = 2 * ty.type_size();
    file_row_bytes.div_ceil(pair) * pair
}

/// Appends `rows` (whole file rows of `file_row_bytes`) to `out` in the GPU layout.
pub fn push_rows(ty: GgmlType, file_row_bytes: usize, rows: &[u8], out: &mut Vec<u8>) {
    if !paired(ty) || file_row_bytes == 0 {
        out.extend_from_slice(rows);
        return;
    }
    let blk = ty.type_size();
    for row in rows.chunks_exact(file_row_bytes) {
        for pair in row.chunks(2 * blk) {
            let (a, b) = pair.split_at(blk.min(pair.len()));
            // Scales first (a missing second block's is 0), then the quants of each.
            out.extend_from_slice(&a[..2]);
            out.extend_from_slice(b.get(..2).unwrap_or(&[0, 0]));
            out.extend_from_slice(&a[2..]);
            match b.get(2..) {
                Some(q) => out.extend_from_slice(q),
                None => out.resize(out.len() + blk - 2, 0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_pairs_put_scales_first_and_pad_an_odd_row() {
        // One row of three 18-byte blocks: scale bytes (10 + i, 20 + i), quants all i.
        let block = |i: u8| [vec![10 + i, 20 + i], vec![i; 16]].concat();
        let row: Vec<u8> = (1..=3).flat_map(block).collect();
        assert_eq!(row_bytes(GgmlType::Q4_0, row.len()), 72);
        let mut out = Vec::new();
        push_rows(GgmlType::Q4_0, row.len(), &row, &mut out);
        let want: Vec<u8> = [vec![11, 21, 12, 22], vec![1; 16], vec![2; 16], vec![13, 23, 0, 0], vec![3; 16], vec![0; 16]].concat();
        assert_eq!(out, want);
        // Q4_1 stays as it is.
        let mut same = Vec::new();
        push_rows(GgmlType::Q4_1, 20, &[7; 40], &mut same);
        assert_eq!(same, vec![7; 40]);
    }
}
