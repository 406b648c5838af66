//! Writes a GGUF v3 file into memory: how a Hugging Face checkpoint ([`crate::hf`]) becomes the
//! one format every architecture, backend and the tokenizer already read.
//!
//! The header (metadata, tensor infos) is written first from the tensors' names, dims and types,
//! which fix every size and offset; the buffer is then reserved once for the whole file and each
//! tensor's data appended in order, so a model is never held twice while it is written.

use crate::error::{Error, Result};
use crate::gguf::Value;
use crate::quant::GgmlType;

/// The data section's alignment (GGUF's default, so no `general.alignment` key is written).
const ALIGNMENT: usize = 32;

/// A tensor to be written: GGML dims order (`dims[0]` is the row length).
pub struct TensorSpec {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
}

impl TensorSpec {
    fn size(&self) -> Result<usize> {
        let n = self.dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        n.and_then(|n| self.ty.bytes_for(n))
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| Error::Model(format!("tensor {}: dims {:?} are not whole {} blocks", self.name, self.dims, self.ty.name())))
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// GGUF's value type id for `v`.
fn type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

/// The value's bytes without its type id. An array takes its element type from its first
/// element (an empty array is written as an array of u8); mixed arrays are refused.
fn put_value(out: &mut Vec<u8>, v: &Value) -> Result<()> {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_str(out, s),
        Value::Array(items) => {
            let ty = items.first().map_or(0, type_id);
            if items.iter().any(|x| type_id(x) != ty) {
                return Err(Error::InvalidArgument("GGUF arrays hold one value type".into()));
            }
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for x in items {
                put_value(out, x)?;
            }
        }
    }
    Ok(())
}

/// Writes a GGUF v3 file: `metadata` in order, then `tensors`, whose data `fill(i, out)` appends
/// for tensor `i` (exactly its size, which is checked).
pub fn write(metadata: &[(String, Value)], tensors: &[TensorSpec], mut fill: impl FnMut(usize, &mut Vec<u8>) -> Result<()>) -> Result<Vec<u8>> {
    let sizes = tensors.iter().map(TensorSpec::size).collect::<Result<Vec<_>>>()?;
    let mut header = Vec::new();
    header.extend_from_slice(b"GGUF");
    header.extend_from_slice(&3u32.to_le_bytes());
    header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_str(&mut header, k);
        header.extend_from_slice(&type_id(v).to_le_bytes());
        put_value(&mut header, v)?;
    }
    let mut offset = 0usize;
    let mut offsets = Vec::with_capacity(tensors.len());
    for (t, &size) in tensors.iter().zip(&sizes) {
        put_str(&mut header, &t.name);
        header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            header.extend_from_slice(&d.to_le_bytes());
        }
        header.extend_from_slice(&t.ty.id().to_le_bytes());
        header.extend_from_slice(&(offset as u64).to_le_bytes());
        offsets.push(offset);
        offset = offset
            .checked_add(size)
            .and_then(|o| o.checked_next_multiple_of(ALIGNMENT))
            .ok_or_else(|| Error::Model("model too large for this platform".into()))?;
    }
    let data_start = header.len().next_multiple_of(ALIGNMENT);
    let total = data_start.checked_add(offset).ok_or_else(|| Error::Model("model too large for this platform".into()))?;
    let mut out = Vec::new();
    out.try_reserve_exact(total).map_err(|_| Error::Model(format!("cannot allocate {total} bytes for the model")))?;
    out.extend_from_slice(&header);
    drop(header);
    for (i, (&size, &at)) in sizes.iter().zip(&offsets).enumerate() {
        out.resize(data_start + at, 0);
        fill(i, &mut out)?;
        if out.len() != data_start + at + size {
            let name = tensors.get(i).map_or("?", |t| t.name.as_str());
            return Err(Error::Model(format!("tensor {name}: wrote {} bytes, expected {size}", out.len().saturating_sub(data_start + at))));
        }
    }
    out.resize(total, 0);
    Ok(out)
}
