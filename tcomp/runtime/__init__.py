"""Runtime: the JIT engine, the call ABI, caches."""
