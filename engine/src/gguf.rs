//! Validated GGUF reader (versions 2 and 3, little-endian).
//!
//! A GGUF file is a header (magic, version, tensor count, metadata count), the metadata
//! key/value pairs, the tensor infos (name, dims, ggml type, offset), then the data section,
//! which starts at the end of the infos rounded up to `general.alignment` (default 32). Tensor
//! offsets are relative to the data section.
//!
//! Model files come from the network, so every field is treated as hostile: each count, length,
//! dim, type, offset and the alignment is checked, with checked arithmetic, against the bytes
//! that remain *before* anything is allocated for it, and every failure is a [`GgufError`] that
//! names the field and the byte offset where it starts. llama.cpp had CVEs in exactly these
//! places, and candle's reader panics on alignment 0.
//!
//! Memory: no allocation is sized by a count the file claims beyond what the remaining bytes
//! could hold, so what parsing allocates is bounded by a constant times the file size (the worst
//! case is an array of one-byte values, each of which becomes a 32-byte [`Value`]). The weights
//! are never copied: [`Gguf`] keeps offsets, and [`Gguf::tensor_data`] borrows from the buffer,
//! which is a memory map natively and the one downloaded buffer in wasm ([`ModelBytes`]).

use std::collections::HashMap;

use crate::error::GgufError;
use crate::quant::GgmlType;

/// The four bytes every GGUF file starts with.
const MAGIC: &[u8; 4] = b"GGUF";
/// Alignment of the data section when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most four dimensions.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays deeper than this are refused, so that a crafted file cannot exhaust the
/// stack through recursion (real files use depth 1).
const MAX_ARRAY_DEPTH: u32 = 16;
/// The fewest bytes a tensor info can take: name length (8), n_dims (4), type (4), offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 24;
/// The fewest bytes a metadata pair can take: key length (8), value type (4), a one-byte value.
const MIN_KV_BYTES: u64 = 13;

// GGUF metadata value type ids.
const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

/// The fewest bytes a value of type `ty` takes in the file, or `None` for an unknown type.
/// An array count times this must fit in the remaining bytes before the array is allocated.
fn min_encoded_size(ty: u32) -> Option<u64> {
    Some(match ty {
        T_U8 | T_I8 | T_BOOL => 1,
        T_U16 | T_I16 => 2,
        T_U32 | T_I32 | T_F32 => 4,
        T_U64 | T_I64 | T_F64 => 8,
        T_STRING => 8,    // the length; the bytes may be empty
        T_ARRAY => 4 + 8, // element type and count; the array may be empty
        _ => return None,
    })
}

fn type_name(ty: u32) -> &'static str {
    match ty {
        T_U8 => "u8",
        T_I8 => "i8",
        T_U16 => "u16",
        T_I16 => "i16",
        T_U32 => "u32",
        T_I32 => "i32",
        T_F32 => "f32",
        T_BOOL => "bool",
        T_STRING => "string",
        T_ARRAY => "array",
        T_U64 => "u64",
        T_I64 => "i64",
        T_F64 => "f64",
        _ => "unknown",
    }
}

/// A metadata value, as typed in the file.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// Any integer type holding a non-negative value: writers disagree on which integer type a
    /// key uses (e.g. token ids as u32 or i32), so readers should not care.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// As [`Value::as_u64`], if the value fits in a u32.
    pub fn as_u32(&self) -> Option<u32> {
        self.as_u64().and_then(|v| u32::try_from(v).ok())
    }

    /// F32, or F64 narrowed to f32.
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(v) => Some(v),
            _ => None,
        }
    }
}

