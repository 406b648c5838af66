//! Errors as the page sees them: a JS `Error` whose `code` is one of a fixed set of strings,
//! so that callers branch on the code and show the message.

use nib_engine::Error;
use wasm_bindgen::JsValue;

/// The stable error codes. The TypeScript side lists the same strings (`web/src/types.ts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Not a GGUF file nib can read: bad header, bad metadata, tensors that do not fit.
    ModelCorrupt,
    /// A valid file nib does not run (architecture, block format, pre-tokenizer).
    ModelUnsupported,
    /// The bytes do not have the sha256 the caller asked for.
    ModelHashMismatch,
    /// The model is bigger than the memory the browser gives wasm.
    OutOfMemory,
    /// No WebGPU here, or an adapter without what nib needs.
    GpuUnavailable,
    /// The GPU device was lost while the model ran on it.
    GpuDeviceLost,
    /// A caller passed something out of range.
    InvalidArgument,
    /// A call arrived while another was running (a callback calling back in).
    Busy,
    /// A bug: should never be seen.
    Internal,
}

impl Code {
    /// The code of a GPU failure.
    pub fn of_gpu(kind: nib_engine::GpuFailure) -> Self {
        use nib_engine::GpuFailure;
        match kind {
            GpuFailure::Unavailable => Code::GpuUnavailable,
            GpuFailure::DeviceLost => Code::GpuDeviceLost,
            GpuFailure::OutOfMemory => Code::OutOfMemory,
            GpuFailure::Failed => Code::Internal,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Code::ModelCorrupt => "model_corrupt",
            Code::ModelUnsupported => "model_unsupported",
            Code::ModelHashMismatch => "model_hash_mismatch",
            Code::OutOfMemory => "out_of_memory",
            Code::GpuUnavailable => "gpu_unavailable",
            Code::GpuDeviceLost => "gpu_device_lost",
            Code::InvalidArgument => "invalid_argument",
            Code::Busy => "busy",
            Code::Internal => "internal",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NibError {
    pub code: Code,
    pub message: String,
}

impl NibError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        NibError { code, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        NibError::new(Code::InvalidArgument, message)
    }

    /// An engine error raised while loading a model: anything wrong with the file is the
    /// file's fault (`model_corrupt`), except what nib does not support yet.
    pub fn from_load(e: Error) -> Self {
        let code = match e {
            Error::Unsupported(_) => Code::ModelUnsupported,
            Error::Gguf(_) | Error::Safetensors(_) | Error::Model(_) | Error::Tokenizer(_) | Error::InvalidArgument(_) => Code::ModelCorrupt,
            Error::Gpu { kind, .. } => Code::of_gpu(kind),
            Error::Io(_) => Code::Internal,
        };
        NibError::new(code, e.to_string())
    }

    /// An engine error raised on a loaded model: bad arguments are the caller's; the rest
    /// are nib's.
    pub fn from_run(e: Error) -> Self {
        let code = match e {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::Unsupported(_) => Code::ModelUnsupported,
            Error::Gpu { kind, .. } => Code::of_gpu(kind),
            _ => Code::Internal,
        };
        NibError::new(code, e.to_string())
    }
}

impl std::fmt::Display for NibError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl From<NibError> for JsValue {
    fn from(e: NibError) -> JsValue {
        let err = js_sys::Error::new(&e.message);
        let _ = js_sys::Reflect::set(&err, &JsValue::from_str("code"), &JsValue::from_str(e.code.as_str()));
        err.into()
    }
}

pub type NibResult<T> = Result<T, NibError>;

/// What the exported functions return: errors already turned into JS errors.
pub type JsResult<T> = Result<T, JsValue>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_codes() {
        let gguf = nib_engine::GgufError { field: "magic".into(), offset: 0, reason: "not GGUF".into() };
        assert_eq!(NibError::from_load(Error::Gguf(gguf)).code, Code::ModelCorrupt);
        assert_eq!(NibError::from_load(Error::Unsupported("arch".into())).code, Code::ModelUnsupported);
        assert_eq!(NibError::from_run(Error::InvalidArgument("n".into())).code, Code::InvalidArgument);
        assert_eq!(NibError::from_run(Error::Model("x".into())).code, Code::Internal);
        assert_eq!(Code::ModelHashMismatch.as_str(), "model_hash_mismatch");
    }
}
