"""Compiler backends: cpu (LLVM, in-process JIT)."""
