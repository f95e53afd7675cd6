"""CuTe DSL (nvidia-cutlass-dsl) kernels; each module imports `cutlass` only when a kernel is compiled."""
