"""LLVM CPU backend: lowers a kernel graph to one llvmlite module and JIT-compiles it."""
