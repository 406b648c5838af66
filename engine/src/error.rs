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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gguf(#[from] GgufError),
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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
