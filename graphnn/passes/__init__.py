"""The backend-neutral middle end: simplify a Graph, fuse it into a KernelPlan, plan memory."""
