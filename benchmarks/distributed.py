"""Data-parallel throughput: samples per second of the MNIST-shaped MLP (784-300-100-10, ReLU,
CrossEntropy, SGD with momentum) at batch 256 per rank, on 1 and 2 MPI ranks, with the fraction
of the step spent averaging gradients (the Allreduce).

    python benchmarks/distributed.py [--steps 40]

It starts ``mpiexec`` itself (from the environment's bin directory), one run per rank count, with
one OpenMP thread per rank so that ranks do not compete for cores.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(steps: int) -> None:
    import numpy as np

    import graphnn as gn
    from graphnn import distributed, nn, optim

    rank, size = distributed.rank(), distributed.world_size()
    spent = [0.0]
    average = distributed.average_gradients

    def timed(*args):
        start = time.perf_counter()
        result = average(*args)
        spent[0] += time.perf_counter() - start
        return result

    distributed.average_gradients = timed
    gn.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
    train = gn.compile(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
                       distributed=True)
    rng = np.random.default_rng(rank)
    x = rng.standard_normal((256, 784)).astype(np.float32)
    y = rng.integers(0, 10, 256)
    for _ in range(5):
        train.step(x, y)
    distributed.init().comm.Barrier()
    spent[0] = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        train.step(x, y)
    elapsed = time.perf_counter() - start
    if rank == 0:
        print(f"{size} {256 * size * steps / elapsed:.0f} {elapsed / steps * 1e3:.2f} {spent[0] / elapsed:.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.steps)
    mpiexec = Path(sys.executable).parent / "mpiexec"
    flags = ["--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    print("ranks  samples/s  ms/step  allreduce share of the step")
    for ranks in (1, 2):
        result = subprocess.run([str(mpiexec), *flags, "-n", str(ranks), sys.executable, __file__, "--worker",
                                 "--steps", str(args.steps)], capture_output=True, text=True, env=env, check=True)
        size, rate, step_ms, share = result.stdout.split()
        print(f"{size:>5}  {float(rate):>9.0f}  {float(step_ms):>7.2f}  {100 * float(share):>5.1f}%")


if __name__ == "__main__":
    main()