/// One tensor's description; its bytes are `offset..offset + size` of the file.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// GGML order: `dims[0]` is the contiguous (row) length, so a matrix of `rows` rows of
    /// `cols` values is `[cols, rows]`.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Absolute byte offset of the data in the file (data section start + relative offset).
    pub offset: u64,
    /// Bytes of data: `ty.bytes_for(n_elements)`.
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements. [`Gguf::parse`] has checked that it fits; for a hand-made info whose
    /// product overflows it saturates at `u64::MAX`.
    pub fn n_elements(&self) -> u64 {
        self.dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .unwrap_or(u64::MAX)
    }

    /// Rows `start..start + len` of this tensor (elements, for a vector) as a tensor of their
    /// own, named `name`: a fused weight seen as its parts (GPTBigCode's `attn_qkv` as q, k and
    /// v). Rows are contiguous whole blocks, so the part's bytes are a sub-range of the whole's.
    pub fn rows(&self, name: String, start: u64, len: u64) -> Result<TensorInfo, GgufError> {
        let err = |reason: String| GgufError { field: format!("tensors[{:?}]", self.name), offset: self.offset, reason };
        let (row_len, rows) = match self.dims[..] {
            [n] => (1, n),
            [cols, rows] => (cols, rows),
            _ => return Err(err(format!("a {}-d tensor has no rows to split", self.dims.len()))),
        };
        if len == 0 || start.checked_add(len).is_none_or(|end| end > rows) {
            return Err(err(format!("rows {start}..+{len} of {rows}")));
        }
        let bytes = |n: u64| n.checked_mul(row_len).and_then(|e| self.ty.bytes_for(e)).ok_or_else(|| err(format!("{n} rows of {row_len} are not whole {} blocks", self.ty.name())));
        let (skip, size) = (bytes(start)?, bytes(len)?);
        let dims = if self.dims.len() == 1 { vec![len] } else { vec![row_len, len] };
        Ok(TensorInfo { name, dims, ty: self.ty, offset: self.offset.checked_add(skip).ok_or_else(|| err("offset overflows".into()))?, size })
    }
}

/// A parsed and validated GGUF file: metadata in file order and tensor infos. It holds no
/// tensor data; [`Gguf::tensor_data`] borrows that from the file's bytes.
#[derive(Debug, Clone)]
pub struct Gguf {
    pub version: u32,
    /// The data section's alignment: a power of two, 32 unless `general.alignment` says otherwise.
    pub alignment: u64,
    /// Absolute byte offset where the data section starts.
    pub data_offset: u64,
    /// In file order.
    pub tensors: Vec<TensorInfo>,
    metadata: Vec<(String, Value)>,
    metadata_index: HashMap<String, usize>,
    tensor_index: HashMap<String, usize>,
}

impl Gguf {
    /// Parses and validates `bytes`, the whole file. Nothing here can panic, read out of bounds
    /// or allocate more than the remaining bytes can justify, whatever `bytes` holds.
    pub fn parse(bytes: &[u8]) -> Result<Gguf, GgufError> {
        Parser {
            r: Reader { bytes, pos: 0 },
        }
        .parse()
    }

    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let &i = self.metadata_index.get(key)?;
        self.metadata.get(i).map(|(_, v)| v)
    }

    /// All metadata pairs, in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// `general.architecture`, e.g. `"llama"`: the prefix of the architecture's own keys.
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(Value::as_str)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        let &i = self.tensor_index.get(name)?;
        self.tensors.get(i)
    }

    /// The tensor's bytes. `bytes` must be the buffer `parse` validated; a shorter one (or an
    /// info from another file) gives an error instead of a panic.
    pub fn tensor_data<'a>(&self, bytes: &'a [u8], t: &TensorInfo) -> Result<&'a [u8], GgufError> {
        let out_of_bounds = || GgufError {
            field: format!("tensors[{:?}]", t.name),
            offset: t.offset,
            reason: format!(
                "data ({} bytes at byte {}) lies outside the {}-byte buffer",
                t.size,
                t.offset,
                bytes.len()
            ),
        };
        let start = usize::try_from(t.offset).map_err(|_| out_of_bounds())?;
        let size = usize::try_from(t.size).map_err(|_| out_of_bounds())?;
        let end = start.checked_add(size).ok_or_else(out_of_bounds)?;
        bytes.get(start..end).ok_or_else(out_of_bounds)
    }
}

/// A model file's bytes: memory-mapped natively, one owned buffer in wasm (where the download
/// is the only copy), so the weights are never held twice.
pub enum ModelBytes {
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for ModelBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            ModelBytes::Mapped(m) => m,
            ModelBytes::Owned(v) => v,
        }
    }
}

impl From<Vec<u8>> for ModelBytes {
    fn from(v: Vec<u8>) -> Self {
        ModelBytes::Owned(v)
    }
}

