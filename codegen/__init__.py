"""Code generation: KernelPlan to source text, one module per backend (C and Triton come next)."""
