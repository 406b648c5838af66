//! The model file arriving in pieces: each piece is copied once into one buffer in wasm memory
//! (reserved up front when the size is known) and hashed on the way, so the file is never held
//! twice and its sha256 is ready the moment the last byte lands. The engine then reads the
//! weights in place from that buffer (`ModelBytes::Owned`).

use sha2::{Digest, Sha256};
use wasm_bindgen::prelude::*;

use crate::error::{Code, JsResult, NibError, NibResult};

#[wasm_bindgen]
pub struct ModelLoader {
    buf: Vec<u8>,
    hasher: Sha256,
    expected_sha256: Option<[u8; 32]>,
}

#[wasm_bindgen]
impl ModelLoader {
    /// `size`: the file size when known (Content-Length), to reserve the buffer once;
    /// `sha256`: the hex digest the bytes must have, when the caller knows it.
    #[wasm_bindgen(constructor)]
    pub fn new(size: Option<f64>, sha256: Option<String>) -> JsResult<ModelLoader> {
        Ok(Self::create(size, sha256.as_deref())?)
    }

    /// Appends the next piece of the file.
    pub fn push(&mut self, chunk: &[u8]) -> JsResult<()> {
        Ok(self.append(chunk)?)
    }

    /// Bytes received so far.
    pub fn received(&self) -> f64 {
        self.buf.len() as f64
    }

    /// The sha256 of the bytes received so far, as lowercase hex.
    #[wasm_bindgen(js_name = sha256Hex)]
    pub fn sha256_hex(&self) -> String {
        hex(&self.hasher.clone().finalize())
    }

    /// Checks the bytes against the expected sha256 (if one was given).
    pub fn verify(&self) -> JsResult<()> {
        Ok(self.check()?)
    }

    /// Where the received bytes start in wasm memory: the worker copies the verified file
    /// from there into the browser's cache (through Blobs, without JS garbage). Valid until
    /// the next call into wasm.
    #[wasm_bindgen(js_name = bytesPtr)]
    pub fn bytes_ptr(&self) -> usize {
        self.buf.as_ptr() as usize
    }

    /// A copy of `len` bytes from `offset` (clamped to the file).
    pub fn slice(&self, offset: f64, len: f64) -> Vec<u8> {
        let start = (offset.max(0.0) as usize).min(self.buf.len());
        let end = start.saturating_add(len.max(0.0) as usize).min(self.buf.len());
        self.buf[start..end].to_vec()
    }
}

impl ModelLoader {
    pub fn create(size: Option<f64>, sha256: Option<&str>) -> NibResult<ModelLoader> {
        let expected_sha256 = sha256.map(parse_sha256).transpose()?;
        let mut buf = Vec::new();
        if let Some(size) = size {
            if !(size.is_finite() && size >= 0.0) {
                return Err(NibError::invalid(format!("model size {size} is not a byte count")));
            }
            buf.try_reserve_exact(size as usize).map_err(|_| {
                NibError::new(Code::OutOfMemory, format!("cannot reserve {size} bytes of wasm memory for the model"))
            })?;
        }
        Ok(ModelLoader { buf, hasher: Sha256::new(), expected_sha256 })
    }

    pub fn append(&mut self, chunk: &[u8]) -> NibResult<()> {
        self.buf.try_reserve(chunk.len()).map_err(|_| {
            NibError::new(Code::OutOfMemory, format!("out of wasm memory after {} bytes of the model", self.buf.len()))
        })?;
        self.buf.extend_from_slice(chunk);
        self.hasher.update(chunk);
        Ok(())
    }

    pub fn check(&self) -> NibResult<()> {
        if let Some(want) = self.expected_sha256 {
            let got = self.hasher.clone().finalize();
            if got.as_slice() != want {
                return Err(NibError::new(
                    Code::ModelHashMismatch,
                    format!("model sha256 is {}, expected {} ({} bytes received)", hex(&got), hex(&want), self.buf.len()),
                ));
            }
        }
        Ok(())
    }

    /// The verified bytes, for the engine; the loader is left empty.
    pub fn take_bytes(&mut self) -> NibResult<Vec<u8>> {
        self.check()?;
        Ok(std::mem::take(&mut self.buf))
    }
}

fn parse_sha256(s: &str) -> NibResult<[u8; 32]> {
    let s = s.trim();
    let bad = || NibError::invalid(format!("sha256 {s:?} is not 64 hex digits"));
    if s.len() != 64 || !s.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn hashes_pieces_like_the_whole() {
        let mut l = ModelLoader::create(Some(3.0), Some(ABC)).unwrap();
        l.append(b"a").unwrap();
        l.append(b"").unwrap();
        l.append(b"bc").unwrap();
        assert_eq!(l.sha256_hex(), ABC);
        assert_eq!(l.take_bytes().unwrap(), b"abc");
        // FIPS 180-2 vectors: the empty string, and 448 bits over two blocks.
        let l = ModelLoader::create(None, None).unwrap();
        assert_eq!(l.sha256_hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let mut l = ModelLoader::create(None, None).unwrap();
        for piece in b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".chunks(5) {
            l.append(piece).unwrap();
        }
        assert_eq!(l.sha256_hex(), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    }

    #[test]
    fn wrong_hash_is_typed() {
        let mut l = ModelLoader::create(None, Some(&ABC.to_uppercase())).unwrap();
        l.append(b"abd").unwrap();
        assert_eq!(l.take_bytes().unwrap_err().code, Code::ModelHashMismatch);
    }

    #[test]
    fn bad_arguments_are_typed() {
        assert_eq!(ModelLoader::create(None, Some("xyz")).err().unwrap().code, Code::InvalidArgument);
        assert_eq!(ModelLoader::create(None, Some(&"é".repeat(32))).err().unwrap().code, Code::InvalidArgument);
        assert_eq!(ModelLoader::create(Some(-1.0), None).err().unwrap().code, Code::InvalidArgument);
        assert_eq!(ModelLoader::create(Some(f64::NAN), None).err().unwrap().code, Code::InvalidArgument);
    }

    #[test]
    fn slice_clamps() {
        let mut l = ModelLoader::create(None, None).unwrap();
        l.append(b"hello").unwrap();
        assert_eq!(l.slice(3.0, 100.0), b"lo");
        assert_eq!(l.slice(10.0, 2.0), b"");
        assert_eq!(l.slice(-1.0, 2.0), b"he");
    }
}