impl ModelBytes {
    /// Maps the file at `path` read-only. Errors name the path.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &std::path::Path) -> crate::Result<Self> {
        let with_path =
            |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let file = std::fs::File::open(path).map_err(with_path)?;
        let meta = file.metadata().map_err(with_path)?;
        if !meta.is_file() {
            return Err(with_path(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            ))
            .into());
        }
        if meta.len() == 0 {
            // Mapping zero bytes is an error on some systems; the parser reports the empty file.
            return Ok(ModelBytes::Owned(Vec::new()));
        }
        // SAFETY: the map is read-only and private to this process. Its contents may still
        // change if another process writes the file while it is mapped (a model file being
        // replaced in place); that is the documented caveat of every mmap-based loader, and
        // parsing re-checks every bound it relies on, so such a change cannot cause an
        // out-of-bounds read through this module.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(with_path)?;
        Ok(ModelBytes::Mapped(map))
    }

    /// Reads the file at `path` into one buffer (wasm has no mmap; under WASI this is how tests
    /// load the model, in the browser the bytes come from a fetch instead).
    #[cfg(target_arch = "wasm32")]
    pub fn open(path: &std::path::Path) -> crate::Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(ModelBytes::Owned(bytes))
    }
}

fn err(field: String, offset: usize, reason: impl Into<String>) -> GgufError {
    GgufError {
        field,
        offset: offset as u64,
        reason: reason.into(),
    }
}

/// How many `T`s to reserve for `count` claimed entries: no more than the remaining bytes could
/// hold if each `T` were one byte of the file, so a lying count cannot make a big allocation.
/// The vector still grows to `count` as real entries are read.
fn capacity_for<T>(count: u64, remaining: u64) -> usize {
    let per = std::mem::size_of::<T>().max(1) as u64;
    usize::try_from(count.min(remaining / per)).unwrap_or(0)
}

/// A field name built only when an error needs it.
type Field<'f> = &'f dyn Fn() -> String;

/// A cursor over the file; every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> u64 {
        self.bytes.len().saturating_sub(self.pos) as u64
    }

    fn take(&mut self, n: u64, field: Field) -> Result<&'a [u8], GgufError> {
        let remaining = self.remaining();
        let short = || {
            err(
                field(),
                self.pos,
                format!("needs {n} bytes, only {remaining} remain in the file"),
            )
        };
        if n > remaining {
            return Err(short());
        }
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .ok_or_else(short)?;
        let s = self.bytes.get(self.pos..end).ok_or_else(short)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, field: Field) -> Result<[u8; N], GgufError> {
        let at = self.pos;
        let s = self.take(N as u64, field)?;
        s.try_into().map_err(|_| err(field(), at, "short read"))
    }

    fn u8(&mut self, f: Field) -> Result<u8, GgufError> {
        Ok(u8::from_le_bytes(self.array(f)?))
    }
    fn i8(&mut self, f: Field) -> Result<i8, GgufError> {
        Ok(i8::from_le_bytes(self.array(f)?))
    }
    fn u16(&mut self, f: Field) -> Result<u16, GgufError> {
        Ok(u16::from_le_bytes(self.array(f)?))
    }
    fn i16(&mut self, f: Field) -> Result<i16, GgufError> {
        Ok(i16::from_le_bytes(self.array(f)?))
    }
    fn u32(&mut self, f: Field) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(f)?))
    }
    fn i32(&mut self, f: Field) -> Result<i32, GgufError> {
        Ok(i32::from_le_bytes(self.array(f)?))
    }
    fn u64(&mut self, f: Field) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(f)?))
    }
    fn i64(&mut self, f: Field) -> Result<i64, GgufError> {
        Ok(i64::from_le_bytes(self.array(f)?))
    }
    fn f32(&mut self, f: Field) -> Result<f32, GgufError> {
        Ok(f32::from_le_bytes(self.array(f)?))
    }
    fn f64(&mut self, f: Field) -> Result<f64, GgufError> {
        Ok(f64::from_le_bytes(self.array(f)?))
    }

    /// A u64 length, then that many bytes of UTF-8. The length is checked against the
    /// remaining bytes before the string is allocated.
    fn string(&mut self, field: Field) -> Result<String, GgufError> {
        let at = self.pos;
        let len = self.u64(&|| format!("{}.len", field()))?;
        let remaining = self.remaining();
        if len > remaining {
            return Err(err(
                field(),
                at,
                format!("string length {len} exceeds the {remaining} bytes that remain"),
            ));
        }
        let bytes = self.take(len, field)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(err(field(), at, format!("string is not UTF-8: {e}"))),
        }
    }
}

struct Parser<'a> {
    r: Reader<'a>,
}

