"""The machine's float32 multiply-add peak, measured: the ceiling every GFLOP/s figure of the
benchmarks is read against.

    python benchmarks/peak.py

Twelve independent chains of 16-lane vector multiply-adds per thread (enough to hide the
multiply-add latency on every current x86 and Arm core), compiled with the same compiler and flags
as graphnn's generated code, on 1 thread and on every core. The loop only multiplies and adds in
registers, so no real kernel can exceed it: a matmul at 80-90% of it is near the machine's limit.
Also measures numpy's BLAS sgemm (OpenBLAS with its best kernel) on the shapes of the MLP.
"""
from __future__ import annotations

import os

if __name__ == "__main__":  # let numpy's OpenBLAS use its best kernel (run as a script only, before numpy loads)
    for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        os.environ.pop(_name, None)

import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SOURCE = r"""
#include <time.h>
typedef float v16 __attribute__((vector_size(64)));

static float chains(long n, float seed)
{
    v16 a[12], x = (v16){0} + 0.999f, y = (v16){0} + 1e-3f;
    for (int j = 0; j < 12; j++) a[j] = (v16){0} + seed * (float)(j + 1);  /* distinct: no merging */
    for (long i = 0; i < n; i++) {
#pragma GCC unroll 12
        for (int j = 0; j < 12; j++) a[j] = a[j] * x + y;  /* contracted to one multiply-add */
    }
    v16 s = (v16){0};
    for (int j = 0; j < 12; j++) s += a[j];
    float t = 0;
    for (int l = 0; l < 16; l++) t += s[l];
    return t;
}

/* FLOP/s of `threads` threads each running n rounds of 12 x 16 multiply-adds; the best of 3. */
double fma_peak(int threads, long n)
{
    double best = 0;
    volatile float sink = 0;
    for (int rep = 0; rep < 3; rep++) {
        struct timespec t0, t1;
        float s = 0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
#pragma omp parallel for num_threads(threads) reduction(+:s)
        for (int t = 0; t < threads; t++) s += chains(n, 1.0f + t);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        sink += s;
        double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        double rate = 12.0 * 16 * 2 * (double)n * threads / seconds;
        if (rate > best) best = rate;
    }
    return best;
}
"""


def fma_peak(threads: int, rounds: int = 50_000_000) -> float:
    """Measured float32 multiply-add GFLOP/s of ``threads`` threads (see the module docstring)."""
    from runtime.cpu import Library

    with tempfile.TemporaryDirectory() as cache:
        library = Library(SOURCE, "double fma_peak(int threads, long n);", Path(cache))
        return library.function("fma_peak")(threads, rounds) * 1e-9


def sgemm_rate(m: int, k: int, n: int, repeats: int = 20) -> float:
    """numpy's BLAS sgemm GFLOP/s on (m x k) @ (k x n), the median of ``repeats`` calls."""
    rng = np.random.default_rng(0)
    a, b = rng.random((m, k), np.float32), rng.random((k, n), np.float32)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * m * k * n / sorted(times)[len(times) // 2] * 1e-9


def main() -> None:
    cores = os.cpu_count() or 1
    print(f"float32 multiply-add peak: {fma_peak(1):.1f} GFLOP/s on 1 thread, {fma_peak(cores):.1f} on {cores}")
    for m, k, n in [(1024, 784, 300), (300, 1024, 784), (2048, 2048, 2048)]:
        print(f"numpy sgemm {m} x {k} @ {k} x {n}: {sgemm_rate(m, k, n):.1f} GFLOP/s")


if __name__ == "__main__":
    main()
