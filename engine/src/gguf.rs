//! Validated GGUF reader.
