"""NVPTX backend: the kernel program compiled to PTX for NVIDIA GPUs, checked without a GPU,
run through the CUDA driver where one exists.

Modules: ``target`` (one kernel body for two targets: NVPTX grid or the CPU grid emulator;
PTX emission, ptxas), ``codegen`` (program -> module; pointwise kinds), ``codegen_block``
(reductions, with their two-pass split form, softmax rows, tiled matmul), ``codegen_data``
(gather, update, cumulative, argsort, random), ``codegen_conv``, ``codegen_pool``, ``host``
(the launches and tables of one call, shared by the runtime and the emulator: ``CallPlan``),
``emulator`` (``EmulatedProgram``; ``EmulatedDevice``, the driver's interface over host
memory), ``driver`` (ctypes over libcuda), ``resident`` (shared variables on the GPU),
``runtime`` (``backend='cuda'``), ``bench``.

Status: every kernel kind of the kernel program has codegen, its PTX assembles with ptxas
for sm_80 and sm_90, the emulator matches the reference for every op, and the host side
(pool, resident shared variables, split reductions, the error word, chains of programs) runs
end to end over ``EmulatedDevice``.  Not yet: a run on a real GPU (none was available while
this was written; the GPU tests skip without a driver), tiled conv, and a parallel scatter
for updates with advanced indices (one thread, in order, for exact duplicate semantics).
"""
