"""Code generation: a KernelPlan to source text. One module per backend: ``c`` (one translation
unit per program; its matmuls printed by ``c_matmul``, the large ones calling the packed GEMM of
``c_gemm``) and ``triton`` (a module of ``@triton.jit`` kernels and a launcher); ``printers`` holds
the sympy printers they share and ``loops`` the loop structure they share (which axes loop, index
expressions, a reduction's early and late parts, buffer bindings, what a part of a kernel uses)."""