impl Parser<'_> {
    fn parse(mut self) -> Result<Gguf, GgufError> {
        let file_len = self.r.bytes.len();
        if file_len == 0 {
            return Err(err("header.magic".into(), 0, "the file is empty"));
        }
        let magic = self.r.take(4, &|| "header.magic".into())?;
        if magic != MAGIC {
            return Err(err(
                "header.magic".into(),
                0,
                format!("expected \"GGUF\" (47 47 55 46), found {magic:02x?}: not a GGUF file"),
            ));
        }

        let version = self.r.u32(&|| "header.version".into())?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(err(
                    "header.version".into(),
                    4,
                    "GGUF v1 is not supported (v2 and v3 are); convert the file with a current llama.cpp",
                ))
            }
            v if matches!(v.swap_bytes(), 2 | 3) => {
                return Err(err(
                    "header.version".into(),
                    4,
                    "big-endian GGUF is not supported",
                ))
            }
            v => {
                return Err(err(
                    "header.version".into(),
                    4,
                    format!("unknown version {v} (v2 and v3 are supported)"),
                ))
            }
        }

        let tensor_count_at = self.r.pos;
        let tensor_count = self.r.u64(&|| "header.tensor_count".into())?;
        let kv_count_at = self.r.pos;
        let kv_count = self.r.u64(&|| "header.metadata_kv_count".into())?;

        // Both counts against what is left: each entry needs a minimum number of bytes.
        let remaining = self.r.remaining();
        let tensor_bytes = tensor_count
            .checked_mul(MIN_TENSOR_INFO_BYTES)
            .filter(|&b| b <= remaining)
            .ok_or_else(|| {
                err(
                    "header.tensor_count".into(),
                    tensor_count_at,
                    format!(
                        "{tensor_count} tensors need at least {MIN_TENSOR_INFO_BYTES} bytes each, \
                         only {remaining} bytes remain"
                    ),
                )
            })?;
        let after_tensors = remaining - tensor_bytes;
        kv_count
            .checked_mul(MIN_KV_BYTES)
            .filter(|&b| b <= after_tensors)
            .ok_or_else(|| {
                err(
                    "header.metadata_kv_count".into(),
                    kv_count_at,
                    format!(
                        "{kv_count} metadata pairs need at least {MIN_KV_BYTES} bytes each, \
                         only {after_tensors} bytes remain after the tensor infos' minimum"
                    ),
                )
            })?;

        let (metadata, metadata_index, alignment) = self.metadata(kv_count)?;
        let (mut tensors, tensor_index, offset_fields) =
            self.tensor_infos(tensor_count, alignment)?;

        let header_end = self.r.pos as u64;
        let data_offset = header_end
            .checked_next_multiple_of(alignment)
            .ok_or_else(|| err("data_offset".into(), self.r.pos, "overflows u64"))?;

        // Relative offsets become absolute; each tensor's data must lie inside the file.
        for (i, (t, &at)) in tensors.iter_mut().zip(&offset_fields).enumerate() {
            let field = || format!("tensor_infos[{i}].offset");
            let start = data_offset.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(t.size));
            match (start, end) {
                (Some(start), Some(end)) if end <= file_len as u64 => t.offset = start,
                _ => {
                    return Err(err(
                        field(),
                        at,
                        format!(
                            "data of tensor {:?} ({} bytes at data offset {} + {}) runs past the \
                             end of the {file_len}-byte file",
                            t.name, t.size, data_offset, t.offset
                        ),
                    ))
                }
            }
        }

        // No two tensors may share bytes: sort by start (ties by index, so the error names the
        // later info), compare neighbours.
        let mut order: Vec<usize> = (0..tensors.len()).collect();
        order.sort_unstable_by_key(|&i| (tensors.get(i).map_or(0, |t| t.offset), i));
        for pair in order.windows(2) {
            let &[a, b] = pair else { continue };
            let (Some(ta), Some(tb), Some(&b_at)) =
                (tensors.get(a), tensors.get(b), offset_fields.get(b))
            else {
                continue;
            };
            // `ta.offset + ta.size` was checked above to fit in the file.
            let a_end = ta.offset.saturating_add(ta.size);
            if a_end > tb.offset {
                return Err(err(
                    format!("tensor_infos[{b}].offset"),
                    b_at,
                    format!(
                        "data of tensor {:?} (bytes {}..{}) overlaps tensor {:?} (bytes {}..{})",
                        tb.name,
                        tb.offset,
                        tb.offset.saturating_add(tb.size),
                        ta.name,
                        ta.offset,
                        a_end
                    ),
                ));
            }
        }

        Ok(Gguf {
            version,
            alignment,
            data_offset,
            tensors,
            metadata,
            metadata_index,
            tensor_index,
        })
    }

    /// Reads `count` key/value pairs. Returns them, a key index, and the data alignment.
    #[allow(clippy::type_complexity)]
    fn metadata(
        &mut self,
        count: u64,
    ) -> Result<(Vec<(String, Value)>, HashMap<String, usize>, u64), GgufError> {
        let remaining = self.r.remaining();
        let mut metadata: Vec<(String, Value)> =
            Vec::with_capacity(capacity_for::<(String, Value)>(count, remaining));
        // Grows only with entries actually read (a claimed count does not size it).
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut alignment = DEFAULT_ALIGNMENT;

        for i in 0..count {
            let key_at = self.r.pos;
            let key = self.r.string(&|| format!("metadata[{i}].key"))?;
            if index.contains_key(&key) {
                return Err(err(
                    format!("metadata[{i}].key"),
                    key_at,
                    format!("duplicate key {key:?}"),
                ));
            }
            let field = || format!("metadata[{key:?}]");
            let type_at = self.r.pos;
            let ty = self.r.u32(&|| format!("{}.type", field()))?;
            if min_encoded_size(ty).is_none() {
                return Err(err(
                    format!("{}.type", field()),
                    type_at,
                    format!("unknown value type {ty}"),
                ));
            }
            let value_at = self.r.pos;
            let value = read_value(&mut self.r, ty, 0, &field)?;

            if key == "general.alignment" {
                alignment = match value {
                    Value::U32(a) if a.is_power_of_two() => a.into(),
                    Value::U32(a) => {
                        return Err(err(
                            field(),
                            value_at,
                            format!("alignment {a} is not a non-zero power of two"),
                        ))
                    }
                    _ => {
                        return Err(err(
                            field(),
                            type_at,
                            format!("must be a u32, found {}", type_name(ty)),
                        ))
                    }
                };
            }
            let n = metadata.len();
            index.insert(key.clone(), n);
            metadata.push((key, value));
        }
        Ok((metadata, index, alignment))
    }

    /// Reads `count` tensor infos with relative offsets. Returns them, a name index, and the
    /// byte offset of each info's `offset` field (for errors found later).
    #[allow(clippy::type_complexity)]
    fn tensor_infos(
        &mut self,
        count: u64,
        alignment: u64,
    ) -> Result<(Vec<TensorInfo>, HashMap<String, usize>, Vec<usize>), GgufError> {
        let remaining = self.r.remaining();
        let mut tensors: Vec<TensorInfo> =
            Vec::with_capacity(capacity_for::<TensorInfo>(count, remaining));
        // Grows only with entries actually read (a claimed count does not size it).
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut offset_fields: Vec<usize> =
            Vec::with_capacity(capacity_for::<usize>(count, remaining));

        for i in 0..count {
            let name_at = self.r.pos;
            let name = self.r.string(&|| format!("tensor_infos[{i}].name"))?;
            if index.contains_key(&name) {
                return Err(err(
                    format!("tensor_infos[{i}].name"),
                    name_at,
                    format!("duplicate tensor name {name:?}"),
                ));
            }

            let n_dims_at = self.r.pos;
            let n_dims = self.r.u32(&|| format!("tensor_infos[{i}].n_dims"))?;
            if n_dims > MAX_DIMS {
                return Err(err(
                    format!("tensor_infos[{i}].n_dims"),
                    n_dims_at,
                    format!("tensor {name:?} has {n_dims} dims, at most {MAX_DIMS} are allowed"),
                ));
            }
            // n_dims <= 4: this allocation is tiny whatever the file says.
            let mut dims = Vec::with_capacity(n_dims as usize);
            let mut n_elements: u64 = 1;
            for j in 0..n_dims {
                let dim_at = self.r.pos;
                let field = || format!("tensor_infos[{i}].dims[{j}]");
                let d = self.r.u64(&field)?;
                if d == 0 {
                    return Err(err(
                        field(),
                        dim_at,
                        format!("tensor {name:?} has a zero dim"),
                    ));
                }
                // ggml stores dims as i64: the element count must fit there too.
                n_elements = n_elements
                    .checked_mul(d)
                    .filter(|&n| i64::try_from(n).is_ok())
                    .ok_or_else(|| {
                        err(
                            field(),
                            dim_at,
                            format!(
                                "tensor {name:?}: dim {d} makes the element count overflow i64"
                            ),
                        )
                    })?;
                dims.push(d);
            }

            let type_at = self.r.pos;
            let type_id = self.r.u32(&|| format!("tensor_infos[{i}].type"))?;
            let ty = GgmlType::from_id(type_id).ok_or_else(|| {
                err(
                    format!("tensor_infos[{i}].type"),
                    type_at,
                    format!("tensor {name:?} has unknown ggml type {type_id}"),
                )
            })?;
            // Rows are whole blocks: dims[0] (1 for a scalar) must be a multiple of the block size.
            let row = dims.first().copied().unwrap_or(1);
            let block = ty.block_size() as u64;
            if row % block != 0 {
                return Err(err(
                    format!("tensor_infos[{i}].dims[0]"),
                    n_dims_at.saturating_add(4),
                    format!(
                        "tensor {name:?}: row length {row} is not a multiple of {}'s block size {block}",
                        ty.name()
                    ),
                ));
            }
            let size = ty.bytes_for(n_elements).ok_or_else(|| {
                err(
                    format!("tensor_infos[{i}].dims"),
                    n_dims_at,
                    format!(
                        "tensor {name:?}: {n_elements} {} elements overflow u64 bytes",
                        ty.name()
                    ),
                )
            })?;

            let offset_at = self.r.pos;
            let offset = self.r.u64(&|| format!("tensor_infos[{i}].offset"))?;
            if offset % alignment != 0 {
                return Err(err(
                    format!("tensor_infos[{i}].offset"),
                    offset_at,
                    format!(
                        "tensor {name:?}: offset {offset} is not a multiple of the alignment {alignment}"
                    ),
                ));
            }

            index.insert(name.clone(), tensors.len());
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
                size,
            });
            offset_fields.push(offset_at);
        }
        Ok((tensors, index, offset_fields))
    }
}

