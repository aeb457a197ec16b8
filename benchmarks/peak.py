"""The machine's float32 multiply-add peak, measured: the ceiling every GFLOP/s figure of the
benchmarks is read against.

    python benchmarks/peak.py [--measurements 5] [--json]

Twelve independent chains of 16-lane vector multiply-adds per thread (enough to hide the
multiply-add latency on every current x86 and Arm core), compiled with the same compiler and flags
as graphnn's generated code, on 1 thread and on every core. The loop only multiplies and adds in
registers, so no real kernel can exceed it: a matmul at 80-90% of it is near the machine's limit.
Also measures numpy's BLAS sgemm (OpenBLAS with its best kernel) on the shapes of the MLP, on 1
thread and on every core (each thread count in a process of its own: OpenBLAS fixes its threads
when it loads).

A busy machine only ever makes a rate lower, so each figure is the best of several measurements
spread over the run, and the report says when every core together does not reach SCALING times
one core's rate: another process, or a sibling hyperthread, is using a core, and rates measured
on all cores (this run's and the benchmarks') are below what the machine can do.
"""
from __future__ import annotations

import os

if __name__ == "__main__":  # let numpy's OpenBLAS use its best kernel (run as a script only, before numpy loads)
    for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        os.environ.pop(_name, None)

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from processes import run_worker, worker_task  # noqa: E402

SHAPES = [(1024, 784, 300), (300, 1024, 784), (2048, 2048, 2048)]
"""The sgemm shapes (m, k, n): the MLP's first layer at batch 1024 (forward and weight gradient),
and a large square product."""
SCALING = 0.8
"""Every core together should reach this fraction of cores x one core's rate (1.6x on 2 cores)."""

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


def fma_peak(threads: int, rounds: int = 20_000_000) -> float:
    """Measured float32 multiply-add GFLOP/s of ``threads`` threads (see the module docstring):
    the best of 3 runs in a row."""
    from runtime.cpu import Library

    with tempfile.TemporaryDirectory() as cache:
        library = Library(SOURCE, "double fma_peak(int threads, long n);", Path(cache))
        return library.function("fma_peak")(threads, rounds) * 1e-9


def sgemm_rate(m: int, k: int, n: int, repeats: int = 20, budget: float = 1.0) -> float:
    """numpy's BLAS sgemm GFLOP/s on (m x k) @ (k x n), the best of ``repeats`` calls (fewer
    when they would take more than ``budget`` seconds, at least 3)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((m, k), np.float32), rng.random((k, n), np.float32)
    start = time.perf_counter()
    for _ in range(2):
        a @ b
    once = (time.perf_counter() - start) / 2
    best = float("inf")
    for _ in range(max(3, min(repeats, int(budget / max(once, 1e-9))))):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best * 1e-9


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def measure(measurements: int = 5, rounds: int = 20_000_000, shapes=tuple(SHAPES), repeats: int = 20) -> dict:
    """The FMA peak and numpy's sgemm on each shape, on 1 thread and on every core: the best of
    ``measurements`` runs each, the thread counts taking turns (so a busy spell of the machine
    hits both). GFLOP/s as ``{"cores": n, "fma": {threads: rate}, "sgemm": {threads: {"m x k x
    n": rate}}}``."""
    counts = sorted({1, cores()})
    fma = {t: 0.0 for t in counts}
    sgemm = {t: {} for t in counts}
    for _ in range(measurements):
        for t in counts:
            fma[t] = max(fma[t], fma_peak(t, rounds))
            rates = run_worker(__file__, {"threads": t, "shapes": list(map(list, shapes)), "repeats": repeats},
                               env=_openblas_env(t))
            for shape, rate in rates.items():
                sgemm[t][shape] = max(sgemm[t].get(shape, 0.0), rate)
    return {"cores": counts[-1], "fma": fma, "sgemm": sgemm}


def _openblas_env(threads: int) -> dict:
    """numpy's OpenBLAS on ``threads`` threads with its best kernel."""
    return {"OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads), "OPENBLAS_CORETYPE": None,
            "OPENBLAS_L2_SIZE": None}


def ceiling(result: dict) -> float:
    """The GFLOP/s a step's matmuls are read against: the best of the FMA peak on every core
    and numpy's sgemm on any shape (a peak measured low on a busy core never drops below
    what a real product reached)."""
    every = result["fma"][max(result["fma"])]
    return max([every] + [rate for rates in result["sgemm"].values() for rate in rates.values()])


def scaling_note(result: dict) -> str | None:
    """A sentence when every core together falls short of SCALING times one core's FMA rate,
    else None."""
    n = result["cores"]
    one, every = result["fma"][1], result["fma"][n]
    if n < 2 or every >= SCALING * n * one:
        return None
    return (f"{n} threads reach only {every / one:.2f}x one thread's multiply-add rate (expected about {n}x): "
            "a core is busy or shared (another process, or a hyperthread sibling), so every rate measured on "
            f"{n} threads here is below what this machine can do")


def report(result: dict) -> list[str]:
    """The measured rates as lines of text."""
    n = result["cores"]
    fma = result["fma"]
    lines = [f"float32 multiply-add peak: {fma[1]:.1f} GFLOP/s on 1 thread"
             + (f", {fma[n]:.1f} on {n} ({fma[n] / fma[1]:.2f}x)" if n > 1 else "")]
    counts = sorted(result["sgemm"])
    for shape in result["sgemm"][1]:
        lines.append(f"numpy sgemm {shape}: " + ", ".join(
            f"{result['sgemm'][t][shape]:.1f} GFLOP/s on {t} thread{'s' if t > 1 else ''}" for t in counts))
    note = scaling_note(result)
    if note:
        lines.append("NOTE: " + note)
    return lines


def _worker(task: dict) -> None:
    """sgemm on each shape in this process (its OpenBLAS threads set by the environment)."""
    print(json.dumps({f"{m} x {k} x {n}": sgemm_rate(m, k, n, task["repeats"]) for m, k, n in task["shapes"]}))


def main() -> None:
    task = worker_task(sys.argv)
    if task is not None:
        return _worker(task)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--measurements", type=int, default=5, help="runs of each figure; the best is kept")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args()
    result = measure(args.measurements)
    if args.json:
        print(json.dumps(result))
        return
    print("\n".join(report(result)))
    print(f"ceiling for the benchmarks' % peak: {ceiling(result):.1f} GFLOP/s")


if __name__ == "__main__":
    main()
