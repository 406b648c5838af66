//! nib's reference dequantization against gguf-py's, on the random blocks in
//! tests/fixtures/quant_blocks.json (made by tests/fixtures/make_quant_fixtures.py).
//! Both compute each value with the same f32 operations in the same order, so the check is
//! bit-for-bit (no tolerance).

use nib_engine::quant::{dequantize, GgmlType};

fn ty(name: &str) -> GgmlType {
    (0..64).filter_map(GgmlType::from_id).find(|t| t.name() == name).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn dequantize_matches_gguf_py_bit_for_bit() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/quant_blocks.json");
    let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    let mut seen = Vec::new();
    for case in cases {
        let t = ty(case["type"].as_str().unwrap());
        let data = hex(case["bytes_hex"].as_str().unwrap());
        let expected: Vec<u32> =
            case["expected_f32_bits"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let mut out = vec![f32::NAN; expected.len()];
        dequantize(t, &data, &mut out).unwrap();
        for (i, (o, e)) in out.iter().zip(&expected).enumerate() {
            assert_eq!(o.to_bits(), *e, "{} value {i}: nib {o:e}, gguf-py {:e}", t.name(), f32::from_bits(*e));
        }
        seen.push(t);
    }
    for t in [GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K, GgmlType::Q5_0, GgmlType::Q5_1] {
        assert!(seen.contains(&t), "fixture lacks {}", t.name());
    }
}

#[test]
fn dequantize_rejects_bad_lengths() {
    let block = [0u8; 20];
    let mut out = [0f32; 32];
    // Not a whole number of blocks.
    assert!(dequantize(GgmlType::Q4_1, &block[..19], &mut out).is_err());
    // Output too short and too long.
    assert!(dequantize(GgmlType::Q4_1, &block, &mut out[..31]).is_err());
    assert!(dequantize(GgmlType::Q4_1, &block, &mut [0f32; 33]).is_err());
    assert!(dequantize(GgmlType::F32, &block[..6], &mut out[..1]).is_err());
    assert!(dequantize(GgmlType::Q4_1, &block, &mut out).is_ok());
    assert!(dequantize(GgmlType::Q4_1, &[], &mut []).is_ok());
}

#[test]
fn dequantize_names_unsupported_types() {
    let err = dequantize(GgmlType::Q3K, &[0u8; 110], &mut [0f32; 256]).unwrap_err();
    assert!(err.to_string().contains("Q3_K"), "{err}");
}