/// Reads one value of type `ty` (already known to be valid at depth 0). `depth` counts the
/// arrays around it.
fn read_value(r: &mut Reader, ty: u32, depth: u32, field: Field) -> Result<Value, GgufError> {
    let at = r.pos;
    Ok(match ty {
        T_U8 => Value::U8(r.u8(field)?),
        T_I8 => Value::I8(r.i8(field)?),
        T_U16 => Value::U16(r.u16(field)?),
        T_I16 => Value::I16(r.i16(field)?),
        T_U32 => Value::U32(r.u32(field)?),
        T_I32 => Value::I32(r.i32(field)?),
        T_U64 => Value::U64(r.u64(field)?),
        T_I64 => Value::I64(r.i64(field)?),
        T_F32 => Value::F32(r.f32(field)?),
        T_F64 => Value::F64(r.f64(field)?),
        T_BOOL => match r.u8(field)? {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            b => {
                return Err(err(
                    field(),
                    at,
                    format!("bool byte is {b}, must be 0 or 1"),
                ))
            }
        },
        T_STRING => Value::String(r.string(field)?),
        T_ARRAY => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(err(
                    field(),
                    at,
                    format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"),
                ));
            }
            let elem_field = || format!("{}.element_type", field());
            let elem_ty = r.u32(&elem_field)?;
            let min = min_encoded_size(elem_ty)
                .ok_or_else(|| err(elem_field(), at, format!("unknown value type {elem_ty}")))?;
            let len_at = r.pos;
            let len_field = || format!("{}.len", field());
            let len = r.u64(&len_field)?;
            let remaining = r.remaining();
            if len.checked_mul(min).is_none_or(|need| need > remaining) {
                return Err(err(
                    len_field(),
                    len_at,
                    format!(
                        "array of {len} {} values needs at least {min} bytes each, only \
                         {remaining} bytes remain",
                        type_name(elem_ty)
                    ),
                ));
            }
            let mut values = Vec::with_capacity(capacity_for::<Value>(len, remaining));
            for k in 0..len {
                values.push(read_value(r, elem_ty, depth + 1, &|| {
                    format!("{}[{k}]", field())
                })?);
            }
            Value::Array(values)
        }
        _ => return Err(err(field(), at, format!("unknown value type {ty}"))),
    })
}
