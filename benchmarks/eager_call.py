"""Microseconds per ``model(x)`` on a graphnn Tensor against ``gn.compile(model)(array)`` and
torch eager under ``no_grad``, for an MNIST MLP (784-128-10, ReLU) at batch 1 and 64. Under
``no_grad`` the call runs the module's cached inference program; with grad mode on it is recorded
for backward (graphnn.recording) and its value read (``.detach().numpy()``) runs the recorded
forward.

    python benchmarks/eager_call.py [--rounds 7] [--calls 2000]

Each figure is the median over interleaved rounds of ``calls`` calls. "overhead" is a Tensor
call minus the array call: what wrapping tensors (and naming grad_fn) adds to one native call.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import graphnn as gn  # noqa: E402
from graphnn import nn  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


def contenders(batch: int, features: int = 784, hidden: int = 128) -> dict:
    """Each way of running the model once, as a function of no arguments."""
    gn.manual_seed(0)
    model = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    x = np.random.default_rng(0).standard_normal((batch, features)).astype(np.float32)
    program, tensor = gn.compile(model), gn.from_numpy(x)

    def quiet():
        with gn.no_grad():
            return model(tensor)

    # with grad mode on the call is recorded for backward: its value is computed when read
    runs = {"compiled(array)": lambda: program(x), "model(tensor)": lambda: model(tensor).detach().numpy(),
            "no_grad model(tensor)": quiet}
    if torch is not None:
        theirs = torch.nn.Sequential(torch.nn.Linear(features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))
        tx = torch.from_numpy(x)

        def torch_quiet():
            with torch.no_grad():
                return theirs(tx)

        runs["torch no_grad"] = torch_quiet
    return runs


def per_call(run, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        run()
    return (time.perf_counter() - start) / calls * 1e6


def measure(batch: int, rounds: int = 7, calls: int = 2000) -> dict:
    """{contender: median µs per call} over interleaved rounds."""
    runs = contenders(batch)
    for run in runs.values():  # trace, compile and warm every path first
        per_call(run, 10)
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            times[name].append(per_call(run, calls))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    print(f"µs per call of a 784-128-10 MLP, median of {args.rounds} interleaved rounds of {args.calls} calls")
    print(f"{'batch':>5} {'compiled(array)':>16} {'model(tensor)':>14} {'no_grad':>8} {'overhead':>9} {'torch no_grad':>14}")
    for batch in (1, 64):
        row = measure(batch, args.rounds, args.calls)
        print(f"{batch:>5} {row['compiled(array)']:>16.1f} {row['model(tensor)']:>14.1f} "
              f"{row['no_grad model(tensor)']:>8.1f} {row['model(tensor)'] - row['compiled(array)']:>9.1f} "
              f"{row.get('torch no_grad', float('nan')):>14.1f}")


if __name__ == "__main__":
    main()
