//! Validated safetensors reader over one `&[u8]` (a memory-mapped file).
//!
//! A safetensors file is an 8-byte little-endian header length `n`, `n` bytes of JSON (an object:
//! tensor name → `{dtype, shape, data_offsets: [begin, end]}`, plus an optional `__metadata__`
//! object of strings), then the data, to which the offsets are relative. Like the GGUF reader,
//! everything is checked before it is trusted: the header length against the file, every shape's
//! element count (checked arithmetic) times the dtype's size against its offsets, every range
//! against the data, and no two tensors may share bytes. The JSON is parsed from at most `n`
//! bytes that are in the file, so what parsing allocates is bounded by the file's size; the data
//! is never copied here.

use std::collections::HashMap;

use crate::error::SafetensorsError;

/// Header lengths above this are refused (the reference implementation's limit): a real header
/// is a few hundred bytes per tensor.
const MAX_HEADER: u64 = 100 << 20;

/// The element types safetensors defines. nib computes with the float ones; the others parse
/// (their sizes are checked) so that a checkpoint carrying, say, an integer buffer nib does not
/// use still loads, and one that needs it gets a clear error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
    F64,
    I64,
    U64,
    I32,
    U32,
    I16,
    U16,
    I8,
    U8,
    Bool,
    F8E4M3,
    F8E5M2,
}

impl Dtype {
    fn parse(s: &str) -> Option<Dtype> {
        Some(match s {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "F64" => Dtype::F64,
            "I64" => Dtype::I64,
            "U64" => Dtype::U64,
            "I32" => Dtype::I32,
            "U32" => Dtype::U32,
            "I16" => Dtype::I16,
            "U16" => Dtype::U16,
            "I8" => Dtype::I8,
            "U8" => Dtype::U8,
            "BOOL" => Dtype::Bool,
            "F8_E4M3" => Dtype::F8E4M3,
            "F8_E5M2" => Dtype::F8E5M2,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
            Dtype::F32 | Dtype::I32 | Dtype::U32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 | Dtype::U16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool | Dtype::F8E4M3 | Dtype::F8E5M2 => 1,
        }
    }
}

/// One tensor: `shape` in row-major order (the last dim is contiguous), its bytes at
/// `start..end` of the file.
#[derive(Debug, Clone)]
pub struct TensorView {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    /// Absolute byte range in the file.
    pub start: usize,
    pub end: usize,
}

impl TensorView {
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// A parsed and validated safetensors header; [`Safetensors::data`] borrows tensor bytes.
#[derive(Debug, Clone)]
pub struct Safetensors {
    /// Sorted by start offset.
    pub tensors: Vec<TensorView>,
    index: HashMap<String, usize>,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> SafetensorsError {
    SafetensorsError { field: field.into(), reason: reason.into() }
}

impl Safetensors {
    /// Parses and validates the header of `bytes`, the whole file. Never panics.
    pub fn parse(bytes: &[u8]) -> Result<Safetensors, SafetensorsError> {
        let len_bytes: [u8; 8] = bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| err("header.len", format!("the file has {} bytes, fewer than the 8 of the header length", bytes.len())))?;
        let n = u64::from_le_bytes(len_bytes);
        let after = bytes.len() as u64 - 8;
        if n > after || n > MAX_HEADER {
            return Err(err("header.len", format!("header length {n} exceeds the {after} bytes after it (or the {MAX_HEADER}-byte limit)")));
        }
        let data_start = 8 + n as usize; // n <= bytes.len() - 8
        let header = bytes.get(8..data_start).ok_or_else(|| err("header.len", "out of range"))?;
        let json: serde_json::Value = serde_json::from_slice(header).map_err(|e| err("header", format!("not JSON: {e}")))?;
        let entries = json.as_object().ok_or_else(|| err("header", "is not a JSON object"))?;
        let data_len = (bytes.len() - data_start) as u64;

        let mut tensors = Vec::with_capacity(entries.len());
        for (name, entry) in entries {
            if name == "__metadata__" {
                let ok = entry.as_object().is_some_and(|m| m.values().all(|v| v.is_string()));
                if !ok {
                    return Err(err("__metadata__", "must be an object of strings"));
                }
                continue;
            }
            let field = |f: &str| format!("{name:?}.{f}");
            let entry = entry.as_object().ok_or_else(|| err(format!("{name:?}"), "is not an object"))?;
            let dtype_str = entry.get("dtype").and_then(|v| v.as_str()).ok_or_else(|| err(field("dtype"), "missing or not a string"))?;
            let dtype = Dtype::parse(dtype_str).ok_or_else(|| err(field("dtype"), format!("unknown dtype {dtype_str:?}")))?;
            let shape: Vec<u64> = entry
                .get("shape")
                .and_then(|v| v.as_array())
                .ok_or_else(|| err(field("shape"), "missing or not an array"))?
                .iter()
                .map(|d| d.as_u64())
                .collect::<Option<_>>()
                .ok_or_else(|| err(field("shape"), "has an entry that is not a non-negative integer"))?;
            let offsets = entry
                .get("data_offsets")
                .and_then(|v| v.as_array())
                .filter(|a| a.len() == 2)
                .and_then(|a| Some((a.first()?.as_u64()?, a.get(1)?.as_u64()?)))
                .ok_or_else(|| err(field("data_offsets"), "missing or not two non-negative integers"))?;
            let (begin, end) = offsets;
            let size = shape
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .and_then(|n| n.checked_mul(dtype.size()))
                .ok_or_else(|| err(field("shape"), format!("{shape:?} of {dtype_str} overflows u64 bytes")))?;
            if begin > end || end > data_len {
                return Err(err(field("data_offsets"), format!("[{begin}, {end}] is not a range inside the {data_len} data bytes")));
            }
            if end - begin != size {
                return Err(err(
                    field("data_offsets"),
                    format!("[{begin}, {end}] holds {} bytes, but shape {shape:?} of {dtype_str} needs {size}", end - begin),
                ));
            }
            // Both fit: end <= data_len, and data_start + data_len is the file's length.
            tensors.push(TensorView { name: name.clone(), dtype, shape, start: data_start + begin as usize, end: data_start + end as usize });
        }
        tensors.sort_by_key(|t| (t.start, t.end));
        for pair in tensors.windows(2) {
            if let [a, b] = pair {
                if b.start < a.end {
                    return Err(err(format!("{:?}.data_offsets", b.name), format!("overlaps tensor {:?}", a.name)));
                }
            }
        }
        let index = tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Ok(Safetensors { tensors, index })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorView> {
        self.tensors.get(*self.index.get(name)?)
    }

    /// The tensor's bytes in `bytes`, the buffer `parse` validated (a shorter one is an error).
    pub fn data<'a>(&self, bytes: &'a [u8], t: &TensorView) -> Result<&'a [u8], SafetensorsError> {
        bytes.get(t.start..t.end).ok_or_else(|| err(format!("{:?}", t.name), "data lies outside the buffer"))
    }
}
