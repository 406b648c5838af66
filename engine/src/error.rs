//! One error enum for the engine. Every failure a user can cause (a bad file, bad text, a bad
//! argument) becomes one of these, never a panic: in wasm a panic kills the worker.

/// Where a GGUF file is wrong: the field being read and the byte offset it starts at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid GGUF: {field} at byte {offset}: {reason}")]
pub struct GgufError {
    /// The header field, metadata key or tensor being read, e.g. `tensor_infos[3].dims`.
    pub field: String,
    /// Byte offset in the file where that field starts.
    pub offset: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// Where a safetensors file is wrong: the header field or tensor being read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid safetensors: {field}: {reason}")]
pub struct SafetensorsError {
    /// `header.len`, `header`, or the tensor, e.g. `"model.norm.weight".data_offsets`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Safetensors(#[from] SafetensorsError),
    /// The file is a valid GGUF but lacks something the architecture needs, or holds a value
    /// nib cannot use (e.g. a missing tensor, a shape that does not match the config).
    #[error("model: {0}")]
    Model(String),
    /// Valid input that nib does not support yet (an architecture, a block format, a pre-tokenizer).
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A caller passed something out of range: a token id past the vocabulary, a prompt longer
    /// than the context, a bad sampling parameter.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The GPU backend cannot run or stopped running; callers may fall back to the CPU.
    #[error("GPU {kind}: {message}")]
    Gpu { kind: GpuFailure, message: String },
}

/// What went wrong with a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuFailure {
    /// No adapter, no WebGPU in this browser, or an adapter without the limits nib needs.
    Unavailable,
    /// The device was lost (driver reset, GPU process crash, the page backgrounded too long).
    DeviceLost,
    /// An allocation the device refused.
    OutOfMemory,
    /// Anything else the device reported: a kernel that did not compile, a failed readback.
    Failed,
}

impl std::fmt::Display for GpuFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GpuFailure::Unavailable => "unavailable",
            GpuFailure::DeviceLost => "device lost",
            GpuFailure::OutOfMemory => "out of memory",
            GpuFailure::Failed => "error",
        })
    }
}

impl Error {
    #[cfg_attr(all(target_arch = "wasm32", not(target_os = "unknown")), allow(dead_code))] // no GPU under WASI
    pub(crate) fn gpu(kind: GpuFailure, message: impl Into<String>) -> Self {
        Error::Gpu { kind, message: message.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
