"""NVPTX backend: the kernel program compiled to PTX for NVIDIA GPUs (``codegen``), checked
without a GPU by ptxas and by the CPU grid emulator (``emulator``), and run through the CUDA
driver API where one exists (``driver``, ``runtime``)."""
