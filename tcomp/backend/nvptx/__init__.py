"""NVPTX backend: the kernel program compiled to PTX for NVIDIA GPUs, checked without a GPU,
run through the CUDA driver where one exists.

Modules: ``target`` (one kernel body for two targets: NVPTX grid or the CPU grid emulator;
PTX emission, ptxas), ``codegen`` (program -> module; pointwise kinds), ``codegen_block``
(reductions, softmax rows, tiled matmul), ``codegen_data`` (gather, update, cumulative,
argsort, random), ``codegen_conv``, ``codegen_pool``, ``host`` (launch tables shared by the
runtime and the emulator), ``emulator``, ``driver`` (ctypes over libcuda), ``runtime``
(``backend='cuda'``), ``bench``.

Status (first version): every kernel kind of the kernel program has codegen, its PTX
assembles with ptxas for sm_80 and sm_90, and the emulator matches the reference for every
op.  Not yet: shared variables resident on the device between calls (inputs are copied per
call), the host side (shape program, tables) running in Python, atomics/second-pass
cross-block reductions (a reduction row is one block), tiled conv, and a parallel scatter
for updates with advanced indices (one thread, in order, for exact duplicate semantics).
"""
