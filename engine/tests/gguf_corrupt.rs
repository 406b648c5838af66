//! The GGUF reader against the real model and against a table of corrupted files.
//!
//! Every corruption starts from a small valid v3 file built here (metadata of every value type,
//! a nested array, three tensors of three block formats), so each case changes one field and
//! names the field the error must name. The whole binary runs under a counting allocator: no
//! single allocation made while parsing may exceed the size of the file the case started from,
//! which is what catches a reader that trusts a count before checking the bytes behind it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::path::PathBuf;

use nib_engine::gguf::{Gguf, ModelBytes, Value};
use nib_engine::quant::GgmlType;
use nib_engine::GgufError;

// ---------------------------------------------------------------------------------------------
// Allocation tracking: the largest single allocation (or reallocation) on this thread.

struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the allocator runs during thread teardown too.
    let _ = LARGEST.try_with(|c| {
        if size > c.get() {
            c.set(size)
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Parses `bytes`, returning the result and the largest single allocation made meanwhile.
fn parse_counting(bytes: &[u8]) -> (Result<Gguf, GgufError>, usize) {
    LARGEST.with(|c| c.set(0));
    let r = Gguf::parse(bytes);
    (r, LARGEST.with(|c| c.get()))
}

// ---------------------------------------------------------------------------------------------
// A writer for small v3 files that remembers where each field starts, so cases can patch it.

#[derive(Default)]
struct Writer {
    b: Vec<u8>,
    marks: HashMap<String, usize>,
}

impl Writer {
    fn mark(&mut self, name: impl Into<String>) {
        self.marks.insert(name.into(), self.b.len());
    }
    fn u32(&mut self, v: u32) {
        self.b.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.b.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.b.extend_from_slice(s.as_bytes());
    }
    /// A key, its value type, and (marked `<key>`) the value's raw bytes.
    fn kv(&mut self, key: &str, ty: u32, value: &[u8]) {
        self.mark(format!("{key}.key"));
        self.str(key);
        self.mark(format!("{key}.type"));
        self.u32(ty);
        self.mark(key);
        self.b.extend_from_slice(value);
    }
}

fn enc_str(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

/// `[[1, 2], [3]]` as i32, nested `depth` arrays deep (depth 2 is that value).
fn enc_nested(depth: u32) -> Vec<u8> {
    if depth <= 1 {
        let mut v = 5u32.to_le_bytes().to_vec(); // i32
        v.extend_from_slice(&2u64.to_le_bytes());
        v.extend_from_slice(&1i32.to_le_bytes());
        v.extend_from_slice(&2i32.to_le_bytes());
        return v;
    }
    let mut v = 9u32.to_le_bytes().to_vec(); // array of arrays
    v.extend_from_slice(&1u64.to_le_bytes());
    v.extend(enc_nested(depth - 1));
    v
}

const ALIGN: u64 = 64;

/// (name, dims, ggml type id, relative offset, bytes). The data is most of the file, as in real
/// models, so that the allocation limit (the file's size) is not dwarfed by the metadata.
const TENSORS: [(&str, &[u64], u32, u64, u64); 3] = [
    ("t.a", &[64, 16], 8, 0, 32 * 34),   // Q8_0: 32 blocks
    ("t.b", &[64], 0, 1088, 64 * 4),     // F32
    ("t.c", &[64, 8], 3, 1344, 16 * 20), // Q4_1: 16 blocks
];

struct Fixture {
    bytes: Vec<u8>,
    marks: HashMap<String, usize>,
    data_offset: usize,
}

impl Fixture {
    fn at(&self, mark: &str) -> usize {
        *self
            .marks
            .get(mark)
            .unwrap_or_else(|| panic!("no mark {mark}"))
    }
}

/// A valid v3 file; `nest` is the depth of `test.nested`.
fn fixture_with(nest: u32) -> Fixture {
    let mut w = Writer::default();
    w.mark("magic");
    w.b.extend_from_slice(b"GGUF");
    w.mark("version");
    w.u32(3);
    w.mark("tensor_count");
    w.u64(TENSORS.len() as u64);
    w.mark("kv_count");
    w.u64(15);

    w.kv("general.architecture", 8, &enc_str("llama"));
    w.kv("general.alignment", 4, &(ALIGN as u32).to_le_bytes());
    w.kv("test.u8", 0, &[7]);
    w.kv("test.i8", 1, &(-3i8).to_le_bytes());
    w.kv("test.u16", 2, &513u16.to_le_bytes());
    w.kv("test.i16", 3, &(-2i16).to_le_bytes());
    w.kv("test.u32", 4, &576u32.to_le_bytes());
    w.kv("test.i32", 5, &(-70000i32).to_le_bytes());
    w.kv("test.u64", 10, &(1u64 << 40).to_le_bytes());
    w.kv("test.i64", 11, &(-5i64).to_le_bytes());
    w.kv("test.f32", 6, &1.5f32.to_le_bytes());
    w.kv("test.f64", 12, &(-0.25f64).to_le_bytes());
    w.kv("test.bool", 7, &[1]);
    // An array of strings: element type, len, then each string.
    let mut tokens = 8u32.to_le_bytes().to_vec();
    tokens.extend_from_slice(&3u64.to_le_bytes());
    for s in ["a", "bc", "<s>"] {
        tokens.extend(enc_str(s));
    }
    w.kv("test.tokens", 9, &tokens);
    w.kv("test.nested", 9, &enc_nested(nest));

    for (i, (name, dims, ty, offset, _)) in TENSORS.iter().enumerate() {
        w.mark(format!("t{i}.name"));
        w.str(name);
        w.mark(format!("t{i}.n_dims"));
        w.u32(dims.len() as u32);
        for (j, &d) in dims.iter().enumerate() {
            w.mark(format!("t{i}.dims{j}"));
            w.u64(d);
        }
        w.mark(format!("t{i}.type"));
        w.u32(*ty);
        w.mark(format!("t{i}.offset"));
        w.u64(*offset);
    }
    w.mark("header_end");
    let data_offset = w.b.len().next_multiple_of(ALIGN as usize);
    w.b.resize(data_offset, 0);
    let (_, _, _, last_off, last_size) = TENSORS[2];
    // Data: a byte pattern, so a wrong offset shows.
    let end = data_offset + (last_off + last_size) as usize;
    let mut k = 0u8;
    while w.b.len() < end {
        w.b.push(k.wrapping_mul(31).wrapping_add(7));
        k = k.wrapping_add(1);
    }
    Fixture {
        bytes: w.b,
        marks: w.marks,
        data_offset,
    }
}

fn fixture() -> Fixture {
    fixture_with(2)
}

fn patch(bytes: &mut [u8], at: usize, with: &[u8]) {
    bytes[at..at + with.len()].copy_from_slice(with);
}

// ---------------------------------------------------------------------------------------------
// The valid fixture and the real model.

#[test]
fn fixture_parses_with_every_value_type() {
    let f = fixture();
    let (g, largest) = parse_counting(&f.bytes);
    let g = g.unwrap();
    assert!(
        largest <= f.bytes.len(),
        "largest allocation {largest} > file {}",
        f.bytes.len()
    );
    assert_eq!(g.version, 3);
    assert_eq!(g.alignment, ALIGN);
    assert_eq!(g.data_offset as usize, f.data_offset);
    assert_eq!(g.architecture(), Some("llama"));
    assert_eq!(g.get("test.u8"), Some(&Value::U8(7)));
    assert_eq!(g.get("test.i8"), Some(&Value::I8(-3)));
    assert_eq!(g.get("test.u16").and_then(Value::as_u32), Some(513));
    assert_eq!(g.get("test.i16"), Some(&Value::I16(-2)));
    assert_eq!(
        g.get("test.i16").and_then(Value::as_u64),
        None,
        "negative is not a u64"
    );
    assert_eq!(g.get("test.u32").and_then(Value::as_u32), Some(576));
    assert_eq!(g.get("test.i32"), Some(&Value::I32(-70000)));
    assert_eq!(g.get("test.u64").and_then(Value::as_u64), Some(1 << 40));
    assert_eq!(
        g.get("test.u64").and_then(Value::as_u32),
        None,
        "2^40 does not fit a u32"
    );
    assert_eq!(g.get("test.i64"), Some(&Value::I64(-5)));
    assert_eq!(g.get("test.f32").and_then(Value::as_f32), Some(1.5));
    assert_eq!(g.get("test.f64").and_then(Value::as_f32), Some(-0.25));
    assert_eq!(g.get("test.bool").and_then(Value::as_bool), Some(true));
    let tokens: Vec<&str> = g
        .get("test.tokens")
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(tokens, ["a", "bc", "<s>"]);
    assert_eq!(
        g.get("test.nested"),
        Some(&Value::Array(vec![Value::Array(vec![
            Value::I32(1),
            Value::I32(2)
        ])]))
    );
    assert_eq!(g.get("missing"), None);
    // Metadata in file order.
    let keys: Vec<&str> = g.metadata().map(|(k, _)| k).collect();
    assert_eq!(keys.first(), Some(&"general.architecture"));
    assert_eq!(keys.last(), Some(&"test.nested"));
    assert_eq!(keys.len(), 15);

    assert_eq!(g.tensors.len(), 3);
    for (i, (name, dims, ty, rel, size)) in TENSORS.iter().enumerate() {
        let t = g.tensor(name).unwrap();
        assert_eq!(t.name, g.tensors[i].name);
        assert_eq!(t.dims, *dims);
        assert_eq!(t.ty, GgmlType::from_id(*ty).unwrap());
        assert_eq!(t.offset, f.data_offset as u64 + rel);
        assert_eq!(t.size, *size);
        assert_eq!(t.n_elements(), dims.iter().product::<u64>());
        let data = g.tensor_data(&f.bytes, t).unwrap();
        assert_eq!(
            data,
            &f.bytes[t.offset as usize..(t.offset + t.size) as usize]
        );
    }
    assert!(g.tensor("t.z").is_none());
    // A buffer shorter than the one parsed is an error, not a panic.
    let last = g.tensor("t.c").unwrap();
    let err = g
        .tensor_data(&f.bytes[..f.bytes.len() - 1], last)
        .unwrap_err();
    assert!(err.field.contains("t.c"), "{err}");
}

#[test]
fn v2_file_parses() {
    // v2 and v3 share the layout (v3 only added big-endian files, marked by the version).
    let f = fixture();
    let mut b = f.bytes.clone();
    patch(&mut b, f.at("version"), &2u32.to_le_bytes());
    let g = Gguf::parse(&b).unwrap();
    assert_eq!(g.version, 2);
    assert_eq!(g.tensors.len(), 3);
}

#[test]
fn nesting_up_to_the_cap_parses() {
    let f = fixture_with(16);
    let g = Gguf::parse(&f.bytes).unwrap();
    let mut v = g.get("test.nested").unwrap();
    let mut depth = 0;
    while let Some(inner) = v.as_array() {
        depth += 1;
        match inner.first() {
            Some(x) => v = x,
            None => break,
        }
    }
    assert_eq!(depth, 16);
}

fn model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models/default/SmolLM2-135M-Instruct.Q4_1.gguf")
}

#[test]
fn real_model_parses() {
    let path = model_path();
    let bytes = ModelBytes::open(&path)
        .unwrap_or_else(|e| panic!("{e}: the default model is missing, run `cargo xtask setup`"));
    let (g, largest) = parse_counting(&bytes);
    let g = g.unwrap();
    assert!(largest <= bytes.len());
    assert_eq!(g.version, 3);
    assert_eq!(g.tensors.len(), 272);
    assert_eq!(g.metadata().count(), 33);
    assert_eq!(g.architecture(), Some("llama"));
    assert_eq!(g.alignment, 32);
    assert_eq!(g.data_offset, 1_785_664); // as gguf-py 0.19 reads it
    let tokens = g
        .get("tokenizer.ggml.tokens")
        .and_then(Value::as_array)
        .unwrap();
    assert_eq!(tokens.len(), 49152);
    assert_eq!(
        g.get("tokenizer.ggml.pre").and_then(Value::as_str),
        Some("smollm")
    );
    assert_eq!(g.get("llama.block_count").and_then(Value::as_u32), Some(30));
    assert_eq!(
        g.get("llama.rope.freq_base").and_then(Value::as_f32),
        Some(100000.0)
    );

    let q = g.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.ty, GgmlType::Q4_1);
    assert_eq!(q.dims, [576, 576]);
    assert_eq!(q.offset, 33_806_656); // as gguf-py 0.19 reads it
    assert_eq!(g.tensor_data(&bytes, q).unwrap().len(), 576 * 576 / 32 * 20);
    let emb = g.tensor("token_embd.weight").unwrap();
    assert_eq!(
        (emb.ty, emb.dims.as_slice()),
        (GgmlType::Q8_0, &[576, 49152][..])
    );
    // The tensors tile the data section up to the end of the file, with alignment padding.
    let mut total = 0;
    for t in &g.tensors {
        total += g.tensor_data(&bytes, t).unwrap().len() as u64;
    }
    assert!(total <= bytes.len() as u64 - g.data_offset);
    assert!(bytes.len() as u64 - g.data_offset - total < 272 * 32);
}

#[test]
fn open_names_the_missing_path() {
    let Err(e) = ModelBytes::open(std::path::Path::new("/nonexistent/m.gguf")) else {
        panic!("opened a missing file")
    };
    assert!(e.to_string().contains("/nonexistent/m.gguf"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Corruption.

/// Asserts `bytes` fails to parse without a big allocation, with an error naming `field`
/// (a substring) and, if given, starting at byte `offset`. `limit` is the size of the file the
/// case was derived from.
fn expect_err(case: &str, bytes: &[u8], limit: usize, field: &str, offset: Option<usize>) {
    expect_err_why(case, bytes, limit, field, offset, "");
}

/// As [`expect_err`], and the reason must contain `why`.
fn expect_err_why(
    case: &str,
    bytes: &[u8],
    limit: usize,
    field: &str,
    offset: Option<usize>,
    why: &str,
) {
    let (r, largest) = parse_counting(bytes);
    let e = match r {
        Ok(_) => panic!("{case}: parsed, expected an error naming {field}"),
        Err(e) => e,
    };
    assert!(
        largest <= limit,
        "{case}: allocated {largest} bytes, file is {limit}"
    );
    assert!(
        e.field.contains(field),
        "{case}: error names {:?}, expected {field:?}: {e}",
        e.field
    );
    if let Some(at) = offset {
        assert_eq!(e.offset, at as u64, "{case}: {e}");
    }
    assert!(
        !e.reason.is_empty() && e.reason.contains(why),
        "{case}: expected {why:?}: {e}"
    );
}

#[test]
fn truncation_at_every_byte_is_an_error() {
    let f = fixture();
    let len = f.bytes.len();
    for k in 0..len {
        let (r, largest) = parse_counting(&f.bytes[..k]);
        let e = match r {
            Ok(_) => panic!("truncated to {k} of {len} bytes: parsed"),
            Err(e) => e,
        };
        assert!(largest <= len, "truncated to {k}: allocated {largest}");
        assert!(
            !e.field.is_empty() && e.offset <= k as u64,
            "truncated to {k}: {e}"
        );
        // Inside the data section, the error is the last tensor's data running past the end.
        if k >= f.at("header_end") {
            assert!(
                e.field.starts_with("tensor_infos["),
                "truncated to {k}: {e}"
            );
        }
    }
    // Cuts inside named fields name them.
    let cuts = [
        ("magic", 2, "header.magic"),
        ("version", 3, "header.version"),
        ("tensor_count", 5, "header.tensor_count"),
        ("kv_count", 7, "header.metadata_kv_count"),
        // Early cuts leave too few bytes for the claimed counts.
        ("test.u16.key", 4, "header.metadata_kv_count"),
        ("test.nested.key", 4, "metadata[14].key"),
        ("test.nested.key", 12, "metadata[14].key"),
        ("test.nested.type", 1, "metadata[\"test.nested\"].type"),
        ("test.tokens", 6, "metadata[\"test.tokens\"].len"),
        // Inside "<s>": the three strings' minimum (24 bytes) still fits, the third does not.
        ("test.tokens", 4 + 8 + 28, "metadata[\"test.tokens\"][2]"),
        (
            "test.nested",
            4 + 8 + 4 + 8 + 2,
            "metadata[\"test.nested\"][0].len",
        ),
        ("t1.name", 9, "tensor_infos[1].name"),
        ("t2.dims1", 3, "tensor_infos[2].dims[1]"),
        ("t0.type", 2, "tensor_infos[0].type"),
        ("t1.offset", 7, "tensor_infos[1].offset"),
    ];
    for (mark, extra, field) in cuts {
        let k = f.at(mark) + extra;
        expect_err(
            &format!("cut at {mark}+{extra}"),
            &f.bytes[..k],
            len,
            field,
            None,
        );
    }
}

/// One corruption: a name, where to patch, the bytes to write there, the field the error names.
struct Case {
    name: &'static str,
    mark: &'static str,
    /// Added to the mark's offset.
    delta: usize,
    with: Vec<u8>,
    field: &'static str,
    /// Where the error must say the bad field starts (relative to the mark), if checked.
    at_mark: Option<&'static str>,
    /// A substring of the reason, where two checks could name the same field.
    why: &'static str,
}

impl Case {
    fn why(self, why: &'static str) -> Case {
        Case { why, ..self }
    }
}

fn case(
    name: &'static str,
    mark: &'static str,
    with: impl AsRef<[u8]>,
    field: &'static str,
) -> Case {
    Case {
        name,
        mark,
        delta: 0,
        with: with.as_ref().to_vec(),
        field,
        at_mark: Some(mark),
        why: "",
    }
}

fn le32(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}
fn le64(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

#[test]
fn corruption_table() {
    let f = fixture();
    let len = f.bytes.len() as u64;
    let alignment_field = "metadata[\"general.alignment\"]";
    let tokens_len = "metadata[\"test.tokens\"].len"; // the array's len follows its element type
    let cases = vec![
        // Header.
        case("bad magic", "magic", b"GGML", "header.magic"),
        case("v1", "version", le32(1), "header.version").why("v1"),
        case("v0", "version", le32(0), "header.version"),
        case("v4", "version", le32(4), "header.version"),
        case(
            "big-endian v3",
            "version",
            3u32.to_be_bytes(),
            "header.version",
        )
        .why("big-endian"),
        case(
            "tensor count u64::MAX",
            "tensor_count",
            le64(u64::MAX),
            "header.tensor_count",
        ),
        case(
            "tensor count 2^40",
            "tensor_count",
            le64(1 << 40),
            "header.tensor_count",
        ),
        case(
            "tensor count just too big",
            "tensor_count",
            le64(len / 24),
            "header.tensor_count",
        ),
        case(
            "kv count u64::MAX",
            "kv_count",
            le64(u64::MAX),
            "header.metadata_kv_count",
        ),
        case(
            "kv count 2^60",
            "kv_count",
            le64(1 << 60),
            "header.metadata_kv_count",
        ),
        case(
            "kv count just too big",
            "kv_count",
            le64(len / 13),
            "header.metadata_kv_count",
        ),
        // More pairs than written: the tensor infos are read as pairs and fail.
        // One pair more than written: tensor_infos[0] is read as a pair (key "t.a", type 2 =
        // u16), and the real first info is then read from the middle of its dims.
        Case {
            at_mark: None,
            ..case("kv count 16", "kv_count", le64(16), "tensor_infos[0].name")
        },
        // Metadata keys and values.
        case(
            "key length u64::MAX",
            "test.u8.key",
            le64(u64::MAX),
            "metadata[2].key",
        ),
        case(
            "key length past end",
            "test.u8.key",
            le64(len),
            "metadata[2].key",
        ),
        case(
            "duplicate key",
            "test.i8.key",
            [
                7, 0, 0, 0, 0, 0, 0, 0, b't', b'e', b's', b't', b'.', b'u', b'8',
            ],
            "metadata[3].key",
        )
        .why("duplicate"),
        case(
            "key not UTF-8",
            "test.u8.key",
            [7, 0, 0, 0, 0, 0, 0, 0, 0xff],
            "metadata[2].key",
        )
        .why("UTF-8"),
        case(
            "unknown value type",
            "test.u8.type",
            le32(13),
            "metadata[\"test.u8\"].type",
        ),
        case(
            "value type u32::MAX",
            "test.u8.type",
            le32(u32::MAX),
            "metadata[\"test.u8\"].type",
        ),
        case("bool byte 2", "test.bool", [2], "metadata[\"test.bool\"]"),
        case(
            "string length u64::MAX",
            "general.architecture",
            le64(u64::MAX),
            "metadata[\"general.architecture\"]",
        ),
        case(
            "string length 2^63",
            "general.architecture",
            le64(1 << 63),
            "metadata[\"general.architecture\"]",
        ),
        case(
            "string not UTF-8",
            "general.architecture",
            [5, 0, 0, 0, 0, 0, 0, 0, b'l', 0xc3, 0x28],
            "metadata[\"general.architecture\"]",
        ),
        case("alignment 0", "general.alignment", le32(0), alignment_field).why("power of two"),
        case(
            "alignment 48",
            "general.alignment",
            le32(48),
            alignment_field,
        )
        .why("power of two"),
        case(
            "alignment u32::MAX",
            "general.alignment",
            le32(u32::MAX),
            alignment_field,
        ),
        // Same width, wrong type: the error points at the type.
        case(
            "alignment as i32",
            "general.alignment.type",
            le32(5),
            alignment_field,
        )
        .why("must be a u32"),
        case(
            "alignment as f32",
            "general.alignment.type",
            le32(6),
            alignment_field,
        ),
        // Arrays.
        case(
            "array element type unknown",
            "test.tokens",
            le32(99),
            "metadata[\"test.tokens\"].element_type",
        ),
        Case {
            delta: 4,
            at_mark: None,
            ..case(
                "array len u64::MAX",
                "test.tokens",
                le64(u64::MAX),
                tokens_len,
            )
        },
        Case {
            delta: 4,
            at_mark: None,
            ..case(
                "array len 2^61 (×8 overflows)",
                "test.tokens",
                le64(1 << 61),
                tokens_len,
            )
        },
        Case {
            delta: 4,
            at_mark: None,
            ..case(
                "array len past end",
                "test.tokens",
                le64(len / 8),
                tokens_len,
            )
        },
        Case {
            delta: 12,
            at_mark: None,
            ..case(
                "array string len huge",
                "test.tokens",
                le64(1 << 50),
                "metadata[\"test.tokens\"][0]",
            )
        },
        Case {
            delta: 4 + 8 + 4,
            at_mark: None,
            ..case(
                "inner array len huge",
                "test.nested",
                le64(u64::MAX / 2),
                "metadata[\"test.nested\"][0].len",
            )
        },
        Case {
            delta: 4 + 8,
            at_mark: None,
            ..case(
                "inner element type unknown",
                "test.nested",
                le32(77),
                "metadata[\"test.nested\"][0].element_type",
            )
        },
        // Tensor infos.
        case(
            "name length u64::MAX",
            "t1.name",
            le64(u64::MAX),
            "tensor_infos[1].name",
        ),
        case(
            "duplicate tensor name",
            "t1.name",
            [3, 0, 0, 0, 0, 0, 0, 0, b't', b'.', b'a'],
            "tensor_infos[1].name",
        )
        .why("duplicate"),
        case("n_dims 5", "t0.n_dims", le32(5), "tensor_infos[0].n_dims"),
        case(
            "n_dims u32::MAX",
            "t0.n_dims",
            le32(u32::MAX),
            "tensor_infos[0].n_dims",
        ),
        case("dim 0", "t0.dims1", le64(0), "tensor_infos[0].dims[1]").why("zero"),
        case(
            "dims overflow u64",
            "t0.dims1",
            le64(1 << 60),
            "tensor_infos[0].dims[1]",
        ),
        case(
            "dims overflow i64",
            "t0.dims1",
            le64(1 << 57),
            "tensor_infos[0].dims[1]",
        ),
        case(
            "row not whole blocks",
            "t0.dims0",
            le64(33),
            "tensor_infos[0].dims[0]",
        )
        .why("block size"),
        Case {
            at_mark: Some("t0.offset"),
            ..case(
                "huge dim: data past end",
                "t0.dims1",
                le64(1 << 40),
                "tensor_infos[0].offset",
            )
            .why("past the end")
        },
        case(
            "unknown ggml type",
            "t2.type",
            le32(4),
            "tensor_infos[2].type",
        ),
        case(
            "ggml type u32::MAX",
            "t2.type",
            le32(u32::MAX),
            "tensor_infos[2].type",
        ),
        case(
            "offset past end",
            "t2.offset",
            le64(1 << 40),
            "tensor_infos[2].offset",
        ),
        case(
            "offset + size overflows",
            "t2.offset",
            le64(u64::MAX - 63),
            "tensor_infos[2].offset",
        ),
        case(
            "offset just past end",
            "t2.offset",
            le64(1408),
            "tensor_infos[2].offset",
        ),
        case(
            "misaligned offset",
            "t1.offset",
            le64(1090),
            "tensor_infos[1].offset",
        )
        .why("alignment 64"),
        case(
            "overlapping data",
            "t1.offset",
            le64(64),
            "tensor_infos[1].offset",
        )
        .why("overlaps"),
        case(
            "same offset",
            "t2.offset",
            le64(0),
            "tensor_infos[2].offset",
        )
        .why("overlaps tensor \"t.a\""),
        // Overlap with a tensor that is not its neighbour in the infos.
        case(
            "overlap with a non-neighbour",
            "t2.offset",
            le64(64),
            "tensor_infos[2].offset",
        )
        .why("overlaps"),
    ];

    let limit = f.bytes.len();
    for c in &cases {
        let mut b = f.bytes.clone();
        let at = f.at(c.mark) + c.delta;
        patch(&mut b, at, &c.with);
        let offset = c.at_mark.map(|m| f.at(m));
        expect_err_why(c.name, &b, limit, c.field, offset, c.why);
    }
    println!("{} corruption cases", cases.len());
}

#[test]
fn nesting_past_the_cap_is_an_error() {
    let f = fixture_with(17);
    expect_err(
        "17 nested arrays",
        &f.bytes,
        f.bytes.len(),
        "metadata[\"test.nested\"]",
        None,
    );
}

#[test]
fn tiny_inputs_are_errors() {
    for b in [
        &b""[..],
        b"G",
        b"GGUF",
        b"GGUF\x03\0\0\0",
        b"\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
    ] {
        // 128: room for the error message, which is longer than these inputs.
        expect_err(
            &format!("{b:?}"),
            b,
            128,
            "header.",
            Some(0).filter(|_| b.len() < 4 || b[..4] != *b"GGUF"),
        );
    }
    // A header with no tensors and no metadata is a valid (empty) file.
    let mut b = b"GGUF\x03\0\0\0".to_vec();
    b.extend_from_slice(&[0; 16]);
    let g = Gguf::parse(&b).unwrap();
    assert!(g.tensors.is_empty() && g.metadata().count() == 0);
    assert_eq!(g.data_offset, 32);
}

/// Counts that pass the check against the remaining bytes, but are still lies: what is reserved
/// for them must stay within the file's size (a reader that reserved `count` entries up front
/// would allocate several times the file here).
#[test]
fn plausible_lying_counts_reserve_only_what_the_bytes_allow() {
    let f = fixture();
    let len = f.bytes.len();
    let tokens_elems = f.at("test.tokens") + 4 + 8;
    let cases: [(&str, &str, usize, u64, &str); 3] = [
        // Infos 3.. are read from the zero padding: an empty name, 0 dims (a scalar), F32 at 0.
        (
            "tensor count",
            "tensor_count",
            0,
            ((len - 24 - 15 * 13) / 24) as u64,
            "tensor_infos[4].name",
        ),
        // Pair 15 is read from tensor_infos[0]; pair 16's key length from its dims.
        (
            "kv count",
            "kv_count",
            0,
            ((len - 24 - 3 * 24) / 13) as u64,
            "metadata[16].key",
        ),
        // Element 3 is the next key, "test.nested"; element 4's length is read from its type.
        (
            "tokens len",
            "test.tokens",
            4,
            ((len - tokens_elems) / 8) as u64,
            "metadata[\"test.tokens\"][4]",
        ),
    ];
    for (name, mark, delta, count, field) in cases {
        let mut b = f.bytes.clone();
        patch(&mut b, f.at(mark) + delta, &le64(count));
        expect_err(name, &b, len, field, None);
    }
}

fn py_fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/gguf")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Files written by gguf-py's own writer (tests/fixtures/gguf/make_small.py): an independent
/// check of the layout, offsets and value encodings.
#[test]
fn files_written_by_gguf_py_parse() {
    for (file, version) in [("small_v3.gguf", 3), ("small_v2.gguf", 2)] {
        let bytes = py_fixture(file);
        let (g, largest) = parse_counting(&bytes);
        let g = g.unwrap();
        assert!(largest <= bytes.len(), "{file}: allocated {largest}");
        assert_eq!(g.version, version);
        assert_eq!(g.alignment, 64);
        assert_eq!(g.data_offset, 768); // as gguf-py's reader places the first tensor
        assert_eq!(g.architecture(), Some("llama"));
        let get = |k: &str| g.get(k).unwrap_or_else(|| panic!("{file}: no {k}"));
        assert_eq!(get("test.u8"), &Value::U8(200));
        assert_eq!(get("test.i8"), &Value::I8(-100));
        assert_eq!(get("test.u16"), &Value::U16(65000));
        assert_eq!(get("test.i16"), &Value::I16(-30000));
        assert_eq!(get("test.u32"), &Value::U32(4_000_000_000));
        assert_eq!(get("test.i32"), &Value::I32(-2_000_000_000));
        assert_eq!(get("test.u64"), &Value::U64(1 << 60));
        assert_eq!(get("test.i64"), &Value::I64(-(1 << 60)));
        assert_eq!(get("test.f32"), &Value::F32(0.5));
        assert_eq!(get("test.f64"), &Value::F64(1e-300));
        assert_eq!(get("test.bool"), &Value::Bool(false));
        assert_eq!(get("test.string").as_str(), Some("héllo ✓"));
        let tokens: Vec<_> = get("test.tokens")
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(tokens, ["<s>", "a", "", "日本"]);
        let nested: Vec<Vec<u64>> = get("test.nested")
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                a.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect()
            })
            .collect();
        assert_eq!(nested, [vec![1, 2, 3], vec![4]]);

        // (name, dims, type, absolute offset, bytes) as gguf-py's reader reports them.
        let expected = [
            ("norm.weight", vec![64], GgmlType::F32, 768, 256),
            ("f16.weight", vec![16, 2], GgmlType::F16, 1024, 64),
            ("q8.weight", vec![64, 4], GgmlType::Q8_0, 1088, 272),
            ("q41.weight", vec![64, 4], GgmlType::Q4_1, 1408, 160),
        ];
        assert_eq!(g.tensors.len(), expected.len());
        for (t, (name, dims, ty, offset, size)) in g.tensors.iter().zip(expected) {
            assert_eq!(
                (t.name.as_str(), &t.dims, t.ty, t.offset, t.size),
                (name, &dims, ty, offset, size)
            );
        }
        let norm = g
            .tensor_data(&bytes, g.tensor("norm.weight").unwrap())
            .unwrap();
        let values: Vec<f32> = norm
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(values, (0..64).map(|i| i as f32).collect::<Vec<_>>());
    }
}

#[test]
fn empty_file_opens_and_is_a_clear_error() {
    let path = std::env::temp_dir().join(format!("nib-empty-{}.gguf", std::process::id()));
    std::fs::write(&path, b"").unwrap();
    let bytes = ModelBytes::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(bytes.is_empty());
    let e = Gguf::parse(&bytes).unwrap_err();
    assert_eq!((e.field.as_str(), e.offset), ("header.magic", 0));
    assert!(e.reason.contains("empty"), "{e}");
    let Err(e) = ModelBytes::open(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))) else {
        panic!("opened a directory")
    };
    assert!(e.to_string().contains("not a regular file"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Hostile configs: every field in range, their products not.

/// A `llama` file of metadata alone (no tensors): a small valid config with `set` replaced or
/// added.
fn llama_metadata(set: &[(&str, Value)]) -> Vec<u8> {
    let mut kvs: Vec<(String, Value)> = [
        ("general.architecture", Value::String("llama".into())),
        ("llama.block_count", Value::U32(1)),
        ("llama.embedding_length", Value::U32(32)),
        ("llama.attention.head_count", Value::U32(16)),
        ("llama.attention.head_count_kv", Value::U32(16)),
        ("llama.feed_forward_length", Value::U32(64)),
        ("llama.vocab_size", Value::U32(32)),
        ("llama.context_length", Value::U32(2048)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (key, v) in set {
        match kvs.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = v.clone(),
            None => kvs.push(((*key).to_owned(), v.clone())),
        }
    }
    nib_engine::gguf_writer::write(&kvs, &[], |_, _| Ok(())).unwrap()
}

fn config_of(set: &[(&str, Value)]) -> Result<nib_engine::arch::llama::Config, nib_engine::Error> {
    let bytes = llama_metadata(set);
    nib_engine::arch::llama::Config::from_gguf(&Gguf::parse(&bytes).unwrap())
}

#[test]
fn hostile_config_products_are_typed_errors() {
    let c = config_of(&[]).unwrap();
    assert_eq!((c.attn.q_dim(), c.attn.kv_dim(), c.ffn_dim), (32, 32, 64));
    // The largest q the bounds allow still reads: 1024 heads of 64, 16 heads of 4096.
    for (heads, key_length) in [(1024, 64), (16, 4096)] {
        let c = config_of(&[("llama.attention.head_count", Value::U32(heads)), ("llama.attention.head_count_kv", Value::U32(heads)), ("llama.attention.key_length", Value::U32(key_length))]).unwrap();
        assert_eq!(c.attn.kv_dim(), 1 << 16);
    }
    // 16 heads of 65,536 (each field within its bound) made a KV cache of ~9.7 GB in the
    // completer for a one-layer file of ~72 MB.
    let cases = [
        ("q and kv 2^20 wide", vec![("llama.attention.key_length", Value::U32(1 << 16))], "wider than 65536"),
        ("1024 heads of 128", vec![("llama.attention.head_count", Value::U32(1024)), ("llama.attention.head_count_kv", Value::U32(1)), ("llama.attention.key_length", Value::U32(128))], "wider than 65536"),
        ("ffn 2^19: 1 GiB prefill tensors", vec![("llama.feed_forward_length", Value::U32(1 << 19))], "feed_forward_length"),
        ("ffn just past the bound", vec![("llama.feed_forward_length", Value::U32((1 << 17) + 1))], "out of range"),
    ];
    for (case, set, why) in &cases {
        match config_of(set) {
            Err(nib_engine::Error::Model(m)) => assert!(m.contains(why), "{case}: {m}"),
            other => panic!("{case}: {other:?}"),
        }
    }
    let c = config_of(&[("llama.feed_forward_length", Value::U32(1 << 17))]).unwrap();
    assert_eq!(c.ffn_dim, 1 << 17);
}

/// A KV cache the allocator cannot give is a typed error naming its size, not an abort (in
/// wasm, a trap that kills the worker).
#[test]
fn a_kv_cache_too_large_to_allocate_is_a_typed_error() {
    use nib_engine::backend::{cpu::CpuBackend, AttnShape, Backend};
    let b = CpuBackend::new(std::sync::Arc::new(ModelBytes::Owned(Vec::new())), 1);
    let shape = AttnShape { n_heads: 16, n_kv_heads: 16, head_dim: 4096, window: None };
    // Past usize: the product overflows.
    match b.new_cache(4, usize::MAX / 4096, shape) {
        Err(nib_engine::Error::InvalidArgument(m)) => assert!(m.contains("overflows"), "{m}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // 2^61 bytes: fits a usize, no allocator gives it.
    #[cfg(target_pointer_width = "64")]
    match b.new_cache(2, 1 << 42, shape) {
        Err(nib_engine::Error::InvalidArgument(m)) => assert!(m.contains("2305843009213693952 bytes") && m.contains("cannot be allocated"), "{m}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // A small one still works.
    assert!(b.new_cache(2, 64, shape).is_ok());
}
