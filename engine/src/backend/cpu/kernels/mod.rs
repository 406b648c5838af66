//! CPU matmul kernels over GGML blocks, read in place from the model file.
